"""Secrets never reach logs, reprs, reports or exceptions: `redact` masks them in URIs.

Credentials in a URI (``s3://KEY:SECRET@bucket/...``, ``postgresql://user:pw@host/db``) and
query parameters that carry secrets (``?secret_key=...``, ``password=...``) are replaced by
``***``; the rest stays readable so an operator can still tell which store is meant.

>>> redact("s3://AKIA123:s3cr3t@bucket/models")
's3://***@bucket/models'
>>> redact("postgresql+psycopg://app:pw@db:5432/driftline")
'postgresql+psycopg://app:***@db:5432/driftline'
>>> redact("s3://bucket/a?access_key=AK&secret_key=SK&region=eu-west-1")
's3://bucket/a?access_key=***&secret_key=***&region=eu-west-1'
>>> redact("artifacts")
'artifacts'
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:]*)(?::[^/@]*)?@")
_SECRET_PARAM = re.compile(
    r"(?i)(?P<key>[?&;](?:[a-z_]*(?:key|secret|password|passwd|pwd|token|credential)[a-z_]*)=)"
    r"[^&;#]*"
)


def redact(uri: str) -> str:
    """``uri`` with its credentials masked (see the module docstring)."""

    def userinfo(m: re.Match[str]) -> str:
        # A database user name is not secret and helps; an object store's "user" is a key id.
        user = m.group("user")
        keep = m.group(0).count(":") > 1 and not m.group("scheme").startswith(("s3", "gs"))
        return f"{m.group('scheme')}{user}:***@" if keep else f"{m.group('scheme')}***@"

    masked = _USERINFO.sub(userinfo, uri, count=1)
    return _SECRET_PARAM.sub(lambda m: f"{m.group('key')}***", masked)

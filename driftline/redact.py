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

`redact_text` does the same for every URI inside a message (a driver's or pyarrow's error):

>>> redact_text("Cannot parse URI: 's3://AK:SK@bucket/x?secret_key=SK'")
"Cannot parse URI: 's3://***@bucket/x?secret_key=***'"
"""

from __future__ import annotations

import re

__all__ = ["redact", "redact_text"]

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:]*)(?::[^/@]*)?@")
_SECRET_KEY = (
    r"(?P<key>[?&;](?:[a-z_]*(?:key|secret|password|passwd|pwd|token|credential)[a-z_]*)=)"
)
_SECRET_PARAM = re.compile(r"(?i)" + _SECRET_KEY + r"[^&;#]*")
# Inside a message a value also ends at white space or a quote.
_SECRET_PARAM_IN_TEXT = re.compile(r"(?i)" + _SECRET_KEY + r"[^&;#\s'\"]*")


def redact(uri: str) -> str:
    """``uri`` with its credentials masked (see the module docstring)."""

    def userinfo(m: re.Match[str]) -> str:
        # A database user name is not secret and helps; an object store's "user" is a key id.
        user = m.group("user")
        keep = m.group(0).count(":") > 1 and not m.group("scheme").startswith(("s3", "gs"))
        return f"{m.group('scheme')}{user}:***@" if keep else f"{m.group('scheme')}***@"

    masked = _USERINFO.sub(userinfo, uri, count=1)
    return _SECRET_PARAM.sub(lambda m: f"{m.group('key')}***", masked)


_USERINFO_ANYWHERE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]*@")


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URI in it masked (user names too)."""
    masked = _USERINFO_ANYWHERE.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_PARAM_IN_TEXT.sub(lambda m: f"{m.group('key')}***", masked)

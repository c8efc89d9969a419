"""Safe persistence for the adapters that store Python objects (scikit-learn, river): skops,
never pickle. An artifact is refused unless every type skops does not trust by default is in
the adapter's exact allow-list: a type is trusted by its full name, never by its package, because
every package holds functions that run code (``numpy.testing._private.utils.runstring`` is
``exec``)."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

import skops.io as sio

from driftline.retrainer.exceptions import ArtifactFormatError


def dump_artifact(framework: str, description: dict[str, Any], **objects: Any) -> bytes:
    """Serialize ``objects`` with the model's description (``meta``) into skops bytes."""
    return bytes(sio.dumps({"meta": {"adapter": framework, **description}, **objects}))


def load_artifact(data: bytes, framework: str, trusted: Set[str], what: str) -> dict[str, Any]:
    """Read skops bytes written by `dump_artifact` for ``framework``; ``trusted`` holds the
    exact type names that may be loaded beyond skops' defaults (``what`` names them in the
    error)."""
    try:
        untrusted = sio.get_untrusted_types(data=bytes(data))
    except Exception as exc:
        raise ArtifactFormatError(
            f"these {len(data)} bytes are not a skops artifact ({exc}); load them with the "
            "adapter named in the model version's framework"
        ) from None
    unsafe = [t for t in untrusted if t not in trusted]
    if unsafe:
        raise ArtifactFormatError(f"artifact holds types outside {what} {unsafe}; refusing it")
    doc = sio.loads(bytes(data), trusted=untrusted)
    meta = doc.get("meta", {}) if isinstance(doc, dict) else {}
    if meta.get("adapter") != framework:
        raise ArtifactFormatError(
            f"artifact was written by {meta.get('adapter')!r}, not {framework}; load it with "
            "that adapter"
        )
    return dict(doc)

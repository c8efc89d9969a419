"""Signed events: only the publisher can announce a model, only the monitor can raise drift.

Anyone who can write to ``{p}.model-versions`` could otherwise point every consumer service at
bytes of their choosing; the content hash protects nothing, since it travels in the same
event. So the publisher signs each `ModelVersionEvent` (deploy and rollback) and consumers and
the monitor verify the signature before they touch anything the event names. The same goes
for ``{p}.drift``: a `DriftEvent` chooses the drift episode and the rows a training starts
from, so the monitor signs each one and the retrainer verifies it before it records anything.
One mechanism serves both (`EventSigner`, `EventVerifier`): any event with ``signature`` and
``key_id`` fields.

**Why Ed25519 and not HMAC-SHA256.** With a shared HMAC secret every consumer service holds the
key that mints model versions, so one compromised consumer can forge deployments for all of
them. Ed25519 splits the roles: the retrainer alone holds the private key, consumers hold only
public keys, which can be published freely. Signatures are 64 bytes and verify in ~0.1 ms
(``cryptography``, i.e. OpenSSL). Each key is named by its *key id* (the first 16 hex digits of
the sha256 of the public key), so keys rotate by configuring the new public key next to the old
one on consumers, then switching the publisher's private key.

What is signed: the event's canonical JSON (every field but ``signature`` and ``key_id``, keys
sorted, compact), so no field can change without breaking the signature. Keys come from
settings or the environment (``DRIFTLINE_SIGNING_KEY`` on the publisher,
``DRIFTLINE_VERIFY_KEYS`` on consumers), never from an event.

>>> signer = EventSigner.generate()
>>> event = ModelVersionEvent(pipeline="fraud", deployment_id="d1", model_version_id="mv1",
...     artifact_uri="file:///a/m.bin", content_hash="0" * 64, framework="torch-mlp",
...     feature_names=["x"])
>>> signed = signer.sign(event)
>>> verifier = EventVerifier([signer.public_key])
>>> verifier.verify(signed) is None
True
>>> forged = signed.model_copy(update={"artifact_uri": "file:///etc/passwd"})
>>> try:
...     verifier.verify(forged)
... except SignatureError as exc:
...     print(exc.reason)
bad_signature

A drift event is signed and verified the same way:

>>> from datetime import datetime, timezone
>>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> drift = signer.sign(DriftEvent(drift_id="a1", pipeline="fraud", detector="mmd",
...     statistic=2.0, threshold=1.0, window_start=t, window_end=t, rows_seen=100))
>>> verifier.verify(drift) is None
True
>>> try:
...     verifier.verify(drift.model_copy(update={"reference_data_version": "dv-forged"}))
... except SignatureError as exc:
...     print(exc.reason)
bad_signature
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from typing import TypeVar

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from driftline.schemas.events import DriftEvent, ModelVersionEvent
from driftline.schemas.exceptions import SchemaError

__all__ = [
    "EventSigner",
    "EventVerifier",
    "ModelVersionSigner",
    "ModelVersionVerifier",
    "SignatureError",
    "SignedEvent",
    "key_id",
]

_RAW = serialization.Encoding.Raw

SignedEvent = ModelVersionEvent | DriftEvent

_SEAL = b"DLSIG1"
_KEY_ID_BYTES = 16  # `key_id`: 16 hex digits
_SEAL_BYTES = len(_SEAL) + _KEY_ID_BYTES + 64  # an Ed25519 signature is 64 bytes
"""The event types that carry a ``signature`` and a ``key_id``."""
E = TypeVar("E", ModelVersionEvent, DriftEvent)


class SignatureError(SchemaError):
    """A signed event (model version, drift) that must not be trusted; ``reason`` says why:
    ``unsigned``, ``unknown_key``, ``bad_signature`` or ``no_keys`` (nothing to verify with)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _b64decode(text: str, what: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SchemaError(
            f"{what} is not base64; make one with `driftline keys generate`"
        ) from None
    if len(raw) != size:
        raise SchemaError(f"{what} must be {size} bytes of base64, got {len(raw)} bytes")
    return raw


def key_id(public_key: bytes) -> str:
    """The id of a raw Ed25519 public key: the first 16 hex digits of its sha256.

    >>> key_id(bytes(32))
    '66687aadf862bd77'
    """
    return hashlib.sha256(public_key).hexdigest()[:16]


def _canonical(event: SignedEvent) -> bytes:
    """The signed bytes: every field but the signature's own, keys sorted, compact JSON."""
    unsigned = {"signature", "key_id"}
    if isinstance(event, ModelVersionEvent) and event.deployment_seq is None:
        unsigned.add("deployment_seq")  # events signed before the field existed stay valid
    doc = event.model_dump(mode="json", exclude=unsigned)
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _describe(event: SignedEvent) -> str:
    if isinstance(event, ModelVersionEvent):
        return f"deployment {event.deployment_id[:80]!r}"
    return f"drift event {event.drift_id[:80]!r}"


class EventSigner:
    """Signs events (model versions, drift) with one Ed25519 private key (base64 of the
    32-byte seed)."""

    def __init__(self, private_key: str) -> None:
        seed = _b64decode(private_key, "the signing key", 32)
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        self.public_key = base64.b64encode(raw).decode()
        self.key_id = key_id(raw)

    def __repr__(self) -> str:
        return f"EventSigner(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> EventSigner:
        """A signer with a fresh random key (see `private_key_text` to keep it)."""
        seed = Ed25519PrivateKey.generate().private_bytes(
            _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return cls(base64.b64encode(seed).decode())

    def private_key_text(self) -> str:
        """The base64 private key, for ``DRIFTLINE_SIGNING_KEY``; keep it secret."""
        seed = self._key.private_bytes(
            _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return base64.b64encode(seed).decode()

    def seal(self, data: bytes) -> bytes:
        """``data`` followed by this key's id and its signature (`EventVerifier.unseal`).

        For binary records driftline writes and reads itself (detector summaries).

        >>> signer = EventSigner.generate()
        >>> EventVerifier([signer.public_key]).unseal(signer.seal(b"chart")) == b"chart"
        True
        """
        return b"".join([data, _SEAL, self.key_id.encode(), self._key.sign(data)])

    def sign(self, event: E) -> E:
        """A copy of ``event`` carrying this key's id and signature."""
        unsigned = event.model_copy(update={"signature": None, "key_id": None})
        signature = self._key.sign(_canonical(unsigned))
        return unsigned.model_copy(
            update={"signature": base64.b64encode(signature).decode(), "key_id": self.key_id}
        )


class EventVerifier:
    """Accepts only events signed by one of ``public_keys`` (base64 raw Ed25519 keys).

    With no keys, every event is refused (``no_keys``): an unconfigured consumer serves
    nothing rather than whatever anyone writes to the topic.
    """

    def __init__(self, public_keys: Iterable[str]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._texts: dict[str, str] = {}
        for text in public_keys:
            if not text.strip():
                continue
            raw = _b64decode(text, "a verify key", 32)
            self._keys[key_id(raw)] = Ed25519PublicKey.from_public_bytes(raw)
            self._texts[key_id(raw)] = text.strip()

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of the keys this verifier trusts."""
        return tuple(self._keys)

    @property
    def public_keys(self) -> tuple[str, ...]:
        """The trusted public keys (base64), e.g. to hand to a subscriber."""
        return tuple(self._texts.values())

    def __repr__(self) -> str:
        return f"EventVerifier(key_ids={list(self._keys)!r})"

    def unseal(self, sealed: bytes) -> bytes:
        """The data of a record sealed by `EventSigner.seal` with a trusted key; raise
        `SignatureError` (``no_keys``, ``unsigned``, ``unknown_key``, ``bad_signature``)."""
        if len(sealed) < _SEAL_BYTES or sealed[-_SEAL_BYTES : -_SEAL_BYTES + len(_SEAL)] != _SEAL:
            self._check_configured()
            raise SignatureError("unsigned", "the record carries no signature")
        data, trailer = sealed[:-_SEAL_BYTES], sealed[-_SEAL_BYTES + len(_SEAL) :]
        kid = trailer[:_KEY_ID_BYTES].decode("latin-1")
        self._check(kid, trailer[_KEY_ID_BYTES:], data, "the record")
        return data

    def verify(self, event: SignedEvent) -> None:
        """Return if ``event`` is signed by a trusted key; raise `SignatureError` otherwise."""
        self._check_configured()
        if not event.signature or not event.key_id:
            raise SignatureError("unsigned", f"the {_describe(event)} carries no signature")
        try:
            signature = base64.b64decode(event.signature, validate=True)
        except (binascii.Error, ValueError):
            signature = b""
        self._check(event.key_id, signature, _canonical(event), _describe(event))

    def _check_configured(self) -> None:
        if not self._keys:
            raise SignatureError(
                "no_keys",
                "no verify key configured: set DRIFTLINE_VERIFY_KEYS to the publisher's public "
                "key (`driftline keys generate` prints both)",
            )

    def _check(self, kid: str, signature: bytes, data: bytes, what: str) -> None:
        self._check_configured()
        key = self._keys.get(kid)
        if key is None:
            raise SignatureError(
                "unknown_key",
                f"{what} is signed with key {kid[:32]!r}, which is not among the trusted "
                f"keys {sorted(self._keys)}",
            )
        try:
            key.verify(signature, data)
        except (InvalidSignature, ValueError):
            raise SignatureError(
                "bad_signature",
                f"the signature of {what} does not match its content: it was altered or forged",
            ) from None


ModelVersionSigner = EventSigner
"""The name the signer had when it signed model versions only."""
ModelVersionVerifier = EventVerifier
"""The name the verifier had when it verified model versions only."""

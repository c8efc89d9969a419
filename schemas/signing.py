"""Signed model versions: only the publisher can announce a model consumers will load.

Anyone who can write to ``{p}.model-versions`` could otherwise point every consumer service at
bytes of their choosing; the content hash protects nothing, since it travels in the same
event. So the publisher signs each `ModelVersionEvent` (deploy and rollback) and consumers and
the monitor verify the signature before they touch anything the event names.

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

>>> signer = ModelVersionSigner.generate()
>>> event = ModelVersionEvent(pipeline="fraud", deployment_id="d1", model_version_id="mv1",
...     artifact_uri="file:///a/m.bin", content_hash="0" * 64, framework="torch-mlp",
...     feature_names=["x"])
>>> signed = signer.sign(event)
>>> verifier = ModelVersionVerifier([signer.public_key])
>>> verifier.verify(signed) is None
True
>>> forged = signed.model_copy(update={"artifact_uri": "file:///etc/passwd"})
>>> try:
...     verifier.verify(forged)
... except SignatureError as exc:
...     print(exc.reason)
bad_signature
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from driftline.schemas.events import ModelVersionEvent
from driftline.schemas.exceptions import SchemaError

__all__ = ["ModelVersionSigner", "ModelVersionVerifier", "SignatureError", "key_id"]

_RAW = serialization.Encoding.Raw


class SignatureError(SchemaError):
    """A model-version event that must not be trusted; ``reason`` says why:
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


def _canonical(event: ModelVersionEvent) -> bytes:
    unsigned = {"signature", "key_id"}
    if event.deployment_seq is None:  # events signed before the field existed stay valid
        unsigned.add("deployment_seq")
    doc = event.model_dump(mode="json", exclude=unsigned)
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


class ModelVersionSigner:
    """Signs model-version events with one Ed25519 private key (base64 of the 32-byte seed)."""

    def __init__(self, private_key: str) -> None:
        seed = _b64decode(private_key, "the signing key", 32)
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        raw = self._key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
        self.public_key = base64.b64encode(raw).decode()
        self.key_id = key_id(raw)

    def __repr__(self) -> str:
        return f"ModelVersionSigner(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> ModelVersionSigner:
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

    def sign(self, event: ModelVersionEvent) -> ModelVersionEvent:
        """A copy of ``event`` carrying this key's id and signature."""
        unsigned = event.model_copy(update={"signature": None, "key_id": None})
        signature = self._key.sign(_canonical(unsigned))
        return unsigned.model_copy(
            update={"signature": base64.b64encode(signature).decode(), "key_id": self.key_id}
        )


class ModelVersionVerifier:
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
        return f"ModelVersionVerifier(key_ids={list(self._keys)!r})"

    def verify(self, event: ModelVersionEvent) -> None:
        """Return if ``event`` is signed by a trusted key; raise `SignatureError` otherwise."""
        if not self._keys:
            raise SignatureError(
                "no_keys",
                "no verify key configured: set DRIFTLINE_VERIFY_KEYS to the publisher's public "
                "key (`driftline keys generate` prints both)",
            )
        if not event.signature or not event.key_id:
            raise SignatureError("unsigned", "the model-version event carries no signature")
        key = self._keys.get(event.key_id)
        if key is None:
            raise SignatureError(
                "unknown_key",
                f"the event is signed with key {event.key_id!r}, which is not among the "
                f"trusted keys {sorted(self._keys)}",
            )
        try:
            signature = base64.b64decode(event.signature, validate=True)
            key.verify(signature, _canonical(event))
        except (InvalidSignature, binascii.Error, ValueError):
            raise SignatureError(
                "bad_signature",
                f"the signature of deployment {event.deployment_id[:80]!r} does not match its "
                "content: the event was altered or forged",
            ) from None

"""Signed model versions: what verifies, what is refused, and why."""

from __future__ import annotations

import pytest

from driftline.schemas import (
    ModelVersionEvent,
    ModelVersionSigner,
    ModelVersionVerifier,
    SchemaError,
    SignatureError,
)


def _event(**fields: object) -> ModelVersionEvent:
    base: dict[str, object] = {
        "pipeline": "fraud",
        "deployment_id": "d1",
        "model_version_id": "mv1",
        "artifact_uri": "file:///store/models/ab/ab.bin",
        "content_hash": "a" * 64,
        "framework": "torch-mlp",
        "feature_names": ["x", "y"],
        "metrics": {"accuracy": 0.91},
        "data_version_id": "dv1",
    }
    base.update(fields)
    return ModelVersionEvent(**base)  # type: ignore[arg-type]


def test_a_signed_event_survives_the_wire_and_verifies() -> None:
    signer = ModelVersionSigner.generate()
    wire = signer.sign(_event()).to_json()
    ModelVersionVerifier([signer.public_key]).verify(ModelVersionEvent.from_json(wire))


@pytest.mark.parametrize(
    "change",
    [
        {"artifact_uri": "file:///etc/passwd"},
        {"content_hash": "b" * 64},
        {"framework": "this:s"},
        {"data_version_id": None},
        {"alias": "challenger"},
        {"metrics": {"accuracy": 0.99}},
        {"feature_names": ["x"]},
    ],
)
def test_changing_any_field_breaks_the_signature(change: dict[str, object]) -> None:
    signer = ModelVersionSigner.generate()
    forged = signer.sign(_event()).model_copy(update=change)
    with pytest.raises(SignatureError) as info:
        ModelVersionVerifier([signer.public_key]).verify(forged)
    assert info.value.reason == "bad_signature"


def test_refusals_carry_reason_codes() -> None:
    signer, other = ModelVersionSigner.generate(), ModelVersionSigner.generate()
    verifier = ModelVersionVerifier([signer.public_key])
    cases = {
        "unsigned": _event(),
        "unknown_key": other.sign(_event()),
        "bad_signature": other.sign(_event()).model_copy(update={"key_id": signer.key_id}),
    }
    for reason, event in cases.items():
        with pytest.raises(SignatureError) as info:
            verifier.verify(event)
        assert info.value.reason == reason
    with pytest.raises(SignatureError) as info:
        ModelVersionVerifier([]).verify(signer.sign(_event()))
    assert info.value.reason == "no_keys"


def test_keys_rotate_by_trusting_old_and_new_at_once() -> None:
    old, new = ModelVersionSigner.generate(), ModelVersionSigner.generate()
    verifier = ModelVersionVerifier([old.public_key, new.public_key])
    verifier.verify(old.sign(_event()))
    verifier.verify(new.sign(_event()))
    assert set(verifier.key_ids) == {old.key_id, new.key_id}


def test_a_malformed_key_is_a_clear_error() -> None:
    with pytest.raises(SchemaError, match="base64"):
        ModelVersionVerifier(["not a key!"])
    with pytest.raises(SchemaError, match="32 bytes"):
        ModelVersionSigner("AAAA")

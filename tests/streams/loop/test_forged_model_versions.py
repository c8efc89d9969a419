"""Forged model-version events against a real broker: none is served, the old model stays.

Anyone who can write to ``{p}.model-versions`` is treated as hostile. Each case below worked
against an earlier release (docs/security.md lists them); the subscriber must refuse it, say
why, count it, turn unhealthy, and keep serving the last trusted model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from driftline.errors import ConfigError
from driftline.lifecycle_store.artifacts import sha256_hex
from driftline.schemas import ModelVersionEvent, ModelVersionSigner
from driftline.streams.sdk.subscriber import ModelSubscriber
from tests.streams.loop.test_subscriber import constant_loader

pytestmark = pytest.mark.kafka

X = np.zeros((2, 1))


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _attacks(
    pipeline: str, tmp_path: Path, event_factory: Any, signer: ModelVersionSigner
) -> list[tuple[str, ModelVersionEvent]]:
    """(expected reason, event as sent); all but the first three carry a valid signature."""
    big = tmp_path / "big.json"
    big.write_bytes(json.dumps({"value": 7.0}).encode() + b" " * 5000)
    tampered = signer.sign(event_factory(pipeline, 3.0)).model_copy(
        update={"artifact_uri": (tmp_path / "other.json").as_uri()}
    )
    outside = [
        "file:///etc/passwd",
        "/dev/zero",
        "s3://bucket/m.bin?endpoint_override=attacker.invalid&scheme=http",
        f"{tmp_path.as_uri()}/../escape.json",
    ]
    return [
        ("unsigned", event_factory(pipeline, 2.0)),
        ("unknown_key", ModelVersionSigner.generate().sign(event_factory(pipeline, 2.0))),
        ("bad_signature", tampered),
        *[
            (
                "outside the artifact store",
                signer.sign(event_factory(pipeline, 4.0, artifact_uri=u)),
            )
            for u in outside
        ],
        (
            "at most 4096 bytes",
            signer.sign(
                event_factory(
                    pipeline,
                    7.0,
                    artifact_uri=big.as_uri(),
                    content_hash=sha256_hex(big.read_bytes()),
                )
            ),
        ),
    ]


def test_forged_events_are_refused_and_the_trusted_model_keeps_serving(
    trusted: dict[str, Any],
    signer: ModelVersionSigner,
    tmp_path: Path,
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
    produce: Any,
) -> None:
    pipeline = pipeline_factory()
    good = event_factory(pipeline, 1.0)
    registry = CollectorRegistry()
    codes = {"outside the artifact store": "outside_store", "at most 4096 bytes": "too_large"}
    with ModelSubscriber(
        kafka_bootstrap,
        pipeline,
        loader=constant_loader,
        max_artifact_bytes=4096,
        registry=registry,
        **trusted,
    ) as sub:
        produce(good)
        assert sub.wait(good.model_version_id, timeout=20).model_version_id == "mv-1"
        assert sub.healthy
        for expected, event in _attacks(pipeline, tmp_path, event_factory, signer):
            failures = sub.failures
            produce(event, sign=False)
            assert _wait(lambda f=failures: sub.failures > f), expected
            assert sub.last_error is not None and expected in sub.last_error.reason, (
                expected,
                sub.last_error,
            )
            served = sub.current_version
            assert served is not None and served.deployment_id == good.deployment_id
            assert sub.predict(X).tolist() == [1.0, 1.0]
            assert not sub.healthy
            code = codes.get(expected, expected)
            assert sub.last_error.code == code
            labels = {"pipeline": pipeline, "alias": "champion"}
            assert registry.get_sample_value("driftline_subscriber_healthy", labels) == 0.0
            refusals = registry.get_sample_value(
                "driftline_subscriber_refusals_total", {**labels, "reason": code}
            )
            assert refusals is not None and refusals >= 1
        later = event_factory(pipeline, 5.0)
        produce(later)
        assert sub.wait(later.model_version_id, timeout=20).model_version_id == "mv-5"
        assert sub.healthy


def test_a_subscriber_without_keys_is_refused_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no key every event would be refused (``no_keys``): a subscriber that could never
    serve is a configuration error, named at once, not a silent wait for nothing."""
    monkeypatch.delenv("DRIFTLINE_VERIFY_KEYS", raising=False)
    for keys in (None, [], ["", " "]):
        with pytest.raises(ConfigError, match="DRIFTLINE_VERIFY_KEYS"):
            ModelSubscriber("127.0.0.1:1", "p", verify_keys=keys, artifacts=str(tmp_path))


SERVICE = """
import json, sys, time
from driftline import ModelSubscriber
bootstrap, pipeline, artifacts, key, marker = sys.argv[1:]
sub = ModelSubscriber(bootstrap, pipeline, verify_keys=[key], artifacts=artifacts)
sub.start()
deadline = time.monotonic() + 60
while time.monotonic() < deadline and sub.failures < 2 and sub.current_version is None:
    time.sleep(0.1)
print(json.dumps({"served": sub.current_version is not None, "failures": sub.failures,
                  "reason": sub.last_error and sub.last_error.reason,
                  "imported_this": "this" in sys.modules}))
sub.stop()
"""


def test_a_consumer_service_in_its_own_process_loads_no_code_the_event_names(
    signer: ModelVersionSigner,
    tmp_path: Path,
    kafka_bootstrap: str,
    pipeline_factory: Callable[..., str],
    event_factory: Any,
    produce: Any,
) -> None:
    """A correctly signed event may still not pick code: ``framework`` must be an adapter the
    operator registered, never a module path (``this:s`` used to import ``this``)."""
    pipeline = pipeline_factory()
    produce(event_factory(pipeline, 1.0, framework="this:s"))
    produce(event_factory(pipeline, 1.0, framework="os:system"))
    script = tmp_path / "service.py"
    script.write_text(textwrap.dedent(SERVICE))
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            kafka_bootstrap,
            pipeline,
            str(tmp_path),
            signer.public_key,
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["served"] is False and report["failures"] >= 1
    assert "unknown model adapter" in report["reason"] or "UnknownAdapter" in report["reason"]
    assert report["imported_this"] is False

"""Seeded fuzzing through the monitor step: bit-flipped and truncated Arrow and JSON messages.

Every message must end exactly one way — archived rows, a dead letter, or counted as empty —
and the step must never raise, whatever the bytes. The one documented overlap: an Arrow batch
with some non-finite rows is dead-lettered whole *and* its finite rows are archived (the dead
letter names the rejected rows; replaying it is harmless, rows are deduplicated by id).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from driftline.schemas import ARROW_CONTENT_TYPE, CONTENT_TYPE_HEADER, InferenceBatch
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep
from tests.streams.ingest.helpers import config, names, open_store

P = "fuzz"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ARROW = ((CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode()),)
JSON = ((CONTENT_TYPE_HEADER, b"application/json"),)


def originals(rng: np.random.Generator, count: int) -> list[tuple[bytes, tuple]]:
    out: list[tuple[bytes, tuple]] = []
    for i in range(count):
        if i % 3 == 0:
            n = int(rng.integers(1, 40))
            x = rng.normal(size=(n, 3))
            stamps = [T0] * n
            batch = InferenceBatch.from_arrays(
                P, [f"a{i}-{j}" for j in range(n)], stamps, x, names(3), model_version=["m"] * n
            )
            out.append((batch.to_ipc(), ARROW))
        else:
            doc = {
                "event_id": f"j{i}",
                "timestamp": "2026-01-01T00:00:00.25+01:00",
                "pipeline": P,
                "features": dict(zip(names(3), rng.normal(size=3).tolist(), strict=True)),
                "prediction": 1,
                "probabilities": [0.25, 0.75],
            }
            out.append((orjson.dumps(doc), JSON))
    return out


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """Flip 1-8 random bits, or cut the message short, or keep it (the control)."""
    choice = rng.random()
    if choice < 0.15:
        return data
    if choice < 0.35:
        return data[: int(rng.integers(0, len(data)))]
    buf = np.frombuffer(data, np.uint8).copy()
    for _ in range(int(rng.integers(1, 9))):
        pos = int(rng.integers(0, len(buf)))
        buf[pos] ^= np.uint8(1 << int(rng.integers(0, 8)))
    return buf.tobytes()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_fuzzed_message_ends_archived_or_dead_lettered(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = open_store(tmp_path)
    step = MonitorStep(config(P, reference_rows=200), store, pipeline=P)
    topic = f"{P}.inputs"
    sent = [
        RawMessage(mutate(rng, value), None, headers, topic, 0, offset)
        for offset, (value, headers) in enumerate(originals(rng, 450))
    ]
    dead: Counter[int] = Counter()
    reasons: dict[int, str] = {}
    empty = 0
    for start in range(0, len(sent), 40):
        out = step.process(sent[start : start + 40])  # must not raise
        for letter in out.dead_letters:
            assert letter.source_offset is not None
            dead[letter.source_offset] += 1
            reasons[letter.source_offset] = letter.reason.value
        empty += out.empty_messages
    step.state_bytes()  # the checkpoint of whatever was accepted goes through
    archive = store.archive(P)
    table = archive._read(archive._segments("rows", None, None))
    archived = set() if table is None else set(table.column("offset").to_pylist())
    assert max(dead.values(), default=1) == 1, "one dead letter per message"
    both = archived & set(dead)
    assert all(reasons[o] == "non_finite" for o in both), {o: reasons[o] for o in both}
    neither = set(range(len(sent))) - archived - set(dead)
    assert len(neither) == empty, f"messages that vanished: {sorted(neither)[:10]}"
    assert step.next_offset(topic, 0) == len(sent)
    # Enough of each fate to mean something: the fuzzing reached every path.
    assert len(archived) > 50 and len(dead) > 150
    assert {"malformed", "schema_violation"} <= set(reasons.values())

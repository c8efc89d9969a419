"""The in-process bus behaves like the parts of Kafka the pipeline relies on."""

from __future__ import annotations

import threading

import pytest

from driftline.streams.embedded.bus import BusError, InMemoryBus


def test_offsets_increase_per_partition_and_keys_stick_to_one_partition() -> None:
    bus = InMemoryBus(partitions=4)
    sent = [bus.produce("p.inputs", f"v{i}".encode(), key=b"k-7") for i in range(5)]
    assert {m.partition for m in sent} == {sent[0].partition}
    assert [m.offset for m in sent] == [0, 1, 2, 3, 4]
    unkeyed = [bus.produce("p.inputs", b"x").partition for _ in range(8)]
    assert sorted(set(unkeyed)) == [0, 1, 2, 3]


def test_consumer_reads_everything_once_in_partition_order() -> None:
    bus = InMemoryBus(partitions=3)
    for i in range(30):
        bus.produce("t", str(i).encode(), key=str(i % 5).encode())
    consumer = bus.consumer("g", ["t"])
    seen = []
    while batch := consumer.poll(max_messages=7):
        assert len(batch) <= 7
        seen.extend(batch)
    assert sorted(int(m.value) for m in seen) == list(range(30))
    for p in range(3):
        offsets = [m.offset for m in seen if m.partition == p]
        assert offsets == sorted(offsets)
    assert consumer.lag() == 0


def test_uncommitted_messages_are_redelivered_to_a_new_member() -> None:
    bus = InMemoryBus()
    for i in range(3):
        bus.produce("t", bytes([i]))
    first = bus.consumer("g", ["t"])
    assert len(first.poll(max_messages=2)) == 2
    first.commit()
    bus.produce("t", b"late")
    again = bus.consumer("g", ["t"])
    assert [m.value for m in again.poll()] == [bytes([2]), b"late"]
    assert bus.committed("g", "t") == [2]
    assert len(bus.consumer("other-group", ["t"]).poll()) == 4


def test_compacted_topic_keeps_only_the_latest_record_per_key() -> None:
    bus = InMemoryBus()
    bus.create_topic("p.model-versions", compact=True)
    for i in range(3):
        bus.produce("p.model-versions", f"v{i}".encode(), key=b"p/champion")
    bus.produce("p.model-versions", b"c0", key=b"p/challenger")
    latest = bus.consumer("new-subscriber", ["p.model-versions"]).poll()
    assert [(m.key, m.value, m.offset) for m in latest] == [
        (b"p/champion", b"v2", 2),
        (b"p/challenger", b"c0", 3),
    ]
    assert bus.end_offsets("p.model-versions") == [4]


def test_headers_and_timestamps_travel_with_the_message() -> None:
    bus = InMemoryBus()
    bus.produce("t", b"{}", headers=[("content-type", b"application/json")])
    (message,) = bus.consumer("g", ["t"]).poll()
    assert message.header("content-type") == b"application/json"
    assert message.timestamp is not None and message.timestamp.tzinfo is not None


def test_bad_calls_name_the_value_and_the_fix() -> None:
    bus = InMemoryBus(partitions=2)
    with pytest.raises(BusError, match=r"partition 5 out of range.*use 0\.\.1"):
        bus.produce("t", b"x", partition=5)
    with pytest.raises(BusError, match="exists with 2 partitions"):
        bus.create_topic("t", partitions=3)
    with pytest.raises(BusError, match="unknown topic 'nope'"):
        bus.end_offsets("nope")
    with pytest.raises(BusError, match="partitions must be >= 1, got 0"):
        InMemoryBus(partitions=0)


def test_concurrent_producers_lose_nothing() -> None:
    bus = InMemoryBus(partitions=2)

    def send(worker: int) -> None:
        for i in range(500):
            bus.produce("t", f"{worker}-{i}".encode(), key=f"{worker}-{i}".encode())

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    values = [m.value for m in bus.consumer("g", ["t"]).poll(max_messages=10_000)]
    assert len(values) == len(set(values)) == 2000

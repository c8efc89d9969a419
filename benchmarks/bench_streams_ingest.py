"""Throughput of the Faust monitor vs a raw confluent-kafka consume+decode loop, same topic.

For JSON single events and for Arrow record batches, one topic is filled once; then, side by
side in one run:

* **raw**: a confluent-kafka consumer reads the topic from the start and decodes every message
  into a feature matrix (orjson per event / Arrow IPC per batch) — the floor any monitor pays;
* **MonitorStep**: the monitor's processing step alone (decode, validate, archive, sketch,
  detect) on the same messages in this process, no broker — where the time goes;
* **bare Faust agents**: Faust workers that only count what they get from the same topic —
  one on Faust's per-message stream (``noack_take``), one on `BatchReader` (librdkafka inside
  the worker, the path the monitor uses) and, with ``--baseline-tree``, one on the former
  fetcher hook of that tree: each path's ceiling on this machine;
* **Faust monitor**: ``driftline worker`` (a separate process) consuming its own copy of the
  topic, this tree's and (``--baseline-tree``) the earlier tree's one after the other; its rate
  is read from its Prometheus counter between 5% and 100% of the rows, so start-up and the
  first reference fit are not counted.

    python benchmarks/bench_streams_ingest.py            # ~3-4 minutes on 2 cores
    python benchmarks/bench_streams_ingest.py --json-events 50000 --arrow-rows 500000
    python benchmarks/bench_streams_ingest.py --step-only --tune   # raw vs step only, ~1 min
    python benchmarks/bench_streams_ingest.py --step-only --tune --archive-thread
    python benchmarks/bench_streams_ingest.py --scale-out          # 1 vs 2 workers, 4 partitions
    git archive BASE | tar -x -C /tmp/base   # an earlier tree, measured alongside
    python benchmarks/bench_streams_ingest.py --baseline-tree /tmp/base

``--scale-out`` fills a topic of 4 partitions (rows spread by the producer's partitioner) per
run and measures ``driftline worker`` with one process on all four, then two processes on one
host (two each), total rows per second summed over the workers' counters between 5% and 90%
of the rows (the tail, where one worker may already be idle, is left out for both).

Needs a broker (``KAFKA_BOOTSTRAP_SERVERS``, default 127.0.0.1:9092). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa

from driftline.config.settings import Settings
from driftline.lifecycle_store import LifecycleStore
from driftline.schemas import (
    ARROW_CONTENT_TYPE,
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    EventSigner,
    InferenceBatch,
)
from driftline.streams.kafka.clients import (
    admin_client,
    ensure_topics,
    make_consumer,
    make_producer,
    to_raw_message,
)
from driftline.streams.monitor.messages import RawMessage
from driftline.streams.monitor.step import MonitorStep

T0 = datetime(2026, 1, 1, tzinfo=UTC)


SIGNER = EventSigner.generate()


def fill(settings: Settings, kind: str, rows: int, d: int, batch_rows: int) -> int:
    """Produce ``rows`` rows to the pipeline's input topic; return the number of messages."""
    producer = make_producer(settings, linger_ms=50, batch_num_messages=10000)
    x = np.random.default_rng(0).normal(size=(rows, d))
    names = [f"f{j}" for j in range(d)]
    topic = settings.topics.inputs
    messages = 0
    if kind == "json":
        headers = [(CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode())]
        for i in range(rows):
            doc = {
                "event_id": f"e{i}",
                "timestamp": "2026-01-01T00:00:00Z",
                "pipeline": settings.pipeline,
                "features": dict(zip(names, x[i].tolist(), strict=True)),
            }
            while True:
                try:
                    producer.produce(topic, orjson.dumps(doc), headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
            messages += 1
    else:
        headers = [(CONTENT_TYPE_HEADER, ARROW_CONTENT_TYPE.encode())]
        for lo in range(0, rows, batch_rows):
            part = x[lo : lo + batch_rows]
            batch = InferenceBatch.from_arrays(
                settings.pipeline,
                [f"e{i}" for i in range(lo, lo + len(part))],
                [T0] * len(part),
                part,
                names,
            )
            producer.produce(topic, batch.to_ipc(), headers=headers)
            producer.poll(0)
            messages += 1
    assert producer.flush(120) == 0
    return messages


def raw_rate(settings: Settings, kind: str, messages: int, d: int) -> float:
    """Rows per second of a plain consume+decode loop over the whole topic."""
    consumer = make_consumer(settings, f"bench-raw-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([settings.topics.inputs])
    names = [f"f{j}" for j in range(d)]
    seen = rows = 0
    started = None
    while seen < messages:
        batch = consumer.consume(num_messages=1000, timeout=1.0)
        if not batch:
            continue
        if started is None:
            started = time.perf_counter()
        if kind == "json":
            docs = [orjson.loads(m.value()) for m in batch]
            x = np.array([[doc["features"][n] for n in names] for doc in docs], dtype=np.float64)
            rows += len(x)
        else:
            for m in batch:
                table = pa.ipc.open_stream(pa.py_buffer(m.value())).read_all()
                x = np.column_stack([table.column(n).to_numpy() for n in names])
                rows += len(x)
        seen += len(batch)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return rows / elapsed


def step_rate(
    settings: Settings,
    root: Path,
    kind: str,
    messages: int,
    batch: int,
    background_archive: bool = False,
) -> float:
    """Rows per second of MonitorStep alone on the topic's messages (read beforehand);
    ``background_archive``: segments written on the writer thread, as the worker does."""
    consumer = make_consumer(settings, f"bench-step-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([settings.topics.inputs])
    raw: list[RawMessage] = []
    while len(raw) < messages:
        raw.extend(to_raw_message(m) for m in consumer.consume(num_messages=1000, timeout=1.0))
    consumer.close()
    store = LifecycleStore.open(
        f"sqlite:///{root}/step-{uuid.uuid4().hex[:6]}.db", artifacts=str(root / "step-artifacts")
    )
    step = MonitorStep(
        settings.config,
        store,
        pipeline=settings.pipeline,
        archive_rows=50_000,
        background_archive=background_archive,
    )
    size = batch if kind == "json" else 1
    warm = max(size, messages // 20)
    for lo in range(0, warm, size):  # the reference fit is start-up, not throughput
        step.process(raw[lo : lo + size])
    started = time.perf_counter()
    rows = 0
    for lo in range(warm, messages, size):
        rows += step.process(raw[lo : lo + size]).rows
    step.flush()
    elapsed = time.perf_counter() - started
    store.close()
    return rows / elapsed


# Faust agents doing nothing but count: Faust's own cost per message, no monitoring. "stream"
# is a plain agent on the topic (Faust's per-message path, ``noack_take``, Faust's public
# API); "reader" is a task on `BatchReader` (librdkafka inside the Faust worker, following a
# table's assignment: the path the monitor uses); "hook" is the former path, Faust's fetcher
# hooked through private names (`deliver_batches` of a tree before that change, given with
# ``--baseline-tree``).
BARE_AGENT = """
import os, sys, time
import faust
mode, topic, n, bootstrap, data, port = sys.argv[1:7]
n = int(n)
state = {"n": 0, "n0": 0, "t0": None}
def count(k):
    state["n"] += k
    if state["t0"] is None and state["n"] >= 0.05 * n:  # same window as the monitor's
        state["t0"], state["n0"] = time.perf_counter(), state["n"]
    if state["n"] >= n:
        rate = (state["n"] - state["n0"]) / (time.perf_counter() - state["t0"])
        print(f"RATE={rate}", flush=True)
        os._exit(0)
options = dict(broker="kafka://" + bootstrap, value_serializer="raw", web_enabled=False,
               datadir=data, stream_wait_empty=False, consumer_auto_offset_reset="earliest",
               broker_max_poll_records=1000)
if mode == "stream":
    app = faust.App("bare-" + mode + "-" + topic, **options)
    source = app.topic(topic, value_serializer="raw", acks=False)
    @app.agent(source)
    async def per_message(stream):
        async for events in stream.noack_take(1000, within=0.2):
            count(len(events))
elif mode == "hook":
    from driftline.streams.kafka.faust_batches import BatchApp, deliver_batches
    app = BatchApp("bare-" + mode + "-" + topic, **options)
    source = app.topic(topic, value_serializer="raw", acks=False)
    @app.agent(deliver_batches(app, source))
    async def batches(stream):
        async for batch in stream:
            count(len(batch.messages))
else:
    from driftline.config.settings import Settings
    from driftline.streams.kafka.clients import make_consumer
    from driftline.streams.kafka.faust_batches import FETCH_MAX_WAIT_MS, BatchReader
    app = faust.App("bare-" + mode + "-" + topic, **options)
    table = app.Table("follow", partitions=1, key_type=bytes, value_type=bytes)
    settings = Settings(pipeline="bare", kafka_bootstrap_servers=bootstrap)
    reader = BatchReader(app, lambda: make_consumer(settings, "bare-reader-" + topic,
                         fetch_wait_max_ms=FETCH_MAX_WAIT_MS), max_records=1000)
    reader.follow(topic, table)
    @app.task
    async def batches():
        async for batch in reader.batches(topic):
            count(len(batch.messages))
sys.argv = [sys.argv[0], "worker", "-l", "warn", "--web-port", port]
app.main()
"""

BARE_MODES = ("stream", "hook", "reader")


def bare_faust_rate(
    settings: Settings, mode: str, messages: int, root: Path, tree: Path | None = None
) -> float:
    """Messages per second a do-nothing Faust agent (``mode``, see `BARE_AGENT`) takes; the
    driftline package of ``tree`` if given."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            BARE_AGENT,
            mode,
            settings.topics.inputs,
            str(messages),
            settings.kafka_bootstrap_servers,
            str(root / f"bare-{mode}"),
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
        cwd=str(tree) if tree is not None else None,
    )
    match = re.search(r"RATE=([0-9.]+)", out.stdout + out.stderr)
    if match is None:
        raise RuntimeError(f"the bare Faust agent failed:\n{out.stderr[-2000:]}")
    return float(match.group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def faust_rate(
    config_file: Path, rows: int, port: int, log: Path, tree: Path | None = None
) -> float:
    """Rows per second of ``driftline worker`` (of ``tree`` if given) between 5% and 100% of
    the rows."""
    return workers_rate([config_file], rows, port, log, tree=tree)[0]


def workers_rate(
    configs: list[Path],
    rows: int,
    port: int,
    log: Path,
    until: float = 1.0,
    warm_rows: int = 0,
    tree: Path | None = None,
) -> tuple[float, float]:
    """Rows per second of ``driftline worker`` processes (one per config file, rates summed
    over their counters) between 5% and ``until`` of the rows, from when every worker has
    processed ``warm_rows`` (it is assigned and past its reference); and rows per CPU-second
    the workers used in that window (Linux ``/proc``)."""
    ports = [port] + [free_port() for _ in configs[1:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    procs = []
    for i, (config, p) in enumerate(zip(configs, ports, strict=True)):
        with open(log.with_name(f"{log.stem}-{i}{log.suffix}"), "wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from driftline.streams.cli import main; main()",
                        "worker",
                        "--config",
                        str(config),
                        "--metrics-port",
                        str(p),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=str(tree) if tree is not None else None,
                )
            )
    try:
        first = last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            each = [events_total(p) for p in ports]
            done = sum(each)
            now = time.perf_counter()
            if first is None and done >= 0.05 * rows and min(each) >= warm_rows:
                first = (now, done, cpu_seconds(procs))
            if first is not None and done >= until * rows:
                last = (now, done, cpu_seconds(procs))
                break
            if any(proc.poll() is not None for proc in procs):
                raise RuntimeError(f"a worker exited; see {log.parent}")
            time.sleep(0.05)
        if first is None or last is None:
            raise RuntimeError(f"the worker did not finish; see {log.parent}")
        rate = (last[1] - first[1]) / (last[0] - first[0])
        return rate, (last[1] - first[1]) / max(last[2] - first[2], 1e-9)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU seconds of ``procs`` so far (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in procs:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def events_total(port: int) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except OSError:
        return 0.0
    match = re.search(rb"^driftline_events_total\{[^}]*\} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def write_config(
    root: Path, pipeline: str, bootstrap: str, batch: int, partitions: int = 1, worker: int = 0
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"driftline-{worker}.toml"
    path.write_text(
        f'kafka_bootstrap_servers = "{bootstrap}"\npartitions = {partitions}\n'
        f'store_url = "sqlite:///{root}/store.db"\nartifacts = "{root}/artifacts"\n'
        f'state_dir = "{root}/state-{worker}"\nbatch_size = {batch}\n'
        f'[pipeline]\nname = "{pipeline}"\n[pipeline.detector]\nreference_rows = 2000\n'
        "[pipeline.detector.params]\nn_simulated = 200000\n"
    )
    # A worker refuses to start without a key to sign its drift events with.
    text = path.read_text()
    path.write_text(f'signing_key = "{SIGNER.private_key_text()}"\n' + text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json-events", type=int, default=100_000)
    parser.add_argument("--arrow-rows", type=int, default=1_000_000)
    parser.add_argument("--arrow-batch", type=int, default=10_000, help="rows per Arrow message")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1000, help="worker micro-batch (messages)")
    parser.add_argument("--payloads", default="json,arrow", help="which payloads to measure")
    parser.add_argument("--repeats", type=int, default=3, help="runs of raw and MonitorStep")
    parser.add_argument(
        "--step-only",
        action="store_true",
        help="raw client and MonitorStep side by side only (no Faust hosts): the step's own cost",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="run the step as a worker does after start-up: one BLAS thread, gc frozen",
    )
    parser.add_argument(
        "--archive-thread",
        action="store_true",
        help="the step writes archive segments on its writer thread (the worker's setting)",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="a checkout of an earlier tree: its bare hook agent and Faust monitor run too, "
        "alternating with this tree's in the same run",
    )
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="Faust monitor on 4 partitions: 1 worker process vs 2 on this host (and raw)",
    )
    args = parser.parse_args()
    if args.scale_out:
        scale_out(args)
        return
    if args.tune:
        from driftline.streams.monitor.tuning import tune_process

        tune_process()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, rows, goal_rate, goal_ratio in (
            ("json", args.json_events, 50_000, 0.6),
            ("arrow", args.arrow_rows, 2_000_000, 0.8),
        ):
            if kind not in args.payloads.split(","):
                continue
            pipeline = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
            root = Path(tmp) / pipeline
            config_file = write_config(root, pipeline, bootstrap, args.batch)
            settings = Settings.load(config_file)
            ensure_topics(settings)
            try:
                messages = fill(settings, kind, rows, args.features, args.arrow_batch)
                raw = statistics.median(
                    raw_rate(settings, kind, messages, args.features) for _ in range(args.repeats)
                )
                step = statistics.median(
                    step_rate(settings, root, kind, messages, args.batch, args.archive_thread)
                    for _ in range(args.repeats)
                )
                nan = float("nan")
                bare = dict.fromkeys(BARE_MODES, nan)
                faust = {"this": nan, "baseline": nan}
                if not args.step_only:
                    base = args.baseline_tree
                    for mode in BARE_MODES:
                        if mode == "hook" and base is None:
                            continue
                        tree = base if mode == "hook" else None
                        rate = bare_faust_rate(settings, mode, messages, root, tree)
                        bare[mode] = rate * rows / messages
                    for name, tree in (("baseline", base), ("this", None)):
                        if name == "baseline" and tree is None:
                            continue
                        # Each run its own pipeline name: a fresh group and state.
                        cfg = write_config(root / name, f"{pipeline}-{name}", bootstrap, args.batch)
                        run_settings = Settings.load(cfg)
                        ensure_topics(run_settings)
                        fill(run_settings, kind, rows, args.features, args.arrow_batch)
                        faust[name] = faust_rate(
                            cfg, rows, free_port(), root / name / "worker.log", tree
                        )
                raw_after = raw_rate(settings, kind, messages, args.features)
            finally:
                drop_topics(settings, pipeline)
            results.append(
                (
                    kind,
                    rows,
                    messages,
                    statistics.median([raw, raw_after]),
                    step,
                    bare,
                    faust,
                    goal_rate,
                    goal_ratio,
                )
            )
    print_table(results, args)


# Past each worker's bootstrap reference (2,000 rows) and its fit, and past the rebalance
# that the second worker's arrival starts.
WARM_ROWS = 10_000


def scale_out(args: argparse.Namespace, partitions: int = 4, until: float = 0.9) -> None:
    """1 worker vs 2 worker processes on a topic of ``partitions``, raw client alongside."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    print(
        f"\nfeatures={args.features}, {partitions} partitions, worker batch={args.batch} "
        f"messages, Arrow {args.arrow_batch} rows/message; rows per second between 5% and "
        f"{until:.0%} of the rows; broker, producer and workers share this machine's cores\n"
    )
    print(
        "| payload | rows | raw consume+decode | 1 worker | 2 workers (total) | 2 / 1 | goal "
        "| rows per worker CPU-second: 1 worker | 2 workers |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, rows in (("json", args.json_events), ("arrow", args.arrow_rows)):
            if kind not in args.payloads.split(","):
                continue
            rates, per_cpu = {}, {}
            raws = []
            for workers in (1, 2):
                pipeline = f"bench-scale-{kind}-{workers}-{uuid.uuid4().hex[:8]}"
                root = Path(tmp) / pipeline
                configs = [
                    write_config(root, pipeline, bootstrap, args.batch, partitions, w)
                    for w in range(workers)
                ]
                settings = Settings.load(configs[0])
                ensure_topics(settings)
                try:
                    messages = fill(settings, kind, rows, args.features, args.arrow_batch)
                    raws.append(raw_rate(settings, kind, messages, args.features))
                    rates[workers], per_cpu[workers] = workers_rate(
                        configs,
                        rows,
                        free_port(),
                        root / "worker.log",
                        until=until,
                        warm_rows=WARM_ROWS,
                    )
                finally:
                    drop_topics(settings, pipeline)
            print(
                f"| {kind} | {rows:,} | {statistics.median(raws):,.0f} | {rates[1]:,.0f} "
                f"| {rates[2]:,.0f} | {rates[2] / rates[1]:.2f}x | >= 1.6x "
                f"| {per_cpu[1]:,.0f} | {per_cpu[2]:,.0f} |"
            )


def drop_topics(settings: Settings, pipeline: str) -> None:
    admin = admin_client(settings)
    names = [t for t in admin.list_topics(timeout=10).topics if pipeline in t]
    for future in admin.delete_topics(names).values():
        with contextlib.suppress(Exception):  # gone already
            future.result(timeout=30)


def print_table(results: list[tuple], args: argparse.Namespace) -> None:
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}"  # noqa: E731
    print(
        f"\nfeatures={args.features}, worker batch={args.batch} messages, "
        f"Arrow {args.arrow_batch} rows/message, medians of "
        f"{args.repeats} raw/step runs, tune={args.tune}, step archive thread="
        f"{args.archive_thread}; all rates in rows per second\n"
    )
    print(
        "| payload | rows | raw consume+decode | MonitorStep alone | bare Faust agent: stream "
        "| bare: fetcher hook (baseline) | bare: BatchReader | Faust monitor: baseline "
        "| Faust monitor: this tree | this / baseline | this / raw | goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind, rows, _messages, raw, step, bare, faust, goal_rate, goal_ratio in results:
        print(
            f"| {kind} | {fmt(rows)} | {fmt(raw)} | {fmt(step)} | {fmt(bare['stream'])} "
            f"| {fmt(bare['hook'])} | {fmt(bare['reader'])} | {fmt(faust['baseline'])} "
            f"| {fmt(faust['this'])} | {faust['this'] / faust['baseline']:.2f}x "
            f"| {faust['this'] / raw:.0%} | >= {fmt(goal_rate)} and >= {goal_ratio:.0%} of raw |"
        )


if __name__ == "__main__":
    main()

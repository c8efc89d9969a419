"""Commands that close the loop: ``retrainer``, ``status``, ``lineage``, ``rollback``,
``subscribe`` (registered by :mod:`driftline.streams.cli`).

Heavy imports (torch, the store, Kafka clients) happen inside the commands, so
``driftline --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from driftline.config.settings import Settings
    from driftline.lifecycle_store.store import LifecycleStore
    from driftline.streams.admin import ModelLineage, PipelineStatus

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file (default: $DRIFTLINE_CONFIG)."),
]
PipelineOption = Annotated[
    str | None, typer.Option("--pipeline", "-p", help="Pipeline name (default: from config).")
]
AliasOption = Annotated[str, typer.Option("--alias", "-a", help="Deployment alias.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `driftline` app."""
    app.command("retrainer")(retrainer)
    app.command("status")(status)
    app.command("lineage")(lineage)
    app.command("rollback")(rollback)
    app.command("subscribe")(subscribe)
    keys = typer.Typer(help="Keys that sign and verify model versions.", no_args_is_help=True)
    keys.command("generate")(generate_keys)
    app.add_typer(keys, name="keys")


def generate_keys() -> None:
    """Print a new Ed25519 key pair for signing model versions.

    The private key goes only to the retrainer (and `driftline rollback`); every consumer
    service and worker gets the public key.
    """
    from driftline.schemas import ModelVersionSigner

    signer = ModelVersionSigner.generate()
    typer.echo(f"# retrainer only; keep secret (key id {signer.key_id})")
    typer.echo(f"DRIFTLINE_SIGNING_KEY={signer.private_key_text()}")
    typer.echo("# workers and consumer services")
    typer.echo(f"DRIFTLINE_VERIFY_KEYS={signer.public_key}")


def _settings(config: Path | None, pipeline: str | None, **overrides: Any) -> Settings:
    from driftline.config.settings import Settings

    return Settings.load(config, pipeline=pipeline, **overrides)


def _store(settings: Settings) -> LifecycleStore:
    from driftline.lifecycle_store.store import LifecycleStore

    return LifecycleStore.open(settings.store_url.get_secret_value(), settings.artifacts)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def retrainer(
    config: ConfigOption = None,
    pipeline: PipelineOption = None,
    group_id: Annotated[
        str | None, typer.Option(help="Consumer group (default: driftline-retrainer-{p}).")
    ] = None,
    tick_interval: Annotated[
        float, typer.Option(help="Seconds between time/data-amount trigger checks.")
    ] = 5.0,
    stale_after: Annotated[
        float | None,
        typer.Option(
            help="Seconds after which a NEW/RUNNING training is taken as interrupted "
            "(default: 2 x model.timeout_s, at least 600)."
        ),
    ] = None,
    max_events: Annotated[
        int | None, typer.Option(help="Stop after this many drift events (testing).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train and publish model versions from {p}.drift (a Kafka consumer group member)."""
    import signal

    from driftline.streams.kafka.retrainer_service import RetrainerService
    from driftline.streams.metrics import RetrainerMetrics

    _logging(verbose)
    settings = _settings(config, pipeline)
    metrics = RetrainerMetrics(settings.pipeline)
    if settings.retrainer_metrics_port_or_default:
        metrics.serve(settings.retrainer_metrics_port_or_default)
    service = RetrainerService(
        settings,
        group_id=group_id,
        tick_interval_s=tick_interval,
        stale_after_s=stale_after,
        metrics=metrics,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: service.stop())
    try:
        stats = service.run(max_events=max_events)
    finally:
        service.close()
    typer.echo(f"retrainer stopped: {stats}")


def status(
    config: ConfigOption = None,
    pipeline: PipelineOption = None,
    alias: AliasOption = "champion",
    limit: Annotated[int, typer.Option(help="Rows per table.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Current champion, recent drift events, and trainings with their outcome."""
    from driftline.streams.admin import pipeline_status

    settings = _settings(config, pipeline)
    with _store(settings) as store:
        if settings.pipeline not in {p.name for p in store.pipelines()}:
            typer.echo(
                f"pipeline {settings.pipeline!r} has no data yet: start `driftline worker` and "
                "send events to its inputs topic (e.g. `driftline replay FILE`)"
            )
            return
        report = pipeline_status(store, settings.pipeline, alias=alias, limit=limit)
    if as_json:
        typer.echo(json.dumps(_status_dict(report), indent=2, default=str))
    else:
        _print_status(report, alias)


def lineage(
    model_version: Annotated[str, typer.Argument(help="Model version id (mv-…).")],
    config: ConfigOption = None,
    pipeline: PipelineOption = None,
    hops: Annotated[int, typer.Option(help="Edges to follow each way.")] = 3,
    as_json: JsonOption = False,
) -> None:
    """The lifecycle of MODEL_VERSION: data, training, parent model, deployments."""
    from driftline.streams.admin import model_lineage

    settings = _settings(config, pipeline)
    with _store(settings) as store:
        result = model_lineage(store, model_version, hops=hops)
    if as_json:
        typer.echo(json.dumps(_lineage_dict(result), indent=2, default=str))
    else:
        _print_lineage(result)


def rollback(
    config: ConfigOption = None,
    pipeline: PipelineOption = None,
    alias: AliasOption = "champion",
    reason: Annotated[str, typer.Option(help="Recorded in the history.")] = "manual rollback",
) -> None:
    """Re-deploy the previous model of ALIAS as a new deployment (history keeps both)."""
    from driftline.streams.admin import rollback as do_rollback
    from driftline.streams.kafka.publisher import KafkaPublisher

    settings = _settings(config, pipeline)
    publisher = KafkaPublisher(settings)
    with _store(settings) as store:
        try:
            result = do_rollback(store, settings.pipeline, publisher, alias=alias, reason=reason)
        finally:
            publisher.close()
    event = result.event
    typer.echo(
        f"{settings.pipeline}/{alias} -> {event.model_version_id} "
        f"(deployment {event.deployment_id}, published to {settings.topics.model_versions})"
    )


def subscribe(
    config: ConfigOption = None,
    pipeline: PipelineOption = None,
    alias: AliasOption = "champion",
) -> None:
    """Follow ALIAS on {p}.model-versions and print each model a consumer would load."""
    import threading

    from driftline.streams.sdk.subscriber import ModelSubscriber, ServedModel

    _logging(False)
    settings = _settings(config, pipeline)
    done = threading.Event()

    def show(new: ServedModel, old: ServedModel | None) -> None:
        e = new.event
        typer.echo(f"{e.deployed_at:%Y-%m-%d %H:%M:%S} {e.alias}: {e.model_version_id} {e.reason}")

    sub = ModelSubscriber.from_settings(settings, alias, on_swap=show)
    try:
        with sub:
            done.wait()
    except KeyboardInterrupt:
        pass


# -- rendering ---------------------------------------------------------------------------------


def _status_dict(report: PipelineStatus) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "pipeline": report.pipeline,
        "aliases": {a: asdict(mv) for a, mv in report.aliases.items()},
        "history": [asdict(d) for d in report.history],
        "drift_events": [asdict(d) for d in report.drift_events],
        "trainings": [asdict(t) for t in report.trainings],
        "pending_outbox": report.pending_outbox,
    }


def _lineage_dict(result: ModelLineage) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "lifecycle": asdict(result.lifecycle),
        "upstream": [asdict(n) for n in result.upstream],
        "downstream": [asdict(n) for n in result.downstream],
    }


def _when(value: Any) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())
    )


def _print_status(report: PipelineStatus, alias: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]pipeline {report.pipeline}[/bold]")
    if not report.aliases:
        console.print("no model deployed yet")
    for name, mv in sorted(report.aliases.items()):
        console.print(f"  {name}: {mv.id} (v{mv.version}, {mv.framework}) {_metrics(mv.metrics)}")
    if report.pending_outbox:
        console.print(
            f"[yellow]{report.pending_outbox} event(s) recorded but not yet published; "
            "a running retrainer publishes them[/yellow]"
        )
    table = Table(title=f"deployments of {alias}")
    for col in ("seq", "when", "kind", "model version", "reason"):
        table.add_column(col)
    for d in report.history:
        table.add_row(str(d.seq), _when(d.deployed_at), d.kind, d.model_version_id, d.reason)
    _print_whole(console, table)
    table = Table(title="recent drift events")
    for col in ("detected", "drift id", "statistic", "training"):
        table.add_column(col)
    for e in report.drift_events:
        stat = "" if e.statistic is None else f"{e.statistic:.4g}"
        table.add_row(_when(e.detected_at), e.drift_id, stat, e.training_id or "")
    _print_whole(console, table)
    table = Table(title="recent trainings")
    for col in ("created", "training", "status", "model version", "seconds", "reason"):
        table.add_column(col)
    for t in report.trainings:
        seconds = "" if t.duration_s is None else f"{t.duration_s:.1f}"
        table.add_row(
            _when(t.created_at),
            t.id,
            t.status,
            t.model_version_id or "",
            seconds,
            (t.reason or "")[:80],
        )
    _print_whole(console, table)


def _print_lineage(result: ModelLineage) -> None:
    from rich.console import Console
    from rich.tree import Tree

    life = result.lifecycle
    mv = life.model_version
    tree = Tree(f"[bold]{mv.id}[/bold] v{mv.version} {mv.framework} {_metrics(mv.metrics)}")
    dv = life.data_version
    tree.add(f"data version {dv.id}: {dv.row_count} rows, {dv.combine}, parents {list(dv.parents)}")
    if life.training is not None:
        t = life.training
        node = tree.add(f"training {t.id}: {t.status} {t.reason or ''} (episode {t.episode_key})")
        for drift in life.drift_events:
            node.add(f"drift {drift.drift_id} at {_when(drift.detected_at)}")
    if life.parent_model_version is not None:
        p = life.parent_model_version
        tree.add(f"warm-started from {p.id} v{p.version} {_metrics(p.metrics)}")
    deployments = tree.add("deployments")
    for d in life.deployments:
        deployments.add(f"{_when(d.deployed_at)} {d.alias} #{d.seq} {d.kind}: {d.reason}")
    for title, nodes in (("upstream", result.upstream), ("downstream", result.downstream)):
        branch = tree.add(title)
        for n in nodes:
            branch.add(f"{n.distance} hop(s): {n.kind} {n.id} ({n.relation} via {n.via})")
    Console().print(tree)


def _print_whole(console: Any, table: Any) -> None:
    """Print ``table`` without cutting cells: ids are copied from it into other commands."""
    wanted = console.measure(table, options=console.options.update_width(10_000)).maximum
    console.width = max(console.width, wanted)
    console.print(table)

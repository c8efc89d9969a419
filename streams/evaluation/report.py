"""The run report: one picture of what happened, as a PNG and an HTML page around it.

The chart shares one x axis (stream rows) across three panels, so a reader can follow a
drift from cause to effect:

1. the detector's statistic against its threshold, alarms, and the injected drift points;
2. trainings (deployed, rejected by the gate, skipped, failed) and deployments, with an arc
   from each deployed model to the past model whose lifecycle it warm-started from;
3. the composite accuracy of every policy over time (Modyn's composite model);

and a fourth panel puts each policy's mean composite accuracy against its number of
trainings. The HTML page adds the tables: drifts detected vs injected, trainings, lineage
of deployed models, accuracy before and after each deployment, policy comparison.

>>> report = Report(title="t", rows=10, primary="drift",
...                 runs=[RunResult(policy="drift", pipeline="p", rows=10, seconds=0.1)])
>>> Report.model_validate_json(report.model_dump_json()) == report
True
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from driftline.streams.embedded.runner import RunResult, TrainingRecord
from driftline.streams.evaluation.composite import Concept, DeploymentGain, Detection, PolicyScore

__all__ = [
    "REPORT_FILES",
    "Report",
    "concept_at",
    "load_report",
    "render_html",
    "render_png",
    "training_outcome",
    "version_names",
    "write_report",
]

REPORT_FILES = ("report.json", "report.html", "report.png")
"""What `write_report` writes into a run directory."""

_POLICY_COLORS = ["#1f77b4", "#ff7f0e", "#7f7f7f", "#2ca02c", "#9467bd", "#8c564b"]
_STATUS_STYLE = {
    "deployed": ("#2ca02c", "o", "trained, deployed"),
    "rejected": ("#ff7f0e", "s", "trained, not better (gate)"),
    "skipped": ("#9e9e9e", "x", "skipped"),
    "failed": ("#d62728", "X", "failed"),
}


class Report(BaseModel):
    """What a report shows; saved as ``report.json`` so it can be rendered again later."""

    model_config = ConfigDict(frozen=True)

    title: str
    description: str = ""
    rows: int
    primary: str
    concepts: list[Concept] = Field(default_factory=list)
    runs: list[RunResult]
    scores: list[PolicyScore] = Field(default_factory=list)
    detections: list[Detection] = Field(default_factory=list)
    false_alarms: list[int] = Field(default_factory=list)
    gains: list[DeploymentGain] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def run(self, policy: str) -> RunResult:
        """The run of ``policy``."""
        for run in self.runs:
            if run.policy == policy:
                return run
        known = [r.policy for r in self.runs]
        raise KeyError(f"no run of policy {policy!r} in this report; it has {known}")


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.png`` and ``report.html`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name.rsplit(".", 1)[1]: out_dir / name for name in REPORT_FILES}
    paths["json"].write_text(report.model_dump_json(indent=1))
    render_png(report, paths["png"])
    paths["html"].write_text(render_html(report, paths["png"].name))
    return paths


def load_report(path: Path) -> Report:
    """Read a ``report.json`` (or the run directory holding one)."""
    file = path / REPORT_FILES[0] if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"no {REPORT_FILES[0]} at {path}: pass the directory `driftline demo` or "
            "`driftline backtest` wrote (see its --out)"
        )
    return Report.model_validate_json(file.read_text())


def training_outcome(training: TrainingRecord) -> str:
    """``deployed``, ``rejected`` (trained, gate said no), ``skipped`` or ``failed``.

    >>> training_outcome(TrainingRecord(row=1, training_id="t", trigger="drift",
    ...                                 status="COMPLETE", deployed=False))
    'rejected'
    """
    status = training.status.upper()
    if status == "COMPLETE":
        return "deployed" if training.deployed else "rejected"
    return "failed" if status == "FAILED" else "skipped"


def render_png(report: Report, path: Path) -> None:
    """Draw the four panels into ``path`` (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 9.5), dpi=100, layout="constrained")
    grid = fig.add_gridspec(3, 4)
    ax_stat = fig.add_subplot(grid[0, :3])
    ax_train = fig.add_subplot(grid[1, :3], sharex=ax_stat)
    ax_acc = fig.add_subplot(grid[2, :3], sharex=ax_stat)
    ax_cost = fig.add_subplot(grid[:, 3])
    primary = report.run(report.primary)
    for ax in (ax_stat, ax_train, ax_acc):
        _draw_concepts(ax, report.concepts)
    _draw_statistic(ax_stat, primary, report)
    _draw_trainings(ax_train, primary, report.concepts)
    _draw_accuracy(ax_acc, report)
    _draw_cost(ax_cost, report)
    ax_acc.set_xlabel("stream row")
    ax_acc.set_xlim(0, report.rows)
    fig.suptitle(report.title, fontsize=14, fontweight="bold")
    fig.savefig(path)
    plt.close(fig)


def _draw_concepts(ax: Any, concepts: list[Concept]) -> None:
    for i, concept in enumerate(concepts):
        if i % 2:
            ax.axvspan(concept.start, concept.end, color="#f3f3f3", zorder=0)
        if i:
            ax.axvline(concept.start, color="#555555", linestyle="--", linewidth=1, zorder=1)


def _draw_statistic(ax: Any, run: RunResult, report: Report) -> None:
    points = [p for p in run.points if p.statistic is not None]
    rows = [p.row for p in points]
    ax.plot(rows, [p.statistic for p in points], color="#1f77b4", lw=1, label="drift statistic")
    ax.plot(rows, [p.threshold for p in points], color="#d62728", lw=1, ls=":", label="threshold")
    top = max([p.statistic or 0.0 for p in points] + [p.threshold or 0.0 for p in points] + [1e-9])
    alarms = run.alarms
    ax.scatter(
        [a.row for a in alarms],
        [min(a.statistic, top) for a in alarms],
        marker="v",
        color="#d62728",
        s=40,
        zorder=5,
        label=f"alarm ({len(alarms)})",
    )
    if report.concepts:
        top_axis = ax.secondary_xaxis("top")
        top_axis.set_xticks(
            [(c.start + c.end) / 2 for c in report.concepts],
            [f"{c.concept}: {c.kind}" for c in report.concepts],
            fontsize=9,
        )
        top_axis.tick_params(length=0)
    ax.set_ylim(0, top * 1.15)
    ax.set_ylabel("statistic")
    ax.set_title(f"Label-free drift detection ({run.policy} policy)", loc="left", fontsize=11)
    if len(report.concepts) > 1:
        ax.plot([], [], color="#555555", ls="--", lw=1, label="injected drift")
    ax.legend(loc="upper left", fontsize=8, ncols=4)


def _draw_trainings(ax: Any, run: RunResult, concepts: list[Concept]) -> None:
    lanes = {"deployed": 3, "rejected": 2, "skipped": 1, "failed": 0}
    for outcome, lane in lanes.items():
        chosen = [t for t in run.trainings if training_outcome(t) == outcome]
        color, marker, label = _STATUS_STYLE[outcome]
        ax.scatter(
            [t.row for t in chosen],
            [lane] * len(chosen),
            color=color,
            marker=marker,
            s=50,
            zorder=4,
            label=f"{label} ({len(chosen)})",
        )
    deployed_at: dict[str, int] = {}
    for d in run.deployments:
        deployed_at.setdefault(d.model_version_id, d.row)
    names = version_names(run, concepts)
    for d in run.deployments:
        ax.axvline(d.row, color="#2ca02c", alpha=0.35, lw=2, zorder=1)
        name = names.get(d.model_version_id, _short(d.model_version_id)).split(" ")[0]
        again = " again" if deployed_at[d.model_version_id] < d.row else ""
        ax.text(d.row, 4.35, name + again, ha="center", fontsize=8, color="#2ca02c")
    for t in run.trainings:
        parent = deployed_at.get(t.warm_start_from or "")
        if t.deployed and parent is not None:
            ax.annotate(
                "",
                xy=(t.row, 3.1),
                xytext=(parent, 3.1),
                arrowprops={
                    "arrowstyle": "->",
                    "color": "#2ca02c",
                    "connectionstyle": "arc3,rad=-0.25",
                    "lw": 1.2,
                },
            )
    ax.set_yticks(list(lanes.values()), [_STATUS_STYLE[o][2] for o in lanes], fontsize=8)
    ax.set_ylim(-0.6, 4.9)
    ax.set_title(
        "Trainings and deployments (arcs: warm start from a past lifecycle)",
        loc="left",
        fontsize=11,
    )
    ax.legend(loc="lower left", fontsize=8, ncols=4)


def _draw_accuracy(ax: Any, report: Report) -> None:
    for i, score in enumerate(report.scores):
        acc = score.accuracy
        xs = [
            s + acc.window / 2
            for s, a in zip(acc.window_starts, acc.window_accuracy, strict=True)
            if a is not None
        ]
        ys = [a for a in acc.window_accuracy if a is not None]
        color = _POLICY_COLORS[i % len(_POLICY_COLORS)]
        width = 2.0 if score.policy == report.primary else 1.2
        ax.plot(
            xs,
            ys,
            color=color,
            lw=width,
            label=f"{score.policy}: {acc.mean_accuracy:.3f} mean, {score.cost.trainings} trainings",
        )
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title("Composite accuracy: the model live at each moment", loc="left", fontsize=11)
    ax.legend(loc="lower left", fontsize=8)


def _draw_cost(ax: Any, report: Report) -> None:
    from matplotlib.ticker import MaxNLocator

    for i, score in enumerate(report.scores):
        color = _POLICY_COLORS[i % len(_POLICY_COLORS)]
        ax.scatter(score.cost.trainings, score.accuracy.mean_accuracy, s=120, color=color, zorder=3)
        ax.annotate(
            score.policy,
            (score.cost.trainings, score.accuracy.mean_accuracy),
            textcoords="offset points",
            xytext=(8, -4),
            fontsize=9,
        )
    ax.set_xlabel("trainings (cost)")
    ax.set_ylabel("mean composite accuracy")
    ax.set_title("Accuracy vs training cost", loc="left", fontsize=11)
    ax.grid(alpha=0.3)
    accs = [s.accuracy.mean_accuracy for s in report.scores] or [0.5]
    most = max([s.cost.trainings for s in report.scores] + [1])
    ax.set_xlim(-0.5, most * 1.3 + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(max(0.0, min(accs) - 0.05), min(1.0, max(accs) + 0.03))


def render_html(report: Report, png_name: str) -> str:
    """The report page: the chart and the tables, self-contained apart from the PNG."""
    template = Template(
        resources.files("driftline.streams.evaluation")
        .joinpath("templates/report.html")
        .read_text()
    )
    return template.substitute(
        title=_e(report.title),
        description=_e(report.description),
        created=report.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        png=_e(png_name),
        detections=_detections_table(report),
        policies=_policies_table(report),
        trainings=_trainings_table(report),
        lineage=_lineage_table(report),
        gains=_gains_table(report.gains),
        settings=_table(["setting", "value"], [[k, str(v)] for k, v in report.settings.items()]),
    )


def _e(value: object) -> str:
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[object]]) -> str:
    if not rows:
        return "<p class='empty'>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _short(identifier: str | None) -> str:
    return "-" if not identifier else identifier[:12]


def _detections_table(report: Report) -> str:
    rows: list[list[object]] = [
        [
            d.drift.start,
            f"{d.drift.concept}: {d.drift.description or d.drift.kind}",
            "-" if d.alarm_row is None else d.alarm_row,
            "missed" if d.delay is None else f"{d.delay} rows",
        ]
        for d in report.detections
    ]
    text = _table(["injected at row", "drift", "first alarm at row", "delay"], rows)
    alarms = ", ".join(str(r) for r in report.false_alarms) or "none"
    return text + f"<p>False alarms in clean stretches: {_e(alarms)}</p>"


def _policies_table(report: Report) -> str:
    return _table(
        [
            "policy",
            "mean composite accuracy",
            "trainings (incl. the first model)",
            "deployments",
            "skipped",
            "training s",
        ],
        [
            [
                s.policy,
                f"{s.accuracy.mean_accuracy:.3f}",
                s.cost.trainings,
                s.cost.deployments,
                s.cost.skipped,
                f"{s.cost.training_seconds:.1f}",
            ]
            for s in report.scores
        ],
    )


def _trainings_table(report: Report) -> str:
    run = report.run(report.primary)
    names = version_names(run, report.concepts)
    return _table(
        ["row", "trigger", "outcome", "warm start from", "why", "reason", "seconds"],
        [
            [
                t.row,
                t.trigger,
                training_outcome(t),
                names.get(t.warm_start_from, _short(t.warm_start_from))
                if t.warm_start_from
                else "scratch",
                t.warm_start_reason,
                t.reason,
                f"{t.seconds:.1f}",
            ]
            for t in run.trainings
        ],
    )


def version_names(run: RunResult, concepts: list[Concept]) -> dict[str, str]:
    """Readable names of a run's models: ``v2 (B)`` is the second model deployed, trained
    on concept B (a model deployed again keeps its name); a model that was trained but never
    deployed keeps a short id.

    >>> from driftline.streams.embedded.runner import DeploymentRecord
    >>> run = RunResult(policy="drift", pipeline="p", rows=9, seconds=0, trainings=[
    ...     TrainingRecord(row=5, training_id="t", trigger="drift", status="COMPLETE",
    ...                    model_version_id="mv-1", deployed=True)],
    ...     deployments=[DeploymentRecord(row=5, deployment_id="d", model_version_id="mv-1")])
    >>> version_names(run, [Concept(start=0, end=9, concept="A")])
    {'mv-1': 'v1 (A)'}
    """
    deployed: dict[str, int] = {}
    for d in run.deployments:
        deployed.setdefault(d.model_version_id, len(deployed) + 1)
    names: dict[str, str] = {}
    for t in run.trainings:
        # A training that reproduces a model already stored (model versions are content
        # addressed) gets that model's name, from the training that first made it.
        if t.model_version_id is None or t.model_version_id in names:
            continue
        concept = concept_at(concepts, max(t.row - 1, 0))
        number = deployed.get(t.model_version_id)
        label = f"v{number}" if number else _short(t.model_version_id)
        names[t.model_version_id] = f"{label} ({concept})" if concept != "-" else label
    return names


def concept_at(concepts: list[Concept], row: int) -> str:
    """Name of the concept ``row`` belongs to, ``-`` when unknown."""
    return next((c.concept for c in concepts if c.start <= row < c.end), "-")


def _lineage_table(report: Report) -> str:
    run = report.run(report.primary)
    names = version_names(run, report.concepts)
    rows: list[list[object]] = []
    seen: set[str] = set()
    for d in run.deployments:
        parent = d.parent_model_version_id
        accuracy = d.metrics.get("accuracy")
        again = " again" if d.model_version_id in seen else ""
        seen.add(d.model_version_id)
        rows.append(
            [
                names.get(d.model_version_id, _short(d.model_version_id)) + again,
                d.row,
                _short(d.model_version_id),
                _short(d.data_version_id),
                names.get(parent or "", _short(parent)) if parent else "scratch",
                "-" if accuracy is None else f"{accuracy:.3f}",
            ]
        )
    header = ["version (concept)", "deployed at row", "model version", "data version"]
    return _table([*header, "warm-started from", "holdout accuracy"], rows)


def _gains_table(gains: list[DeploymentGain]) -> str:
    return _table(
        ["deployed at row", "concept", "rows scored", "old model", "new model", "gain"],
        [
            [
                g.row,
                g.concept,
                g.rows_scored,
                f"{g.accuracy_before:.3f}",
                f"{g.accuracy_after:.3f}",
                f"{g.accuracy_after - g.accuracy_before:+.3f}",
            ]
            for g in gains
        ],
    )

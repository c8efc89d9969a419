"""What the operator commands do: ``status``, ``lineage`` and ``rollback`` over the store.

The CLI only renders what these functions return, so the same answers are available to a
notebook or a test:

>>> import tempfile, pyarrow as pa
>>> from driftline.lifecycle_store.store import LifecycleStore
>>> from driftline.retrainer.publisher import InMemoryPublisher
>>> d = tempfile.mkdtemp()
>>> store = LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/a")
>>> p = store.ensure_pipeline("fraud", ["x"], {})
>>> dv = store.snapshot(p, pa.table({"x": [1.0, 2.0]}))
>>> for weights in (b"one", b"two"):
...     mv = store.register_model(p, weights, framework="torch-mlp", params={},
...                               metrics={"accuracy": 0.9}, data_version_id=dv.id)
...     _ = store.deploy(p, "champion", mv.id, reason="trained")
>>> publisher = InMemoryPublisher()
>>> back = rollback(store, "fraud", publisher, reason="bad model")
>>> back.deployment.kind, publisher.model_versions == [back.event]
('rollback', True)
>>> [d.kind for d in pipeline_status(store, "fraud").history]
['deploy', 'deploy', 'rollback']
>>> store.close()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from driftline.lifecycle_store.records import (
    Deployment,
    DriftEventRecord,
    Lifecycle,
    LineageNode,
    ModelVersion,
    OutboxMessage,
    Training,
)
from driftline.retrainer.publisher import Publisher, flush_outbox
from driftline.retrainer.publisher import deployment_event as retrainer_deployment_event
from driftline.schemas import ModelVersionEvent, Topics

if TYPE_CHECKING:
    from driftline.lifecycle_store.store import LifecycleStore

__all__ = [
    "ModelLineage",
    "PipelineStatus",
    "RollbackResult",
    "deployment_event",
    "model_lineage",
    "pipeline_status",
    "rollback",
]


@dataclass(frozen=True)
class PipelineStatus:
    """The state of one pipeline: what is deployed, what drifted, what was trained."""

    pipeline: str
    aliases: dict[str, ModelVersion]
    history: list[Deployment]
    drift_events: list[DriftEventRecord]
    trainings: list[Training]
    pending_outbox: int

    @property
    def champion(self) -> ModelVersion | None:
        """The model version deployed as ``champion``, if any."""
        return self.aliases.get("champion")


@dataclass(frozen=True)
class ModelLineage:
    """A model version's lifecycle (data → training → model → deployments) and the versions
    around it in the lineage graph."""

    lifecycle: Lifecycle
    upstream: list[LineageNode]
    downstream: list[LineageNode]


@dataclass(frozen=True)
class RollbackResult:
    """The new history entry a rollback appended and the event published for it."""

    deployment: Deployment
    event: ModelVersionEvent
    published: int


def pipeline_status(
    store: LifecycleStore, pipeline: str, *, alias: str = "champion", limit: int = 10
) -> PipelineStatus:
    """Current aliases, the alias's deployment history and the latest drifts and trainings."""
    history = store.history(pipeline, alias)
    return PipelineStatus(
        pipeline=pipeline,
        aliases=store.aliases(pipeline),
        history=history[-limit:],
        drift_events=store.drift_events(pipeline, limit),
        trainings=store.trainings(pipeline, limit),
        pending_outbox=len(
            [i for i in store.pending_outbox(limit=1000) if i.topic.startswith(f"{pipeline}.")]
        ),
    )


def model_lineage(store: LifecycleStore, model_version_id: str, *, hops: int = 3) -> ModelLineage:
    """Everything a model version came from and led to, ``hops`` edges each way."""
    return ModelLineage(
        lifecycle=store.lifecycle(model_version_id),
        upstream=store.lineage(model_version_id, "upstream", hops),
        downstream=store.lineage(model_version_id, "downstream", hops),
    )


def deployment_event(
    store: LifecycleStore, deployment: Deployment, model: ModelVersion
) -> ModelVersionEvent:
    """The ModelVersionEvent announcing ``deployment`` of ``model`` (feature names from the
    pipeline's record in the store)."""
    feature_names = store.pipeline(deployment.pipeline).feature_names
    return retrainer_deployment_event(deployment, model, feature_names)


def rollback(
    store: LifecycleStore,
    pipeline: str,
    publisher: Publisher,
    *,
    alias: str = "champion",
    reason: str = "rollback",
) -> RollbackResult:
    """Re-deploy what was live before the alias's latest deployment, and publish it.

    The store appends a ``rollback`` entry (the history keeps both) and its event in the
    outbox in one transaction; the outbox is then flushed, so consumers switch back even if
    this process dies right after the commit (the next retrainer start-up publishes it).
    Raises :class:`driftline.lifecycle_store.exceptions.StoreError` when there is nothing to roll
    back, or when the target's artifact fails its hash (then nothing changes).
    """
    events: list[ModelVersionEvent] = []

    def outbox(deployment: Deployment, model: ModelVersion) -> OutboxMessage:
        # Inside the rollback's transaction: a target whose bytes fail their sha256 raises
        # ArtifactCorruptedError here, and nothing is deployed.
        store.load_model_artifact(model.id)
        event = deployment_event(store, deployment, model)
        events.append(event)
        return OutboxMessage(Topics(pipeline).model_versions, event.key, event.to_json())

    deployment = store.rollback(pipeline, alias, reason=reason, outbox=outbox)
    published = flush_outbox(store, publisher)
    return RollbackResult(deployment=deployment, event=events[-1], published=published)

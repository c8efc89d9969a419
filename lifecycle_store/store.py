"""``LifecycleStore``: the one object through which the rest of driftline versions things."""

from __future__ import annotations

import logging
import os
from types import TracebackType

import sqlalchemy as sa

from driftline.lifecycle_store.archive import Archive
from driftline.lifecycle_store.artifacts import ArtifactStore
from driftline.lifecycle_store.deployments import DeploymentsMixin
from driftline.lifecycle_store.engine import make_engine, migrate, safe_url
from driftline.lifecycle_store.exceptions import StoreError
from driftline.lifecycle_store.lineage import LineageMixin
from driftline.lifecycle_store.pipelines import PipelinesMixin
from driftline.lifecycle_store.similarity import SimilarityCache, SimilarityMixin
from driftline.lifecycle_store.trainings import TrainingsMixin
from driftline.redact import redact_text

__all__ = ["LifecycleStore"]

logger = logging.getLogger(__name__)


class LifecycleStore(
    PipelinesMixin, TrainingsMixin, DeploymentsMixin, LineageMixin, SimilarityMixin
):
    """Versioned data, models, trainings and deployments of every pipeline, with lineage.

    Open it with :meth:`open`; it migrates the database schema on open and is safe to share
    between threads. Several processes may open the same SQLite file or PostgreSQL database.

    >>> import tempfile, pyarrow as pa
    >>> d = tempfile.mkdtemp()
    >>> with LifecycleStore.open(f"sqlite:///{d}/s.db", artifacts=f"{d}/artifacts") as store:
    ...     p = store.ensure_pipeline("fraud", ["amount", "age"], {"model": "mlp"})
    ...     dv = store.snapshot(p, pa.table({"amount": [1.0, 2.0], "age": [30.0, 40.0]}))
    ...     mv = store.register_model(p, b"weights", framework="torch", params={},
    ...                               metrics={"accuracy": 0.9}, data_version_id=dv.id)
    ...     _ = store.deploy(p, "champion", mv.id, reason="first model")
    ...     store.current("fraud").id == mv.id, store.lifecycle(mv.id).data_version.id == dv.id
    (True, True)
    """

    def __init__(self, engine: sa.Engine, artifacts: ArtifactStore) -> None:
        super().__init__(engine, artifacts)
        self._sim = SimilarityCache()

    @classmethod
    def open(
        cls,
        url: str | sa.URL | None = None,
        artifacts: str | os.PathLike[str] | ArtifactStore = "artifacts",
    ) -> LifecycleStore:
        """Connect to ``url``, bring its schema up to date, and return the store.

        ``url`` defaults to ``$DRIFTLINE_STORE_URL`` or ``sqlite:///driftline.db``; use
        ``postgresql+psycopg://user:password@host/db`` for PostgreSQL. ``artifacts`` is a
        local directory, a pyarrow filesystem URI (``s3://bucket/prefix``) or an
        :class:`ArtifactStore`. The password in ``url`` is never logged.
        """
        if url is None:
            url = os.environ.get("DRIFTLINE_STORE_URL", "sqlite:///driftline.db")
        engine = make_engine(url)
        try:
            migrate(engine)
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            # The driver's own message (never the URL's password), not SQLAlchemy's wrapper.
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            reason = redact_text(reason)
            raise StoreError(
                f"cannot open the lifecycle store at {safe_url(engine.url)}: {reason}"
            ) from None
        except Exception:
            engine.dispose()
            raise
        store = cls(
            engine, artifacts if isinstance(artifacts, ArtifactStore) else ArtifactStore(artifacts)
        )
        logger.info("lifecycle store open: %s, artifacts %r", safe_url(engine.url), store.artifacts)
        return store

    def archive(self, pipeline: str) -> Archive:
        """The archive of raw rows and labels of ``pipeline``."""
        with self._read() as session:
            pid = self._pipeline_id(session, pipeline)
        return Archive(self, pipeline, pid)

    def close(self) -> None:
        """Release database connections (the store must not be used afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> LifecycleStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LifecycleStore({safe_url(self._engine.url)!r}, artifacts={self._artifacts!r})"

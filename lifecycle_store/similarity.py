"""Which past lifecycles ran on data most like this? (VeML's lifecycle transfer.)

Exact coreset similarity costs milliseconds per pair, too much to compare against thousands
of data versions interactively. So the search has two stages:

1. *Shortlist* by a cheap per-version vector held in memory: each feature's mean and log
   standard deviation (the ``profile`` stored with every data version), scaled by the
   query's spread. One vectorized distance over all versions of the pipeline.
2. *Rank* the ``candidates`` nearest by :func:`driftline.detectors.similarity.similarity` of the
   stored coresets, all with one kernel bandwidth (the median heuristic on the query's
   coreset), so scores are on one scale and comparable across candidates.

Decoded coresets are kept in a bounded LRU cache; the shortlist vectors are loaded once per
pipeline (a covering index serves them) and topped up when new versions appear. The kernel
arithmetic runs with single-threaded BLAS (see ``_single_threaded_blas``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session
from threadpoolctl import ThreadpoolController

from driftline.detectors.coreset import Coreset
from driftline.detectors.similarity import similarity
from driftline.lifecycle_store import orm
from driftline.lifecycle_store._base import PipelineRef, pipeline_name
from driftline.lifecycle_store.canonical import PROFILE_EPS
from driftline.lifecycle_store.data_versions import DataVersionsMixin
from driftline.lifecycle_store.exceptions import NotFoundError, SchemaMismatchError, StoreError
from driftline.lifecycle_store.model_versions import ModelVersionsMixin
from driftline.lifecycle_store.records import ModelVersion, SimilarLifecycle

_CORESET_CACHE = 512
_BLAS: ThreadpoolController | None = None


@dataclass
class _Index:
    versions: int  # data versions of the pipeline when loaded, with or without a coreset
    ids: list[str]
    means: np.ndarray  # one row per data version, one column per feature
    log_stds: np.ndarray


class SimilarityMixin(DataVersionsMixin, ModelVersionsMixin):
    _sim: SimilarityCache

    def most_similar(
        self,
        pipeline: PipelineRef,
        query: Coreset | str,
        k: int = 3,
        *,
        exclude: Collection[str] = (),
        candidates: int | None = None,
        metric: str | None = None,
        higher_is_better: bool = True,
    ) -> list[SimilarLifecycle]:
        """The ``k`` past data versions most similar to ``query``, most similar first.

        ``query`` is a :class:`~driftline.detectors.coreset.Coreset` of new data or a data version
        id
        (which is then left out of the results, as are ids in ``exclude``). Each result
        carries the model versions trained on that data and the ``best_model`` to warm-start
        from: the best by ``metric`` when given (and present), else the latest.
        ``candidates`` (default ``2 * k``) is how many shortlisted versions get an exact
        similarity; raise it for recall, lower it for speed.
        """
        if k < 1:
            raise StoreError(f"k must be >= 1, got {k}")
        name = pipeline_name(pipeline)
        excluded = set(exclude)
        # One read transaction for the index check and the result records: fewer round trips.
        with self._read() as session:
            pid = self._pipeline_id(session, name)
            index = self._similarity_index(session, pid)
            top = self._rank(name, index, query, k, excluded, candidates or 2 * k)
            return self._similar_lifecycles(session, name, top, metric, higher_is_better)

    def _rank(
        self,
        name: str,
        index: _Index,
        query: Coreset | str,
        k: int,
        excluded: set[str],
        candidates: int,
    ) -> list[tuple[float, str]]:
        if isinstance(query, str):
            excluded.add(query)
            query_coreset = self._coreset(query)
            if query_coreset is None:
                raise StoreError(f"data version {query!r} has no rows to compare")
        elif isinstance(query, Coreset):
            query_coreset = query
        else:
            raise StoreError(
                f"query must be a Coreset or a data version id, got {type(query).__name__}"
            )
        points, weights = query_coreset.points, query_coreset.weights
        if len(points) == 0:
            raise StoreError("query coreset is empty; update it with rows first")
        if index.means.shape[0] and points.shape[1] != index.means.shape[1]:
            raise SchemaMismatchError(
                f"query coreset has {points.shape[1]} features, pipeline {name!r} has "
                f"{index.means.shape[1]}; sketch the pipeline's feature columns"
            )
        shortlist = _shortlist(index, points, weights, excluded, candidates)
        stored = [(dv_id, self._coreset(dv_id)) for dv_id in shortlist]
        scored = []
        with _single_threaded_blas():
            bandwidth = _median_distance(points)
            for dv_id, coreset in stored:
                if coreset is not None:
                    scored.append((similarity(query_coreset, coreset, bandwidth=bandwidth), dv_id))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return scored[:k]

    def _similar_lifecycles(
        self,
        session: Session,
        name: str,
        top: list[tuple[float, str]],
        metric: str | None,
        higher_is_better: bool,
    ) -> list[SimilarLifecycle]:
        ids = [dv_id for _, dv_id in top]
        rows = {
            r.id: r
            for r in session.scalars(
                sa.select(orm.DataVersionRow).where(orm.DataVersionRow.id.in_(ids))
            )
        }
        records = {r.id: r for r in self._data_version_records(session, [rows[i] for i in ids])}
        models: dict[str, list[ModelVersion]] = {}
        for mv in session.scalars(
            sa.select(orm.ModelVersionRow)
            .where(orm.ModelVersionRow.data_version_id.in_(ids))
            .order_by(orm.ModelVersionRow.version.desc())
        ):
            models.setdefault(mv.data_version_id, []).append(ModelVersion._from_row(mv, name))
        return [
            SimilarLifecycle(
                records[dv_id],
                score,
                tuple(models.get(dv_id, ())),
                _best(models.get(dv_id, []), metric, higher_is_better),
            )
            for score, dv_id in top
        ]

    def _similarity_index(self, session: Session, pid: int) -> _Index:
        state = self._sim
        with state.lock:
            index = state.indexes.get(pid)
            # Counting every version (not only those with a coreset) is answered from the
            # (pipeline_id, created_at) index without touching the coreset blobs.
            count = session.scalar(
                sa.select(sa.func.count())
                .select_from(orm.DataVersionRow)
                .where(orm.DataVersionRow.pipeline_id == pid)
            )
            if index is not None and index.versions == count:
                return index
            known = set(index.ids) if index is not None else set()
            fresh = [
                (dv_id, profile)
                for dv_id, profile in session.execute(
                    sa.select(orm.DataVersionRow.id, orm.DataVersionRow.profile).where(
                        orm.DataVersionRow.pipeline_id == pid,
                        orm.DataVersionRow.profile.is_not(None),
                    )
                )
                if dv_id not in known and profile is not None
            ]
            means, log_stds = _vectors([p for _, p in fresh])
            if index is None:
                index = _Index(count or 0, [i for i, _ in fresh], means, log_stds)
            elif fresh:
                index = _Index(
                    count or 0,
                    index.ids + [i for i, _ in fresh],
                    np.vstack([index.means, means]),
                    np.vstack([index.log_stds, log_stds]),
                )
            else:
                index.versions = count or 0
            state.indexes[pid] = index
            return index

    def _coreset(self, dv_id: str) -> Coreset | None:
        state = self._sim
        with state.lock:
            if dv_id in state.coresets:
                state.coresets.move_to_end(dv_id)
                return state.coresets[dv_id]
        with self._read() as session:
            row = session.execute(
                sa.select(orm.DataVersionRow.id, orm.DataVersionRow.coreset).where(
                    orm.DataVersionRow.id == dv_id
                )
            ).first()
        if row is None:
            raise NotFoundError(f"data version {dv_id!r} does not exist")
        coreset = None if row.coreset is None else Coreset.from_bytes(row.coreset)
        with state.lock:
            state.coresets[dv_id] = coreset
            while len(state.coresets) > _CORESET_CACHE:
                state.coresets.popitem(last=False)
        return coreset


class SimilarityCache:
    """Shortlist vectors per pipeline and decoded coresets (LRU), shared by threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.indexes: dict[int, _Index] = {}
        self.coresets: OrderedDict[str, Coreset | None] = OrderedDict()


def _vectors(profiles: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    if not profiles:
        return np.zeros((0, 0)), np.zeros((0, 0))
    matrix = np.frombuffer(b"".join(profiles), dtype="<f8").reshape(len(profiles), -1)
    d = matrix.shape[1] // 2
    return matrix[:, :d], matrix[:, d:]


def _shortlist(
    index: _Index, points: np.ndarray, weights: np.ndarray, excluded: set[str], n: int
) -> list[str]:
    if not index.ids:
        return []
    w = weights / weights.sum()
    mean = w @ points
    std = np.sqrt(np.maximum(w @ (points - mean) ** 2, 0.0))
    scale = np.where(std > PROFILE_EPS, std, 1.0)
    d = (((index.means - mean) / scale) ** 2).sum(axis=1) + (
        (index.log_stds - np.log(std + PROFILE_EPS)) ** 2
    ).sum(axis=1)
    reach = min(len(d), n + len(excluded))
    nearest = np.argpartition(d, reach - 1)[:reach] if reach < len(d) else np.arange(len(d))
    order = nearest[np.argsort(d[nearest], kind="stable")]
    picked: list[str] = []
    for i in order:
        if index.ids[i] not in excluded:
            picked.append(index.ids[i])
            if len(picked) == n:
                break
    return picked


def _single_threaded_blas() -> AbstractContextManager[object]:
    # Kernel matrices of a few hundred points are far too small for BLAS threads: on a busy
    # machine their hand-offs cost 10-30x the arithmetic itself.
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _median_distance(points: np.ndarray) -> float:
    sq = (points**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * points @ points.T, 0.0)
    upper = d2[np.triu_indices(len(points), k=1)]
    median = float(np.sqrt(np.median(upper))) if upper.size else 1.0
    return median if median > 0 else 1.0


def _best(
    models: list[ModelVersion], metric: str | None, higher_is_better: bool
) -> ModelVersion | None:
    if not models:
        return None
    if metric is not None:
        scored = [m for m in models if isinstance(m.metrics.get(metric), int | float)]
        if scored:
            sign = 1.0 if higher_is_better else -1.0
            return max(scored, key=lambda m: (sign * float(m.metrics[metric]), m.version))
    return models[0]

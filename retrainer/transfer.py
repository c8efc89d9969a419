"""Lifecycle transfer (VeML): warm-start from the model of the most similar past data.

The new data version's core set is compared with the stored core sets of past data versions
(``store.most_similar``); the best model trained on the most similar one that the configured
adapter can load is the parent. When even the most similar past data is unlike the new data
(``model.min_similarity``), the concept is new and the model trains from scratch. When no
past model can be loaded, the champion is the parent; without a champion, scratch. The
choice and its reason go into the training record and the model's lineage
(``parent_model_version_id``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from driftline.config.pipeline import HIGHER_IS_BETTER, ModelConfig
from driftline.retrainer.adapters import load_adapter

__all__ = ["ParentChoice", "choose_parent"]

logger = logging.getLogger(__name__)

SIMILAR_CANDIDATES = 5


@dataclass(frozen=True)
class ParentChoice:
    """The model a training starts from: ``source`` is ``similar``, ``champion`` or
    ``scratch``; ``adapter`` is the loaded parent (None for scratch)."""

    source: str
    reason: str
    model_version_id: str | None = None
    data_version_id: str | None = None
    similarity: float | None = None
    adapter: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record for the training."""
        return {
            "source": self.source,
            "reason": self.reason,
            "model_version_id": self.model_version_id,
            "data_version_id": self.data_version_id,
            "similarity": self.similarity,
        }

    def without_adapter(self) -> ParentChoice:
        """The same choice, dropping the loaded model (for outcomes that outlive training)."""
        return ParentChoice(
            self.source,
            self.reason,
            self.model_version_id,
            self.data_version_id,
            self.similarity,
        )


def choose_parent(
    store: Any,
    pipeline: str,
    data_version_id: str,
    model: ModelConfig,
    champion: Any | None,
    metric: str | None = None,
) -> ParentChoice:
    """Pick the parent of a new training on ``data_version_id`` (see module docstring).

    Among the models trained on one past data version, the best by ``metric`` is taken.
    """
    skipped: list[str] = []
    if model.warm_start == "similar":
        similar = store.most_similar(
            pipeline,
            data_version_id,
            k=SIMILAR_CANDIDATES,
            exclude=(data_version_id,),
            metric=metric,
            higher_is_better=HIGHER_IS_BETTER.get(metric or "", True),
        )
        for cand in similar:
            mv = cand.best_model
            if mv is None:
                continue
            if cand.similarity < model.min_similarity:
                # Nothing seen is like this data, the champion included: weights of an
                # unrelated concept start training worse than fresh ones.
                return ParentChoice(
                    "scratch",
                    f"from scratch: the most similar past data with a model, "
                    f"{cand.data_version.id}, has similarity {cand.similarity:.3f} < "
                    f"model.min_similarity {model.min_similarity}",
                )
            loaded = _load(store, mv, model, skipped)
            if loaded is None:
                continue
            best_alt = _describe_alternatives(similar, cand)
            return ParentChoice(
                "similar",
                f"most similar past data {cand.data_version.id} (similarity "
                f"{cand.similarity:.3f}{best_alt}) trained model v{mv.version}",
                mv.id,
                cand.data_version.id,
                float(cand.similarity),
                loaded,
            )
        if not similar:
            skipped.append("no past data version with a core set")
    if model.warm_start in ("similar", "champion") and champion is not None:
        loaded = _load(store, champion, model, skipped)
        if loaded is not None:
            why = "; ".join(skipped) or "warm_start='champion'"
            return ParentChoice(
                "champion",
                f"champion v{champion.version} ({why})",
                champion.id,
                champion.data_version_id,
                None,
                loaded,
            )
    why = "; ".join(skipped) or (
        "warm_start='none'" if model.warm_start == "none" else "no past model"
    )
    return ParentChoice("scratch", f"from scratch ({why})")


def _load(store: Any, mv: Any, model: ModelConfig, skipped: list[str]) -> Any | None:
    if mv.framework != model.adapter:
        skipped.append(f"model {mv.id} is {mv.framework!r}, not {model.adapter!r}")
        return None
    try:
        return load_adapter(mv.framework, store.load_model_artifact(mv.id))
    except Exception as exc:  # a parent that cannot be read must not stop the training
        logger.warning("cannot load model %s as a warm-start parent: %s", mv.id, exc)
        skipped.append(f"model {mv.id} could not be loaded ({exc})")
        return None


def _describe_alternatives(similar: list[Any], chosen: Any) -> str:
    others = [c for c in similar if c is not chosen and c.best_model is not None][:2]
    if not others:
        return ""
    return ", next " + ", ".join(f"{c.data_version.id} {c.similarity:.3f}" for c in others)

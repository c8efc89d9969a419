from __future__ import annotations

import numpy as np
import pytest

from driftline.config.pipeline import GateConfig, GuardConfig
from driftline.retrainer.gate import compare, holdout_mask
from driftline.retrainer.guard import GuardFeatures, WastedComputationGuard


def test_gate_needs_a_margin_in_the_metric_direction() -> None:
    cfg = GateConfig(margin=0.02)
    assert compare(cfg, "accuracy", {"accuracy": 0.93}, {"accuracy": 0.9}, 50).deploy
    assert not compare(cfg, "accuracy", {"accuracy": 0.91}, {"accuracy": 0.9}, 50).deploy
    assert compare(cfg, "mse", {"mse": 1.0}, {"mse": 1.5}, 50).deploy
    assert not compare(cfg, "mse", {"mse": 1.5}, {"mse": 1.0}, 50).deploy
    first = compare(cfg, "accuracy", {"accuracy": 0.5}, None, 50)
    assert first.deploy and "no champion" in first.reason
    nan = compare(cfg, "accuracy", {"accuracy": float("nan")}, None, 50)
    assert not nan.deploy
    d = compare(cfg, "accuracy", {"accuracy": 0.91}, {"accuracy": 0.9}, 50).to_dict()
    assert d["champion"] == 0.9 and d["challenger"] == 0.91 and d["holdout_rows"] == 50


def test_holdout_is_stable_new_only_and_sized() -> None:
    ids = [f"e{i}" for i in range(5000)]
    is_new = np.arange(5000) >= 2000
    a = holdout_mask(ids, is_new, 0.2)
    assert (a == holdout_mask(list(reversed(ids)), is_new[::-1], 0.2)[::-1]).all()
    assert not a[:2000].any()
    assert a.sum() == pytest.approx(0.2 * 3000, rel=0.1)
    assert (a != holdout_mask(ids, is_new, 0.2, seed=1)).any()


def test_guard_is_conservative_without_history() -> None:
    g = WastedComputationGuard(GuardConfig(min_history=4))
    stale = GuardFeatures(0.1, 0.99, 0.97)
    assert g.assess(None, []).train
    assert g.assess(stale, []).train
    assert g.assess(stale, [(stale, False)] * 3).train  # below min_history
    assert not g.assess(stale, [(stale, False)] * 4).train
    assert (
        WastedComputationGuard(GuardConfig(enabled=False))
        .assess(stale, [(stale, False)] * 10)
        .train
    )


def test_guard_learns_which_situations_deploy() -> None:
    rng = np.random.default_rng(0)
    history = []
    for _ in range(40):
        # Strong drift to unlike data with a champion that now scores badly: deploys.
        history.append((GuardFeatures(*rng.uniform([0.5, 0.0, 0.2], [1.0, 0.4, 0.6])), True))
        # Weak alarm, data like the champion's, champion still good: never deploys.
        history.append((GuardFeatures(*rng.uniform([0.0, 0.9, 0.9], [0.3, 1.0, 1.0])), False))
    g = WastedComputationGuard(GuardConfig())
    skip = g.assess(GuardFeatures(0.2, 0.95, 0.95), history)
    train = g.assess(GuardFeatures(0.8, 0.2, 0.4), history)
    assert not skip.train and skip.p_deploy is not None and skip.p_deploy < 0.1
    assert "skipped by the guard" in skip.reason
    assert train.train and train.p_deploy is not None and train.p_deploy > 0.9
    # Far from every past run: too little evidence to skip.
    assert g.assess(GuardFeatures(0.0, 0.0, 0.0), history).train
    # After explore_every skips in a row it trains once to keep learning.
    assert g.assess(GuardFeatures(0.2, 0.95, 0.95), history, recent_skips=5).train


def test_guard_features_scale() -> None:
    f = GuardFeatures.from_raw(ratio=None, similarity=1.3, champion_score=-0.5)
    assert (f.magnitude, f.similarity, f.champion_score) == (0.0, 1.0, 0.0)
    assert GuardFeatures.from_raw(1e9, 0.5, 0.5).magnitude == 1.0
    assert 0 < GuardFeatures.from_raw(2.0, 0.5, 0.5).magnitude < 1
    assert GuardFeatures.from_dict(f.to_dict()) == f

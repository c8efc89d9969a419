from __future__ import annotations

import numpy as np
import pytest

from driftline.config.pipeline import GateConfig, GuardConfig
from driftline.retrainer.gate import compare, holdout_mask, per_row_loss
from driftline.retrainer.guard import GuardFeatures, WastedComputationGuard


def _losses(n: int, wrong: list[int]) -> np.ndarray:
    loss = np.zeros(n)
    loss[wrong] = 1.0
    return loss


def test_gate_lets_a_better_model_through_a_near_perfect_champion() -> None:
    # The case: champion 0.997 vs challenger 0.9995 on 4000 holdout rows. An absolute
    # margin of 0.005 could never deploy it; the paired test sees 10 wins against 0 losses.
    cfg = GateConfig(confidence=0.95)
    champ, chall = _losses(4000, list(range(12))), _losses(4000, [0, 1])
    d = compare(cfg, "accuracy", {"accuracy": 0.9995}, {"accuracy": 0.997}, chall, champ)
    assert d.deploy and d.wins == 10 and d.losses == 0 and d.p_value < 0.01
    assert d.to_dict()["test"] == "mcnemar-exact" and d.gain == pytest.approx(10 / 4000)


def test_gate_rejects_noise_and_worse_models() -> None:
    cfg = GateConfig(confidence=0.9)
    champ = _losses(200, [0, 1, 2, 3, 4, 5])
    coin = _losses(200, [0, 1, 2, 3, 6, 7])  # 2 wins, 2 losses: no evidence
    d = compare(cfg, "accuracy", {"accuracy": 0.97}, {"accuracy": 0.97}, coin, champ)
    assert not d.deploy and d.p_value > 0.5 and "not shown better" in d.reason
    worse = _losses(200, list(range(30)))
    assert not compare(cfg, "accuracy", {"accuracy": 0.85}, {"accuracy": 0.97}, worse, champ).deploy
    # A margin demands an observed gain on top of significance.
    better = _losses(200, [])
    assert compare(cfg, "accuracy", {"accuracy": 1.0}, {"accuracy": 0.97}, better, champ).deploy
    strict = GateConfig(confidence=0.9, margin=0.05)
    assert not compare(
        strict, "accuracy", {"accuracy": 1.0}, {"accuracy": 0.97}, better, champ
    ).deploy


def test_gate_regression_uses_a_paired_t_test_on_the_metric_loss() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    good, bad = y + rng.normal(0, 0.3, 300), y + rng.normal(0, 0.6, 300)
    cfg = GateConfig(confidence=0.95)
    ok = compare(
        cfg,
        "mse",
        {"mse": 0.09},
        {"mse": 0.36},
        per_row_loss("mse", y, good),
        per_row_loss("mse", y, bad),
    )
    assert ok.deploy and ok.test == "paired-t" and ok.gain_lower > 0
    assert not compare(
        cfg,
        "mae",
        {"mae": 0.5},
        {"mae": 0.25},
        per_row_loss("mae", y, bad),
        per_row_loss("mae", y, good),
    ).deploy


def test_gate_first_model_and_nan() -> None:
    cfg = GateConfig()
    first = compare(cfg, "accuracy", {"accuracy": 0.5}, None, np.zeros(50), None)
    assert first.deploy and "no champion" in first.reason
    assert not compare(cfg, "accuracy", {"accuracy": float("nan")}, None, np.zeros(5), None).deploy


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

"""One contract suite over every drift detector."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.detectors import (
    DetectorError,
    DriftDetector,
    DriftResult,
    InvalidInputError,
    NotFittedError,
    PartialState,
    make_detector,
)

from ._cases import CASES, Case


def test_fit_returns_self_and_describes_reference(case: Case) -> None:
    det = case.make(ert=1000)
    assert det.fit(case.reference) is det
    assert det.n_features == case.n_features
    assert det.feature_names == tuple(f"x{i}" for i in range(case.n_features))
    assert det.n_seen == 0 and not det.drift_detected
    assert np.isfinite(det.threshold) and det.threshold > 0


def test_update_returns_result_and_counts_events(case: Case, fitted: DriftDetector) -> None:
    rng = np.random.default_rng(1)
    res = fitted.update(case.same(rng, 250))
    assert isinstance(res, DriftResult)
    assert fitted.n_seen == 250
    assert res.threshold == pytest.approx(fitted.threshold)
    names = [n for n, _ in res.features]
    assert set(fitted.feature_names) <= set(names)
    scores = [s for _, s in res.features]
    assert scores == sorted(scores, reverse=True)


def test_state_round_trip_gives_identical_next_results(case: Case, fitted: DriftDetector) -> None:
    rng = np.random.default_rng(2)
    fitted.update(case.same(rng, 300))
    fitted.update(case.shifted(rng, 40))
    copy = DriftDetector.from_bytes(fitted.to_bytes())
    assert type(copy) is type(fitted)
    assert copy.n_seen == fitted.n_seen and copy.feature_names == fitted.feature_names
    for _ in range(3):
        batch = case.shifted(rng, 70)
        assert copy.update(batch) == fitted.update(batch)
    assert copy.drift_detected == fitted.drift_detected


def test_unfitted_round_trip_and_params_clone(case: Case) -> None:
    det = case.make(ert=1234, seed=7)
    clone = type(det)(**det.get_params())
    assert clone.get_params() == det.get_params()
    restored = DriftDetector.from_bytes(det.to_bytes())
    assert restored.get_params() == det.get_params()
    with pytest.raises(NotFittedError):
        restored.update(case.same(np.random.default_rng(0), 5))


def test_params_reconstruct_an_identical_detector(case: Case, fitted: DriftDetector) -> None:
    clone = type(fitted)(**fitted.get_params()).fit(case.reference)
    assert clone.threshold == fitted.threshold
    batch = case.shifted(np.random.default_rng(3), 200)
    assert clone.update(batch) == fitted.update(batch)


def test_split_batches_match_one_batch(case: Case, fitted: DriftDetector) -> None:
    rng = np.random.default_rng(4)
    data = case.same(rng, 600)
    other = DriftDetector.from_bytes(fitted.to_bytes())
    whole = fitted.update(data)
    parts = [other.update(data[i : i + 130]) for i in range(0, 600, 130)]
    assert parts[-1].statistic == pytest.approx(whole.statistic, rel=1e-4)
    single = DriftDetector.from_bytes(other.to_bytes())
    nxt = case.same(rng, 1)
    assert single.update(nxt[0]).statistic == pytest.approx(other.update(nxt).statistic)


def test_no_alarm_storm_on_reference_data(case: Case) -> None:
    det = case.make(ert=2000).fit(case.reference)
    rng = np.random.default_rng(5)
    alarms = 0
    for _ in range(20):  # 20_000 events: about 10 false alarms expected
        if det.update(case.same(rng, 1000)).drift:
            alarms += 1
            det.reset()
    assert alarms <= 10  # at most one per batch: a storm would hit nearly every batch
    # Its own reference is no drift either: ~5% of 100-row slices may alarm by chance (ert
    # 2000), a detector that mistook the reference for a change would alarm on most.
    fired = 0
    for start in range(0, 3000, 100):
        det.reset()
        fired += det.update(case.reference[start : start + 100]).drift
    assert fired <= 4


def test_detects_clear_shift_at_the_right_row(case: Case, fitted: DriftDetector) -> None:
    rng = np.random.default_rng(6)
    batch = np.concatenate([case.same(rng, 300), case.shifted(rng, 700)])
    res = fitted.update(batch)
    assert res.drift and fitted.drift_detected
    assert res.index is not None and 300 <= res.index < 300 + 200
    assert res.statistic > res.threshold


def test_alarm_latches_until_reset_and_updates_keep_working(
    case: Case, fitted: DriftDetector
) -> None:
    rng = np.random.default_rng(7)
    assert fitted.update(case.shifted(rng, 500)).drift
    after = fitted.update(case.same(rng, 10))
    assert isinstance(after, DriftResult)
    assert fitted.drift_detected
    assert fitted.n_seen == 510
    fitted.reset()
    assert not fitted.drift_detected and fitted.n_seen == 0
    assert not fitted.update(case.same(rng, 200)).drift


def test_invalid_input_names_the_value(case: Case, fitted: DriftDetector) -> None:
    with pytest.raises(InvalidInputError, match=r"ert must be .*got 0"):
        case.make(ert=0).fit(case.reference)
    with pytest.raises(InvalidInputError, match=r"window must be .*got -3"):
        case.make(window=-3).fit(case.reference)
    with pytest.raises(InvalidInputError, match="reference has 5 rows"):
        case.make().fit(case.reference[:5])
    with pytest.raises(InvalidInputError, match="feature_names has 1 names"):
        case.make().fit(case.reference, feature_names=["only"])
    with pytest.raises(NotFittedError, match="call fit"):
        case.make().update(case.reference[:3])
    with pytest.raises(DetectorError):
        DriftDetector.from_bytes(b"not a detector")


def test_wrong_width_and_non_finite_rows_are_rejected() -> None:
    for case in CASES[:3]:
        det = case.make(ert=500).fit(case.reference)
        good = case.same(np.random.default_rng(0), 4)
        with pytest.raises(InvalidInputError, match=f"{case.n_features} were expected"):
            det.update(np.ones((4, case.n_features + 1)))
        bad = good.copy()
        bad[2, 1] = np.nan
        with pytest.raises(InvalidInputError, match="row 2, column 1"):
            det.update(bad)
        bad[2, 1] = np.inf
        with pytest.raises(InvalidInputError, match="NaN or inf"):
            det.update(bad)
        with pytest.raises(InvalidInputError, match="empty"):
            det.update(np.zeros((0, case.n_features)))


def test_named_features_rank_the_shifted_column_first() -> None:
    rng = np.random.default_rng(8)
    names = ["age", "income", "clicks", "score"]
    for case in CASES[:2]:
        det = case.make(ert=1000).fit(case.reference, feature_names=names)
        shifted = rng.normal(size=(400, 4)) + np.array([0.0, 0.0, 1.5, 0.0])
        res = det.update(shifted)
        assert res.drift
        assert res.features[0][0] == "clicks"


@pytest.mark.parametrize("kind", ["mmd", "feature", "output"])
def test_make_detector_builds_each_kind(kind: str) -> None:
    det = make_detector(kind, ert=321)
    assert isinstance(det, DriftDetector) and det.ert == 321


def test_make_detector_rejects_unknown_kind_and_params() -> None:
    with pytest.raises(InvalidInputError, match="unknown detector kind 'adwin'"):
        make_detector("adwin")
    with pytest.raises(InvalidInputError, match=r"allowed: .*ert"):
        make_detector("mmd", ertt=10)
    with pytest.raises(InvalidInputError, match=r"ert must be .*got 0"):
        make_detector("feature", ert=0)


def test_constant_reference_does_not_alarm_on_the_same_constant() -> None:
    ref = np.full((200, 3), 2.5)
    for kind in ("mmd", "feature"):
        det = make_detector(kind, ert=1000, n_simulated=100_000).fit(ref)
        assert not det.update(np.full((500, 3), 2.5)).drift
        assert det.update(np.full((50, 3), 4.0)).drift


def test_output_drift_labels_reject_probability_shaped_batches() -> None:
    det = make_detector("output", ert=1000, n_simulated=100_000)
    det.fit(np.random.default_rng(0).integers(0, 3, 300))
    with pytest.raises(InvalidInputError, match="1-D array of class indices"):
        det.update(np.full((4, 3), 1 / 3))
    with pytest.raises(InvalidInputError, match=r"class 5 outside 0\.\.2"):
        det.update(np.array([0, 5]))
    with pytest.raises(InvalidInputError, match="integers"):
        det.update(np.array([0.5, 1.0]))


def test_partial_state_then_merge_equals_update(case: Case, fitted: DriftDetector) -> None:
    rng = np.random.default_rng(9)
    twin = DriftDetector.from_bytes(fitted.to_bytes())
    for batch in (case.same(rng, 200), case.shifted(rng, 150)):
        part = PartialState.from_bytes(twin.partial_state(batch).to_bytes())
        assert twin.merge(part) == fitted.update(batch)
    assert twin.n_seen == fitted.n_seen
    wrong = PartialState(features=np.zeros((3, 1)), rows=np.zeros((3, case.n_features)))
    with pytest.raises(InvalidInputError, match="identically fitted"):
        fitted.merge(wrong)
    with pytest.raises(InvalidInputError, match="PartialState"):
        PartialState.from_bytes(fitted.to_bytes())


def test_two_scales_are_described_and_can_be_turned_off(case: Case) -> None:
    assert case.make().windows == (100, 12)
    assert case.make(short_window=0).windows == (100,)
    assert case.make(short_window=30).windows == (100, 30)
    with pytest.raises(InvalidInputError, match="short_window must be"):
        case.make(short_window=-1).fit(case.reference)

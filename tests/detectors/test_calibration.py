"""Statistical calibration: observed events between false alarms match the requested ert."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

from driftline.detectors import (
    DriftDetector,
    FeatureDrift,
    InvalidInputError,
    OnlineMMD,
    OutputDrift,
    SmallReferenceWarning,
)

ERT = 500
N_EVENTS = 120_000  # ~240 false alarms expected: the ratio is known to about +-15%


def observed_ert(det: DriftDetector, stream: np.ndarray, batch: int = 1000) -> float:
    """Events per false alarm, resetting after each alarm as the streaming layer does."""
    alarms, i = 0, 0
    while i < len(stream):
        res = det.update(stream[i : i + batch])
        if res.drift:
            assert res.index is not None
            alarms += 1
            i += res.index + 1
            det.reset()
        else:
            i += batch
    return len(stream) / max(alarms, 1)


def _digits(n: int, rng: np.random.Generator) -> np.ndarray:
    x = load_digits().data
    return x[rng.integers(0, len(x), n)]


def _correlated(n: int, rng: np.random.Generator, d: int = 8, rho: float = 0.9) -> np.ndarray:
    cov = np.full((d, d), rho) + (1 - rho) * np.eye(d)
    return rng.normal(size=(n, d)) @ np.linalg.cholesky(cov).T


STREAMS = {
    "gauss": lambda n, rng: rng.normal(size=(n, 8)),
    "digits": _digits,
    "correlated": _correlated,
}


@pytest.mark.slow
@pytest.mark.parametrize("stream", sorted(STREAMS))
@pytest.mark.parametrize("cls", [OnlineMMD, FeatureDrift], ids=["mmd", "feature"])
def test_false_alarm_rate_matches_ert(cls: type[DriftDetector], stream: str) -> None:
    gen = STREAMS[stream]
    det = cls(ert=ERT, window=50, n_simulated=500_000).fit(gen(4000, np.random.default_rng(0)))
    ratio = observed_ert(det, gen(N_EVENTS, np.random.default_rng(1))) / ERT
    assert 0.5 <= ratio <= 2.0, f"observed/requested ert = {ratio:.2f}"


@pytest.mark.slow
def test_output_drift_false_alarm_rate_matches_ert() -> None:
    alpha = [5.0, 2.0, 1.0, 0.5]
    det = OutputDrift(ert=ERT, window=50, n_simulated=500_000)
    det.fit(np.random.default_rng(0).dirichlet(alpha, size=4000))
    stream = np.random.default_rng(1).dirichlet(alpha, size=N_EVENTS)
    ratio = observed_ert(det, stream) / ERT
    assert 0.5 <= ratio <= 2.0, f"observed/requested ert = {ratio:.2f}"


def test_threshold_grows_with_ert() -> None:
    ref = np.random.default_rng(0).normal(size=(2000, 4))
    thresholds = [
        OnlineMMD(ert=e, window=50, n_simulated=200_000).fit(ref).threshold
        for e in (100, 1000, 100_000)
    ]
    assert thresholds[0] < thresholds[1] < thresholds[2]


def test_online_mmd_catches_correlation_only_change() -> None:
    """Marginals stay N(0, 1); only the correlation of two of 8 features changes."""
    rng = np.random.default_rng(2)
    det = OnlineMMD(ert=10_000, window=200, n_simulated=500_000).fit(rng.normal(size=(5000, 8)))
    cov = np.eye(8)
    cov[0, 1] = cov[1, 0] = 0.8
    drifted = rng.normal(size=(3000, 8)) @ np.linalg.cholesky(cov).T
    np.testing.assert_allclose(drifted.std(0), 1.0, atol=0.05)
    res = det.update(drifted)
    assert res.drift and res.index is not None and res.index < 1500
    # Attribution at the alarm row names the pair and the kind of change, on a [0, 1) scale.
    assert res.changes[0][:2] == ("x0*x1", "dependence")
    assert all(0.0 <= s < 1.0 for _, _, s in res.changes)
    assert all(0.0 <= s < 1.0 for _, s in res.features)


def test_online_mmd_names_a_mean_shift_at_the_alarm_row() -> None:
    rng = np.random.default_rng(12)
    det = OnlineMMD(ert=10_000, window=200, n_simulated=300_000).fit(rng.normal(size=(5000, 8)))
    res = det.update(rng.normal(size=(3000, 8)) + np.r_[0.0, 0.0, 0.0, 0.6, 0, 0, 0, 0])
    assert res.drift and res.changes[0][:2] == ("x3", "mean")
    assert res.features[0][0] == "x3"


def test_output_drift_estimates_accuracy_from_confidence() -> None:
    rng = np.random.default_rng(3)
    det = OutputDrift(ert=10_000, window=200, n_simulated=200_000)
    det.fit(rng.dirichlet([9.0, 1.0], size=3000))
    assert det.estimated_accuracy is None
    probs = rng.dirichlet([2.0, 1.0], size=2000)
    det.update(probs)
    expected = probs[-600:].max(axis=1).mean()
    assert det.estimated_accuracy == pytest.approx(expected, abs=0.03)
    labels_det = OutputDrift(ert=1000, n_simulated=200_000).fit(rng.integers(0, 3, 500))
    labels_det.update(rng.integers(0, 3, 50))
    assert labels_det.estimated_accuracy is None


def test_output_drift_calibrates_the_estimate_on_reference_labels() -> None:
    """An under-confident model: raw confidence reads low, calibrated confidence does not."""
    rng = np.random.default_rng(4)

    def outputs(n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        probs = rng.dirichlet([alpha, 1.0, 1.0], size=n)
        # Right with probability conf ** 0.3 (> conf): the probabilities under-state accuracy.
        right = rng.random(n) < probs.max(axis=1) ** 0.3
        labels = np.where(right, probs.argmax(1), (probs.argmax(1) + 1) % 3)
        return probs, labels

    ref, ref_labels = outputs(4000, 4.0)
    raw = OutputDrift(ert=10_000, window=300, n_simulated=200_000).fit(ref)
    cal = OutputDrift(ert=10_000, window=300, n_simulated=200_000).fit(ref, labels=ref_labels)
    assert cal.reference_accuracy == pytest.approx((ref.argmax(1) == ref_labels).mean())
    live, live_labels = outputs(3000, 2.0)
    raw.update(live)
    cal.update(live)
    truth = (live[-900:].argmax(1) == live_labels[-900:]).mean()
    assert cal.estimated_accuracy is not None and raw.estimated_accuracy is not None
    assert abs(cal.estimated_accuracy - truth) < 0.03
    assert abs(raw.estimated_accuracy - truth) > 2 * abs(cal.estimated_accuracy - truth)
    chunk = cal.estimate_accuracy(live[-900:])
    assert abs(chunk - truth) < 0.03 and cal.estimated_accuracy == pytest.approx(chunk, abs=0.02)
    assert cal.estimated_drop == pytest.approx(cal.reference_accuracy - cal.estimated_accuracy)
    restored = DriftDetector.from_bytes(cal.to_bytes())
    assert restored.estimated_accuracy == cal.estimated_accuracy
    with pytest.raises(InvalidInputError, match="one integer class per reference row"):
        OutputDrift(n_simulated=100_000).fit(ref, labels=ref_labels[:10])


def test_small_reference_warns_and_errs_towards_fewer_false_alarms() -> None:
    gen = STREAMS["digits"]
    ref = gen(300, np.random.default_rng(0))  # 300 rows for a 200-event window
    with pytest.warns(SmallReferenceWarning, match=r"calibrated for ert=\d+ instead"):
        small = OnlineMMD(ert=ERT, window=200, n_simulated=200_000).fit(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OnlineMMD(ert=ERT, window=50, n_simulated=100_000).fit(ref)  # 6 rows per event: fine
    ratio = observed_ert(small, gen(60_000, np.random.default_rng(1))) / ERT
    assert ratio >= 0.8, f"observed/requested ert = {ratio:.2f}"

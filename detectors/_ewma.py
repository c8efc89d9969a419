"""Exponentially weighted mean of a feature map, and threshold calibration by simulation.

Every detector here is the same chart: map each event to a feature vector ``z`` whose
reference mean is 0, follow ``m_t = (1 - lam) * m_{t-1} + lam * z_t`` from ``m_0 = 0``, and
alarm when a statistic of ``m_t`` exceeds a threshold. The per-event cost depends only on the
feature dimension, never on the reference size or on history.

The threshold is set so that the *run length* (events until a false alarm, starting from
``m = 0`` as after ``reset()``) has mean ``ert``: no-drift streams are simulated by drawing
held-out reference rows with replacement (which keeps correlations, ties and discreteness of
real data; a double bootstrap adds the reference's own sampling error), and the mean run
length at threshold ``h`` is the censored-exponential estimate ``exposure / alarms`` over
many runs. When even the lowest threshold that meets ``ert`` would leave too few simulated
alarms to trust, ``log(run length)`` is extrapolated linearly in ``h`` from thresholds with
enough alarms (the tail of an EWMA chart's run length is close to exponential in the
threshold; the extrapolation errs on the side of fewer false alarms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache

import numpy as np
from scipy.signal import lfilter

from driftline.detectors.exceptions import DetectorError

# Runs are this many windows long: long enough that the quiet start after a reset is a small
# part of each run, short enough for many runs (many alarms) per simulated event.
_RUN_WINDOWS = 20
_MIN_RUNS = 64
_MIN_ALARMS = 40
_MIN_THRESHOLD = 1e-6
_CHUNK_ELEMENTS = 2_000_000
_BLOCK = 32
# Larger references have a negligible sampling error; capping keeps memory bounded.
_MAX_POPULATION = 50_000

Statistic = Callable[[np.ndarray], np.ndarray]


def lam_for_window(window: int) -> float:
    """EWMA weight whose effective window (span) is ``window`` events."""
    return 2.0 / (window + 1.0)


def ewma(
    z: np.ndarray, m0: np.ndarray, lam: float | np.ndarray, decay: np.ndarray | None = None
) -> np.ndarray:
    """All states ``m_t`` for the rows of ``z`` ``(n, dim)``, starting after ``m0``.

    ``m_t = decay * m_{t-1} + lam * z_t`` per column; ``decay`` defaults to ``1 - lam``
    (an exponentially weighted mean). ``lam`` and ``decay`` may give one value per column
    (columns sharing a pair are filtered together). Computed in blocks of ``_BLOCK`` rows:
    inside a block the recursion is one small triangular matrix product and only block ends
    are chained, several times faster than a row-by-row filter for batches of ~1000 rows.
    """
    gains = np.broadcast_to(np.asarray(lam, dtype=np.float64), (z.shape[1],))
    decays = 1.0 - gains if decay is None else np.broadcast_to(decay, (z.shape[1],))
    pairs = _column_groups(gains, decays)
    if len(pairs) == 1:
        ((gain, dec, _),) = pairs
        return _ewma_one(z, m0, gain, dec)
    out = np.empty_like(z)
    for gain, dec, cols in pairs:
        out[:, cols] = _ewma_one(z[:, cols], m0[cols], gain, dec)
    return out


def _column_groups(
    gains: np.ndarray, decays: np.ndarray
) -> list[tuple[float, float, slice | np.ndarray]]:
    """Columns sharing one ``(gain, decay)`` pair: contiguous runs become slices."""
    out: list[tuple[float, float, slice | np.ndarray]] = []
    start = 0
    n = len(gains)
    for end in range(1, n + 1):
        if end == n or gains[end] != gains[start] or decays[end] != decays[start]:
            out.append((float(gains[start]), float(decays[start]), slice(start, end)))
            start = end
    return out


def _ewma_one(z: np.ndarray, m0: np.ndarray, lam: float, decay_one: float) -> np.ndarray:
    n, dim = z.shape
    n_blocks = -(-n // _BLOCK)
    if n_blocks * _BLOCK != n:
        z = np.concatenate([z, np.zeros((n_blocks * _BLOCK - n, dim), dtype=z.dtype)])
    tri, powers = _block_operators(lam, decay_one, np.dtype(z.dtype).str)
    local = np.matmul(tri, z.reshape(n_blocks, _BLOCK, dim))
    decay = float(powers[-1])
    ends, _ = lfilter([1.0], [1.0, -decay], local[:, -1, :], axis=0, zi=(decay * m0)[None, :])
    starts = np.concatenate([m0[None, :], ends[:-1]]).astype(z.dtype)
    out = local + powers[:, None] * starts[:, None, :]
    return out.reshape(n_blocks * _BLOCK, dim)[:n]


def ewma_charts(z: np.ndarray, states: list[np.ndarray], lams: list[float]) -> np.ndarray:
    """States of several exponentially weighted means of the same rows, ``(charts, n, dim)``.

    Chart ``c`` equals ``ewma(z, states[c], lams[c])`` bit for bit: the same block products
    (one matmul call for all charts, the full blocks read in place and only the last one
    padded), the same block-end recursion (``lfilter``'s ``y = x + decay * y_prev`` in
    float64, written out for all charts at once) and the same final sums.
    """
    n, dim = z.shape
    n_charts = len(lams)
    n_blocks = -(-n // _BLOCK)
    full = n // _BLOCK
    dtype = np.dtype(z.dtype).str
    tri = _stacked_operators(tuple(float(lam) for lam in lams), dtype)
    local = np.empty((n_charts, n_blocks, _BLOCK, dim), dtype=z.dtype)
    if full:
        np.matmul(tri, z[: full * _BLOCK].reshape(1, full, _BLOCK, dim), out=local[:, :full])
    if full < n_blocks:
        tail = np.zeros((1, 1, _BLOCK, dim), dtype=z.dtype)
        tail[0, 0, : n - full * _BLOCK] = z[full * _BLOCK :]
        np.matmul(tri, tail, out=local[:, full:])
    powers = _stacked_powers(tuple(float(lam) for lam in lams), dtype)
    decay = powers[:, :, -1, :].astype(np.float64)  # (charts, 1, 1): each block's decay
    starts = np.empty((n_charts, n_blocks, dim))
    carry = np.empty((n_charts, dim))
    for c, m0 in enumerate(states):
        starts[c, 0] = m0
        carry[c] = float(decay[c, 0, 0]) * m0  # lfilter's zi, in m0's own precision
    ends = local[:, :, -1, :]
    decay = decay[:, 0]
    for i in range(1, n_blocks):
        np.add(ends[:, i - 1], carry, out=starts[:, i])
        np.multiply(decay, starts[:, i], out=carry)
    local += powers * starts.astype(z.dtype)[:, :, None, :]
    return local.reshape(n_charts, n_blocks * _BLOCK, dim)[:, :n]


@lru_cache(maxsize=32)
def _stacked_powers(lams: tuple[float, ...], dtype: str) -> np.ndarray:
    """The start-state decays of ``_block_operators``, shape ``(charts, 1, _BLOCK, 1)``."""
    powers = [_block_operators(lam, 1.0 - lam, dtype)[1] for lam in lams]
    return np.stack(powers)[:, None, :, None]


@lru_cache(maxsize=32)
def _stacked_operators(lams: tuple[float, ...], dtype: str) -> np.ndarray:
    """``_block_operators`` of each weight, shape ``(charts, 1, _BLOCK, _BLOCK)``."""
    return np.stack([_block_operators(lam, 1.0 - lam, dtype)[0] for lam in lams])[:, None]


@lru_cache(maxsize=32)
def _block_operators(lam: float, decay: float, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Lower-triangular operator of one block, and the decay of the start state."""
    steps = np.arange(_BLOCK)
    lag = steps[:, None] - steps[None, :]
    tri = np.where(lag >= 0, lam * decay ** np.maximum(lag, 0), 0.0)
    return tri.astype(dtype), (decay ** (steps + 1)).astype(dtype)


def ewma_weights(n: int, lam: float) -> np.ndarray:
    """Weights ``w`` with ``m_{n-1} = (1-lam)^n m_0 + w @ z[:n]``."""
    return lam * (1.0 - lam) ** np.arange(n - 1, -1, -1)


def calibrate_threshold(
    z_hold: np.ndarray,
    statistic: Statistic,
    lam: float | np.ndarray,
    ert: int,
    n_simulated: int,
    rng: np.random.Generator,
    n_population: int,
    decay: np.ndarray | None = None,
) -> float:
    """Threshold whose simulated mean run length without drift is ``ert`` events.

    ``z_hold`` are centered held-out features; see :func:`simulated_states` for how runs
    are drawn from them. ``lam`` (and ``decay``, see :func:`ewma`) may give one value per
    column (several charts at once, calibrated jointly through one statistic over all of them).
    """
    runmax = simulate_running_max(
        z_hold, statistic, lam, n_simulated, rng, n_population, decay=decay
    )
    length = runmax.shape[1]

    def mean_run_length(h: float) -> tuple[float, int]:
        first = np.array([np.searchsorted(r, h, side="right") for r in runmax])
        alarms = int((first < length).sum())
        exposure = float(np.minimum(first + 1, length).sum())
        return (exposure / alarms if alarms else np.inf), alarms

    lo, hi = float(runmax[:, 0].min()), float(runmax[:, -1].max())
    if mean_run_length(lo)[0] >= ert:
        # A reference without spread simulates a flat zero statistic; float rounding of the
        # same constant rows must not count as drift.
        return max(lo, _MIN_THRESHOLD)
    h_target = _bisect(lambda h: mean_run_length(h)[0] >= ert, lo, hi)
    if mean_run_length(h_target)[1] >= _MIN_ALARMS:
        return h_target
    # Too few alarms near the target: fit log run length against h where alarms are plenty.
    h_ok = _bisect(lambda h: mean_run_length(h)[1] < _MIN_ALARMS, lo, hi)
    h_lo = _bisect(lambda h: mean_run_length(h)[0] >= max(2.0, length / 20.0), lo, h_ok)
    grid = np.linspace(h_lo + 0.5 * (h_ok - h_lo), h_ok, 12)
    arl = np.array([mean_run_length(h)[0] for h in grid])
    slope, icept = np.polyfit(grid, np.log(arl), 1)
    if not slope > 0:
        raise DetectorError(
            f"cannot calibrate ert={ert}: simulated run lengths do not grow with the threshold; "
            "pass a larger or more varied reference, or a smaller ert"
        )
    return float(max((np.log(ert) - icept) / slope, h_target))


def simulate_running_max(
    z_hold: np.ndarray,
    statistic: Statistic,
    lam: float | np.ndarray,
    n_simulated: int,
    rng: np.random.Generator,
    n_population: int,
    decay: np.ndarray | None = None,
) -> np.ndarray:
    """Running maximum of the statistic over bootstrap no-drift runs, shape ``(runs, length)``."""
    # the slowest column's effective window (a decay d has the window of gain 1 - d)
    slow_gain = float(np.min(lam) if decay is None else 1.0 - np.max(decay))
    window = 2.0 / slow_gain - 1.0
    length = int(min(max(_RUN_WINDOWS * window, 1000), max(n_simulated // _MIN_RUNS, 100)))
    n_runs = max(n_simulated // length, _MIN_RUNS)
    best = np.full(n_runs, -np.inf)
    runmax = np.empty((length, n_runs))
    start = 0
    for m in simulated_states(z_hold, lam, n_runs, length, rng, n_population, decay=decay):
        stats = statistic(m)
        np.maximum.accumulate(stats, axis=0, out=stats)
        np.maximum(stats, best[None, :], out=stats)
        best = stats[-1]
        runmax[start : start + len(stats)] = stats
        start += len(stats)
    return np.ascontiguousarray(runmax.T)


def simulated_states(
    z_hold: np.ndarray,
    lam: float | np.ndarray,
    n_runs: int,
    length: int,
    rng: np.random.Generator,
    n_population: int,
    decay: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """EWMA states of ``n_runs`` bootstrap runs from ``m = 0``, in time-major chunks.

    Chunks have shape ``(t, runs, dim)``. Double bootstrap: each run first draws its own
    "population" of ``n_population`` rows (with replacement) and then streams rows from it,
    so runs differ the way live data differ from a reference of that size: in their mean and
    in how often rare values occur. Time-major with a loop over steps: each step is one
    vector operation over all runs, several times faster than a filter along a
    non-contiguous axis.
    """
    dim = z_hold.shape[1]
    step = max(1, min(length, _CHUNK_ELEMENTS // (n_runs * dim)))
    n_pop = int(min(max(n_population, 1), _MAX_POPULATION))
    populations = rng.integers(0, len(z_hold), size=(n_runs, n_pop))
    runs = np.arange(n_runs)
    state = np.zeros((n_runs, dim), dtype=z_hold.dtype)
    scaled = z_hold * np.asarray(lam, dtype=z_hold.dtype)
    decay = np.asarray(1.0 - np.asarray(lam) if decay is None else decay, dtype=z_hold.dtype)
    for begin in range(0, length, step):
        picks = rng.integers(0, n_pop, size=(min(step, length - begin), n_runs))
        chunk = scaled[populations[runs, picks]]
        for row in chunk:
            state *= decay
            state += row
            row[:] = state
        yield chunk


def _bisect(pred: Callable[[float], bool], lo: float, hi: float, iters: int = 60) -> float:
    """Smallest h in [lo, hi] (to tolerance) with ``pred(h)`` true, pred monotone in h."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi

"""Label-free reuse of a recurring concept: redeploy a past model before any label arrives.

When a drift alarm's window (the archived rows after the episode's first alarm, features
only: rows before it may still be of the old concept, so the change point estimate is not
used here) looks like the training data of a model deployed before, that model is redeployed at
once; the episode stays open, and once post-change labels arrive the labelled gate trains a
challenger against the reused model (which confirms or replaces it).

**The bound is calibrated, not tuned.** "Looks like" is a two-sample test of the window
``W`` (``m`` rows) against a candidate data version ``C``: the statistic is the unbiased
squared MMD with a Gaussian kernel (features standardized robustly and bandwidth set by the median
heuristic, both from ``C`` alone). Its null distribution is drawn from ``C`` itself: ``B``
random splits of a sample of ``C`` into ``m`` rows and the rest give ``B`` values of the same
statistic between two samples of one concept. ``W`` *matches* ``C`` when its p-value is above
``alpha``: a true recurrence (``W`` drawn from ``C``'s concept) is missed at most at rate
``alpha`` and then falls back to the labelled path, which is what happens without reuse.

Two rules keep a match from being false or useless:

* the window must *not* be covered by the current champion's own training data
  (:func:`coverage_test`, at the same ``alpha``): the mean distance of window rows to their
  nearest training row, against the same statistic for held-out training rows. A champion
  trained on a mixture that includes the window's concept is competent there and stays; on a
  false alarm (no change) the window is drawn from the champion's concept, so reuse fires
  only if that test rejects, which happens at most at rate ``alpha``;
* on a new concept, a match needs the new rows to be indistinguishable from a past concept at
  the window's size — then the past model is the best guess there is without labels, and the
  gate replaces it once labels show otherwise. (No input test can see a change of the
  labelling rule alone; that is the gate's job.)

Among matching candidates the one with the highest p-value wins; the current champion's
model is never "reused".

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> past = rng.normal(size=(800, 3))
>>> match_test(rng.normal(size=(150, 3)), past, alpha=0.05).matches
True
>>> match_test(rng.normal(0.5, 1.0, size=(150, 3)), past, alpha=0.05).matches
False
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from driftline.detectors._kernels import sqdist, weighted_median_distance

__all__ = ["MatchTest", "ReuseDecision", "candidates", "coverage_test", "decide", "match_test"]

PERMUTATIONS = 200
"""Null draws per test: the p-value's resolution is ``1 / (PERMUTATIONS + 1)``."""
CANDIDATE_ROWS = 800
"""Rows of a candidate data version used at most (a seeded sample): bounds the cost."""
MAX_CANDIDATES = 8
"""Past deployed models tested at most (the most recently deployed first)."""
_EPS = 1e-12
_CLIP = 1e6
"""Standardized values are held within this many spreads (as the detectors do)."""


@dataclass(frozen=True)
class MatchTest:
    """The calibrated test of a window against one past data version.

    ``statistic`` is the window's unbiased MMD² to the data version, ``threshold`` the
    ``1 - alpha`` quantile of the same statistic between two samples of the data version
    itself, ``p_value`` the share of those null draws at least as large as ``statistic``.
    """

    data_version_id: str
    model_version_id: str | None
    statistic: float
    threshold: float
    p_value: float
    alpha: float
    window_rows: int
    candidate_rows: int

    @property
    def matches(self) -> bool:
        """Whether the window is consistent with this data version (drawn from it, for
        :func:`match_test`; inside its support, for :func:`coverage_test`)."""
        return self.p_value > self.alpha

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record (for the training record)."""
        return {**asdict(self), "matches": self.matches}


@dataclass(frozen=True)
class ReuseDecision:
    """Whether to redeploy a past model for a drift window, which one, and why."""

    reuse: bool
    reason: str
    model_version_id: str | None = None
    data_version_id: str | None = None
    champion_test: MatchTest | None = None
    tests: tuple[MatchTest, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record (for the training record)."""
        return {
            "reuse": self.reuse,
            "reason": self.reason,
            "model_version_id": self.model_version_id,
            "data_version_id": self.data_version_id,
            "champion_test": None if self.champion_test is None else self.champion_test.to_dict(),
            "tests": [t.to_dict() for t in self.tests],
        }


def match_test(
    window: np.ndarray,
    candidate: np.ndarray,
    *,
    alpha: float,
    data_version_id: str = "",
    model_version_id: str | None = None,
    permutations: int = PERMUTATIONS,
    max_rows: int = CANDIDATE_ROWS,
    seed: int = 0,
) -> MatchTest:
    """Test whether ``window`` rows are drawn from the concept of ``candidate`` rows.

    ``window`` keeps at most half the candidate sample's rows (its newest), so that the null
    splits have the window's size on one side and at least as many rows on the other.
    """
    rng = np.random.default_rng(seed)
    w, c = _prepare(window, candidate, max_rows, rng)
    s, m = len(c), len(w)
    d2_cc = sqdist(c, c)
    bandwidth = weighted_median_distance(c, np.full(s, 1.0 / s), d2_cc)
    gamma = 1.0 / (2.0 * bandwidth**2)
    k_cc = np.exp(-gamma * d2_cc)
    np.fill_diagonal(k_cc, 0.0)
    k_wc = np.exp(-gamma * sqdist(w, c))
    k_ww = np.exp(-gamma * sqdist(w, w))
    np.fill_diagonal(k_ww, 0.0)
    n = s - m
    # The observed statistic: the window against a random n-row part of the candidate.
    rest = np.zeros(s)
    rest[rng.choice(s, n, replace=False)] = 1.0
    observed = _mmd2u(
        float(k_ww.sum()), m, float(rest @ k_cc @ rest), n, float((k_wc @ rest).sum())
    )
    # The null: the candidate split into m rows and n rows, permutations times at once.
    u = np.zeros((permutations, s))
    for b in range(permutations):
        u[b, rng.choice(s, m, replace=False)] = 1.0
    v = 1.0 - u
    ku = u @ k_cc
    null = _mmd2u(
        np.einsum("ij,ij->i", ku, u),
        m,
        np.einsum("ij,ij->i", v @ k_cc, v),
        n,
        np.einsum("ij,ij->i", ku, v),
    )
    p_value = (1.0 + float((null >= observed).sum())) / (1.0 + permutations)
    return MatchTest(
        data_version_id=data_version_id,
        model_version_id=model_version_id,
        statistic=float(observed),
        threshold=float(np.quantile(null, 1.0 - alpha)),
        p_value=p_value,
        alpha=alpha,
        window_rows=m,
        candidate_rows=s,
    )


def coverage_test(
    window: np.ndarray,
    data: np.ndarray,
    *,
    alpha: float,
    data_version_id: str = "",
    model_version_id: str | None = None,
    permutations: int = PERMUTATIONS,
    max_rows: int = CANDIDATE_ROWS,
    seed: int = 0,
) -> MatchTest:
    """Test whether ``window`` rows lie inside the support of ``data`` (matches: covered).

    The statistic is the window rows' mean distance to their nearest ``data`` row (a sample
    of ``n`` of them). Its null is a permutation test: the window and that sample pooled,
    ``m`` rows drawn as the "window" and the rest as the reference, ``permutations`` times
    (exact when the window is exchangeable with the data; conditioning on the data sample
    alone would make it too narrow). A window from a part of ``data`` (one concept of a
    mixture) is covered though it does not match the whole in distribution.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> mixture = np.vstack([rng.normal(size=(400, 3)), rng.normal(4.0, 1.0, size=(400, 3))])
    >>> coverage_test(rng.normal(size=(150, 3)), mixture, alpha=0.05).matches
    True
    >>> coverage_test(rng.normal(-4.0, 1.0, size=(150, 3)), mixture, alpha=0.05).matches
    False
    """
    rng = np.random.default_rng(seed)
    w, c = _prepare(window, data, max_rows, rng)
    s, m = len(c), len(w)
    pooled = np.vstack([w, c[np.sort(rng.choice(s, s - m, replace=False))]])
    dist = np.sqrt(sqdist(pooled, pooled))
    np.fill_diagonal(dist, np.inf)
    observed = float(dist[:m, m:].min(axis=1).mean())
    null = np.empty(permutations)
    for b in range(permutations):
        order = rng.permutation(s)
        null[b] = dist[np.ix_(order[:m], order[m:])].min(axis=1).mean()
    p_value = (1.0 + float((null >= observed).sum())) / (1.0 + permutations)
    return MatchTest(
        data_version_id=data_version_id,
        model_version_id=model_version_id,
        statistic=observed,
        threshold=float(np.quantile(null, 1.0 - alpha)),
        p_value=p_value,
        alpha=alpha,
        window_rows=m,
        candidate_rows=s,
    )


def _prepare(
    window: np.ndarray, candidate: np.ndarray, max_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The window's newest rows (at most half the candidate sample) and a seeded sample of
    the candidate, both standardized by the candidate's median and spread (see below)."""
    w = np.asarray(window, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    if w.ndim != 2 or c.ndim != 2 or w.shape[1] != c.shape[1]:
        raise ValueError(f"window {w.shape} and candidate {c.shape} need the same columns")
    if len(c) > max_rows:
        c = c[np.sort(rng.choice(len(c), max_rows, replace=False))]
    m = min(len(w), len(c) // 2)
    if m < 2:
        raise ValueError(f"too few rows to test: window {len(w)}, candidate {len(c)}")
    w = w[len(w) - m :]
    # Robust to a few extreme rows (a glitch or a planted 1e12 in a past data version made
    # its spread so wide that every window standardized onto its bulk: p = 1, a "match" of
    # any concept): median and MAD (the standard deviation where the MAD is 0, e.g. a
    # mostly-constant feature), values clipped to `_CLIP` spreads so squares stay finite.
    center = np.median(c, axis=0)
    mad = 1.4826 * np.median(np.abs(c - center), axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        std = c.std(axis=0)
    scale = np.where(mad > _EPS, mad, np.where(np.isfinite(std) & (std > _EPS), std, 1.0))
    return (
        np.clip((w - center) / scale, -_CLIP, _CLIP),
        np.clip((c - center) / scale, -_CLIP, _CLIP),
    )


def _mmd2u(kxx: Any, m: int, kyy: Any, n: int, kxy: Any) -> Any:
    """Unbiased MMD² from off-diagonal kernel sums within and the sum across two samples."""
    return kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - 2.0 * kxy / (m * n)


def candidates(store: Any, pipeline: str, alias: str, champion: Any) -> list[Any]:
    """Model versions deployed under ``alias`` before, newest deployment first, one per data
    version, without the champion's model or data version (at most ``MAX_CANDIDATES``)."""
    seen = {champion.id, champion.data_version_id}
    out = []
    for deployment in reversed(store.history(pipeline, alias)):
        if deployment.model_version_id in seen:
            continue
        mv = store.model_version(deployment.model_version_id)
        seen.add(mv.id)
        if mv.data_version_id is None or mv.data_version_id in seen:
            continue
        seen.add(mv.data_version_id)
        out.append(mv)
        if len(out) == MAX_CANDIDATES:
            break
    return out


def decide(
    window: np.ndarray,
    champion_test: MatchTest,
    tests: list[MatchTest],
) -> ReuseDecision:
    """Pick the past model to redeploy from the tests (see the module docstring)."""
    if champion_test.matches:
        return ReuseDecision(
            False,
            f"no reuse: the {len(window)} rows after the alarm are covered by the "
            f"champion's own training data (p={champion_test.p_value:.3f} > "
            f"alpha={champion_test.alpha})",
            champion_test=champion_test,
            tests=tuple(tests),
        )
    matched = [t for t in tests if t.matches]
    if not matched:
        best = max(tests, key=lambda t: t.p_value, default=None)
        closest = (
            ""
            if best is None
            else f"; closest {best.data_version_id} p={best.p_value:.3f} <= alpha={best.alpha}"
        )
        return ReuseDecision(
            False,
            f"no reuse: none of {len(tests)} past deployed data versions matches the "
            f"{len(window)} rows after the alarm{closest}",
            champion_test=champion_test,
            tests=tuple(tests),
        )
    best = max(matched, key=lambda t: t.p_value)
    return ReuseDecision(
        True,
        f"reuse: the {best.window_rows} rows after the alarm match data version "
        f"{best.data_version_id} (MMD² {best.statistic:.3g} <= calibrated bound "
        f"{best.threshold:.3g}, p={best.p_value:.3f} > alpha={best.alpha}) and lie outside "
        f"the champion's (p={champion_test.p_value:.3f}); redeploying its model "
        f"{best.model_version_id} before any label",
        model_version_id=best.model_version_id,
        data_version_id=best.data_version_id,
        champion_test=champion_test,
        tests=tuple(tests),
    )

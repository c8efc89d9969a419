"""Fixtures for detector tests."""

from __future__ import annotations

import pytest

from driftline.detectors import DriftDetector

from ._cases import CASES, Case


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


_FITTED: dict[tuple[str, int], DriftDetector] = {}


@pytest.fixture
def fitted(case: Case) -> DriftDetector:
    """A detector fitted once per case (ert=100_000: false alarms are rare enough to ignore)."""
    key = (case.name, 100_000)
    if key not in _FITTED:
        _FITTED[key] = case.make(ert=100_000).fit(case.reference)
    return DriftDetector.from_bytes(_FITTED[key].to_bytes())

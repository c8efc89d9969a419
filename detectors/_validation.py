"""Input checks shared by the sketches and detectors (one place for every message)."""

from __future__ import annotations

import numpy as np

from driftline.detectors.exceptions import InvalidInputError


def check_positive_int(name: str, value: object, meaning: str = "") -> int:
    """Return ``value`` as an int >= 1, or raise naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        hint = f" ({meaning})" if meaning else ""
        raise InvalidInputError(f"{name} must be an integer >= 1{hint}, got {value!r}")
    return int(value)


def check_ert(value: object) -> int:
    """``ert`` is the expected number of events between false alarms."""
    return check_positive_int("ert", value, "expected events between false alarms")


def as_matrix(
    x: object, name: str, n_features: int | None = None, allow_row: bool = True
) -> np.ndarray:
    """Return ``x`` as a finite float64 ``(n, d)`` array; a 1-D row becomes ``(1, d)``.

    ``n_features`` (when known) must match ``d``.
    """
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{name} must be a numeric array of shape (n, d), got {type(x).__name__}: {exc}"
        ) from exc
    if arr.ndim == 1 and allow_row:
        if n_features is not None and arr.shape[0] != n_features:
            raise InvalidInputError(
                f"{name} is a single row of length {arr.shape[0]} but the detector was fitted "
                f"on {n_features} features; pass rows of length {n_features}"
            )
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InvalidInputError(
            f"{name} must be 2-D (n rows, d features), got shape {arr.shape}; "
            "reshape it, e.g. x.reshape(len(x), -1)"
        )
    if arr.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty (shape {arr.shape}); pass at least one row")
    if arr.shape[1] == 0:
        raise InvalidInputError(f"{name} has no features (shape {arr.shape})")
    if n_features is not None and arr.shape[1] != n_features:
        raise InvalidInputError(
            f"{name} has {arr.shape[1]} features but {n_features} were expected "
            "(the reference's width); pass rows with the same columns as the reference"
        )
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InvalidInputError(
            f"{name} contains NaN or inf (first at row {bad[0]}, column {bad[1]}: "
            f"{arr[bad[0], bad[1]]}); impute or drop such rows before passing them"
        )
    return arr


def check_feature_names(names: object, n_features: int) -> tuple[str, ...]:
    """Return names as a tuple of ``n_features`` strings ("x0", "x1", ... when None)."""
    if names is None:
        return tuple(f"x{i}" for i in range(n_features))
    if isinstance(names, str):
        raise InvalidInputError(
            f"feature_names must be a sequence of strings, got the string {names!r}"
        )
    out = tuple(str(n) for n in names)  # type: ignore[attr-defined]
    if len(out) != n_features:
        raise InvalidInputError(
            f"feature_names has {len(out)} names but the reference has {n_features} columns; "
            "pass one name per column"
        )
    return out

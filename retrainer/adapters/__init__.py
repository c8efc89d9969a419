"""Model adapters: one protocol, a registry by name, and dotted-path plugins (config only).

    torch-mlp   TorchMLP        the default: MLP classifier/regressor (safetensors)
    sklearn     SklearnAdapter  any scikit-learn estimator (skops)
    river       RiverAdapter    online river models (skops)
    pkg.mod:Cls                 your own class implementing ModelAdapter

>>> type(make_adapter("torch-mlp")).__name__
'TorchMLP'
>>> type(make_adapter("driftline.retrainer.adapters.sklearn_adapter:SklearnAdapter")).__name__
'SklearnAdapter'
"""

from __future__ import annotations

import importlib
from typing import Any

from driftline.retrainer.adapters.base import Budget, FitReport, ModelAdapter, metrics
from driftline.retrainer.exceptions import UnknownAdapterError

__all__ = [
    "Budget",
    "FitReport",
    "ModelAdapter",
    "adapter_class",
    "load_adapter",
    "make_adapter",
    "metrics",
    "register_adapter",
]

# Imported on first use: torch costs seconds, and most processes need one framework only.
_BUILTIN = {
    "torch-mlp": "driftline.retrainer.adapters.torch_mlp:TorchMLP",
    "sklearn": "driftline.retrainer.adapters.sklearn_adapter:SklearnAdapter",
    "river": "driftline.retrainer.adapters.river_adapter:RiverAdapter",
}
_REGISTRY: dict[str, type[Any]] = {}


def register_adapter(name: str, cls: type[Any]) -> None:
    """Make ``cls`` available under ``name`` (e.g. in ``model.adapter`` of the config)."""
    if not isinstance(cls, type) or not all(
        hasattr(cls, m) for m in ("build", "fit", "predict", "evaluate", "save", "load")
    ):
        raise UnknownAdapterError(
            f"{cls!r} does not implement ModelAdapter (build, fit, predict, evaluate, save, "
            "load); see driftline.retrainer.adapters.base.ModelAdapter"
        )
    _REGISTRY[name] = cls


def adapter_class(name: str) -> type[Any]:
    """The adapter registered as ``name``: a built-in or one passed to `register_adapter`.

    Never imports a module named by ``name``: a model version's ``framework`` comes off the
    wire, and importing what it names would let its writer pick code.

    >>> adapter_class("os:system")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    driftline.retrainer.exceptions.UnknownAdapterError: unknown model adapter 'os:system'; ...
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name not in _BUILTIN:
        raise UnknownAdapterError(
            f"unknown model adapter {name!r}; registered: {sorted({*_BUILTIN, *_REGISTRY})}; "
            "register others with register_adapter(name, cls)"
        )
    return _import_and_register(name, _BUILTIN[name])


def _import_and_register(name: str, path: str) -> type[Any]:
    module_name, sep, attr = path.partition(":")
    if not sep or not attr:
        raise UnknownAdapterError(
            f"unknown model adapter {name!r}; use one of {sorted({*_BUILTIN, *_REGISTRY})} "
            "or a dotted path 'pkg.module:Class'"
        )
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownAdapterError(f"cannot import model adapter {name!r}: {exc}") from None
    register_adapter(name, cls)
    return cls


def make_adapter(name: str) -> Any:
    """An empty adapter of ``name`` (call ``build`` next). ``name`` comes from the operator's
    config, so besides a registered name it may be a dotted path ``pkg.mod:Class``, which is
    imported and registered under that name."""
    if name in _REGISTRY or name in _BUILTIN:
        return adapter_class(name)()
    return _import_and_register(name, name)()


def load_adapter(framework: str, data: bytes) -> Any:
    """A trained adapter from a model version's ``framework`` and artifact bytes; only
    registered adapters (see `adapter_class`) are used."""
    return adapter_class(framework).load(data)

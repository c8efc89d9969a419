"""The default model: a torch MLP classifier or regressor on the feature vector.

Artifacts are one safetensors file: the weights plus the parameters, classes and scalers as
JSON in the safetensors metadata, so loading never unpickles anything.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from driftline.retrainer.adapters.base import (
    AdapterBase,
    Budget,
    Deadline,
    FitReport,
    check_xy,
    metrics,
)
from driftline.retrainer.exceptions import (
    AdapterError,
    ArtifactFormatError,
    NotBuiltError,
    TrainingDivergedError,
    WarmStartError,
)

__all__ = ["TorchMLP"]

# Largest architecture `TorchMLP.load` accepts from an artifact.
MAX_LAYERS = 64
MAX_WIDTH = 65_536
MAX_PARAMETERS = 50_000_000

_DEFAULTS: dict[str, Any] = {
    "hidden": [64, 64],
    "lr": 3e-3,
    "batch_size": None,
    "weight_decay": 0.0,
    "dropout": 0.0,
    "seed": 0,
    "finetune_lr_factor": 1.0,
}


class TorchMLP(AdapterBase):
    """An MLP with standardized inputs; classifier when built with classes, else regressor.

    Warm start copies the parent's hidden layers and input scaler, and maps the parent's
    output rows *by class label*, so it also works when the class set grows.

    Params: ``hidden`` layer sizes (default ``[64, 64]``), ``lr`` (Adam, ``3e-3``),
    ``batch_size`` (default: about 64 steps per epoch, a power of two in [32, 1024], so
    small data still gets many updates per epoch and large data few, cheap ones),
    ``weight_decay``, ``dropout``, ``seed``, ``finetune_lr_factor`` (warm starts train with
    ``lr`` times this; default 1.0, lower it to fine-tune more gently).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(400, 3)).astype("float32"); y = (X[:, 0] > 0).astype(int)
        >>> m = TorchMLP()
        >>> m.build({"hidden": [16], "batch_size": 32}, n_features=3, classes=[0, 1])
        >>> report = m.fit(X, y, budget=Budget(max_epochs=20, patience=None))
        >>> m.evaluate(X, y)["accuracy"] > 0.9
        True
        >>> TorchMLP.load(m.save()).predict(X[:5]).tolist() == m.predict(X[:5]).tolist()
        True
    """

    framework = "torch-mlp"

    def __init__(self) -> None:
        super().__init__()
        self._net: nn.Sequential | None = None
        self._x_mean = np.zeros(0, dtype=np.float32)
        self._x_std = np.ones(0, dtype=np.float32)
        self._y_mean = 0.0
        self._y_std = 1.0
        self._scaled = False

    # ------------------------------------------------------------------ description
    def build(self, params: dict[str, Any], n_features: int, classes: Sequence[Any] | None) -> None:
        p = self._merge_params(params, _DEFAULTS)
        p["hidden"] = [int(h) for h in p["hidden"]]
        if any(h < 1 for h in p["hidden"]):
            raise AdapterError(f"hidden layer sizes must be >= 1, got {p['hidden']}")
        if n_features < 1:
            raise AdapterError(f"n_features must be >= 1, got {n_features}")
        if classes is not None and len(classes) < 2:
            raise AdapterError(
                f"a classifier needs at least 2 classes, got {list(classes)}; "
                "collect labels of more than one class before training"
            )
        self._params = p
        self._n_features = int(n_features)
        self._classes = None if classes is None else [_plain(c) for c in classes]
        n_out = 1 if classes is None else len(classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(p["seed"]))
            layers: list[nn.Module] = []
            width = self._n_features
            for h in p["hidden"]:
                layers += [nn.Linear(width, h), nn.ReLU()]
                if p["dropout"]:
                    layers.append(nn.Dropout(float(p["dropout"])))
                width = h
            layers.append(nn.Linear(width, n_out))
            self._net = nn.Sequential(*layers)
        self._x_mean = np.zeros(self._n_features, dtype=np.float32)
        self._x_std = np.ones(self._n_features, dtype=np.float32)
        self._y_mean, self._y_std, self._scaled = 0.0, 1.0, False

    # ------------------------------------------------------------------ training
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        warm_start: Any = None,
        budget: Budget | None = None,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> FitReport:
        net = self._require()
        budget = budget or Budget()
        deadline = Deadline(budget.timeout_s)
        if budget.threads:
            torch.set_num_threads(budget.threads)
        x = check_xy(X, y, self._n_features)
        note = ""
        if warm_start is not None:
            self._copy_from(warm_start)
        if not self._scaled:
            self._fit_scaler(x, y)
        xt = torch.from_numpy(self._scale(x))
        yt = self._target(y)
        val = None
        if validation is not None and len(validation[1]) > 0:
            val = (np.asarray(validation[0]), np.asarray(validation[1]))
        metric = budget.metric or ("accuracy" if self._classes is not None else "mse")

        gen = torch.Generator().manual_seed(int(self._params["seed"]))
        lr = float(self._params["lr"])
        if warm_start is not None:
            # Full-size steps from a fresh optimizer can throw away some of what the parent
            # learned; a factor below 1 fine-tunes more gently (slower to adapt, though).
            lr *= float(self._params["finetune_lr_factor"])
        opt = torch.optim.Adam(
            net.parameters(),
            lr=lr,
            weight_decay=float(self._params["weight_decay"]),
        )
        loss_fn: nn.Module = nn.CrossEntropyLoss() if self._classes is not None else nn.MSELoss()
        n = len(xt)
        bs = _batch_size(self._params["batch_size"], n)
        start_metric = self._val_metric(val, metric)
        history: list[float] = []
        best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
        if val is not None and warm_start is not None:
            # The parent itself is a candidate: if fine-tuning never beats it on validation
            # loss, patience stops the training and the parent's weights are kept.
            best_loss = self._loss_on(val, loss_fn)
            best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
        stopped, loss, epochs = "epochs", math.nan, 0
        if _reached(start_metric, budget.target, metric):
            stopped = "target"
        while stopped != "target" and epochs < budget.max_epochs:
            net.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, bs):
                idx = perm[i : i + bs]
                opt.zero_grad(set_to_none=True)
                batch_loss = loss_fn(net(xt[idx]), yt[idx])
                batch_loss.backward()
                opt.step()
                total += float(batch_loss.detach()) * len(idx)
                deadline.check()
            epochs += 1
            loss = total / n
            if not math.isfinite(loss):
                raise TrainingDivergedError(
                    f"training loss became {loss} at epoch {epochs}; lower model.params.lr "
                    f"(now {self._params['lr']}) or check the features for extreme values"
                )
            if val is not None:
                history.append(self._val_metric(val, metric) or math.nan)
                v_loss = self._loss_on(val, loss_fn)
                if v_loss < best_loss - 1e-6:
                    best_loss, best_epoch, stale = v_loss, epochs, 0
                    best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
                else:
                    stale += 1
                if _reached(history[-1], budget.target, metric):
                    stopped = "target"
                    best_state = None  # the target-reaching weights are the ones to keep
                    break
                if budget.patience is not None and stale >= budget.patience:
                    stopped = "patience"
                    break
            if budget.max_seconds is not None and deadline.elapsed > budget.max_seconds:
                stopped = "max_seconds"
                break
        if best_state is not None and best_epoch != epochs:
            net.load_state_dict(best_state)
            note = f"kept epoch {best_epoch}, the best on validation loss"
        return FitReport(
            epochs=epochs,
            loss=float(loss),
            seconds=deadline.elapsed,
            stopped=stopped,
            warm_started=warm_start is not None,
            note=note,
            start_metric=start_metric,
            history=tuple(history),
        )

    def _copy_from(self, parent: Any) -> None:
        """Take the parent's scaler and weights; output rows follow the class labels."""
        net = self._require()
        if not isinstance(parent, TorchMLP) or parent._net is None:
            raise WarmStartError(
                f"a torch-mlp can warm-start only from a trained torch-mlp, got "
                f"{type(parent).__name__}"
            )
        if parent._n_features != self._n_features:
            raise WarmStartError(
                f"parent model takes {parent._n_features} features, this one {self._n_features}"
                "; warm-start only between models of the same pipeline columns"
            )
        if parent._params["hidden"] != self._params["hidden"]:
            raise WarmStartError(
                f"parent hidden layers {parent._params['hidden']} differ from "
                f"{self._params['hidden']}; build the child with the parent's params"
            )
        if (parent._classes is None) != (self._classes is None):
            raise WarmStartError("cannot warm-start a classifier from a regressor or back")
        src = parent._net.state_dict()
        dst = net.state_dict()
        last = max(int(k.split(".")[0]) for k in dst)
        for key, value in src.items():
            if int(key.split(".")[0]) != last:
                dst[key] = value.clone()
        if self._classes is None or parent._classes is None:
            dst[f"{last}.weight"] = src[f"{last}.weight"].clone()
            dst[f"{last}.bias"] = src[f"{last}.bias"].clone()
        else:
            rows = {c: i for i, c in enumerate(parent._classes)}
            for j, c in enumerate(self._classes):
                if c in rows:
                    dst[f"{last}.weight"][j] = src[f"{last}.weight"][rows[c]]
                    dst[f"{last}.bias"][j] = src[f"{last}.bias"][rows[c]]
        net.load_state_dict(dst)
        self._x_mean, self._x_std = parent._x_mean.copy(), parent._x_std.copy()
        self._y_mean, self._y_std, self._scaled = parent._y_mean, parent._y_std, True

    def _fit_scaler(self, x: np.ndarray, y: np.ndarray) -> None:
        self._x_mean = x.mean(axis=0).astype(np.float32)
        std = x.std(axis=0).astype(np.float32)
        self._x_std = np.where(std > 1e-8, std, 1.0).astype(np.float32)
        if self._classes is None:
            yy = np.asarray(y, dtype=np.float64)
            self._y_mean = float(yy.mean())
            self._y_std = float(yy.std()) or 1.0
        self._scaled = True

    def _scale(self, x: np.ndarray) -> np.ndarray:
        return ((x - self._x_mean) / self._x_std).astype(np.float32)

    def _target(self, y: np.ndarray) -> torch.Tensor:
        if self._classes is None:
            yy = (np.asarray(y, dtype=np.float64) - self._y_mean) / self._y_std
            return torch.from_numpy(yy.astype(np.float32)).reshape(-1, 1)
        index = {c: i for i, c in enumerate(self._classes)}
        try:
            codes = np.fromiter((index[_plain(v)] for v in y), dtype=np.int64, count=len(y))
        except KeyError as exc:
            raise AdapterError(
                f"label {exc.args[0]!r} is not one of the model's classes {self._classes}; "
                "build the model with every class of the training labels"
            ) from None
        return torch.from_numpy(codes)

    def _val_metric(self, val: tuple[np.ndarray, np.ndarray] | None, metric: str) -> float | None:
        if val is None:
            return None
        return self.evaluate(val[0], val[1]).get(metric)

    def _loss_on(self, val: tuple[np.ndarray, np.ndarray], loss_fn: nn.Module) -> float:
        net = self._require()
        net.eval()
        with torch.no_grad():
            x = torch.from_numpy(self._scale(check_xy(val[0], val[1], self._n_features)))
            if self._classes is not None:
                known = {_plain(c) for c in self._classes}
                keep = np.fromiter((_plain(v) in known for v in val[1]), dtype=bool)
                if not keep.any():
                    return math.inf
                return float(loss_fn(net(x[torch.from_numpy(keep)]), self._target(val[1][keep])))
            return float(loss_fn(net(x), self._target(val[1])))

    # ------------------------------------------------------------------ inference
    def _raw(self, X: np.ndarray) -> torch.Tensor:
        net = self._require()
        net.eval()
        with torch.no_grad():
            return net(torch.from_numpy(self._scale(check_xy(X, None, self._n_features))))

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self._raw(X)
        if self._classes is None:
            return out.numpy().ravel().astype(np.float64) * self._y_std + self._y_mean
        return np.asarray(self._classes, dtype=object)[out.argmax(dim=1).numpy()].astype(
            type(self._classes[0])
        )

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self._classes is None:
            raise AdapterError("predict_proba needs a classifier; this torch-mlp is a regressor")
        return torch.softmax(self._raw(X), dim=1).numpy().astype(np.float64)

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return metrics(self._classes, np.asarray(y), self.predict(X))

    # ------------------------------------------------------------------ persistence
    def save(self) -> bytes:
        net = self._require()
        tensors = {f"net.{k}": v.contiguous() for k, v in net.state_dict().items()}
        tensors["x_mean"] = torch.from_numpy(self._x_mean.copy())
        tensors["x_std"] = torch.from_numpy(self._x_std.copy())
        meta = {
            "adapter": self.framework,
            "params": self._params,
            "classes": self._classes,
            "n_features": self._n_features,
            "y_mean": self._y_mean,
            "y_std": self._y_std,
        }
        return bytes(st_save(tensors, metadata={"driftline": json.dumps(meta)}))

    @classmethod
    def load(cls, data: bytes) -> Self:
        meta = _read_metadata(data)
        _check_architecture(meta)
        out = cls()
        out.build(meta["params"], meta["n_features"], meta["classes"])
        tensors = st_load(bytes(data))
        assert out._net is not None
        out._net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        out._x_mean = tensors["x_mean"].numpy().copy()
        out._x_std = tensors["x_std"].numpy().copy()
        out._y_mean, out._y_std, out._scaled = meta["y_mean"], meta["y_std"], True
        return out

    def _require(self) -> nn.Sequential:
        if self._net is None:
            raise NotBuiltError("this torch-mlp has no model yet; call build(...) or load(...)")
        return self._net


def _read_metadata(data: bytes) -> dict[str, Any]:
    """The JSON we put into the safetensors header (8-byte length, then JSON)."""
    try:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(bytes(data[8 : 8 + n]))
        meta = json.loads(header["__metadata__"]["driftline"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactFormatError(
            f"these {len(data)} bytes are not a torch-mlp artifact ({exc}); load them with the "
            "adapter named in the model version's framework"
        ) from None
    if meta.get("adapter") != TorchMLP.framework:
        raise ArtifactFormatError(
            f"artifact was written by {meta.get('adapter')!r}, not torch-mlp; "
            "load it with that adapter"
        )
    return dict(meta)


def _check_architecture(meta: dict[str, Any]) -> None:
    """Refuse an architecture beyond the limits before `build` allocates it: the artifact's
    writer must not choose how much memory loading takes."""
    try:
        hidden = [int(h) for h in meta["params"]["hidden"]]
        widths = [int(meta["n_features"]), *hidden]
        classes = meta["classes"]
        widths.append(1 if classes is None else len(classes))
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactFormatError(f"torch-mlp artifact has no valid architecture ({exc})") from None
    n_params = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    if (
        len(widths) - 1 > MAX_LAYERS
        or max(widths) > MAX_WIDTH
        or min(widths) < 1
        or n_params > MAX_PARAMETERS
    ):
        raise ArtifactFormatError(
            f"torch-mlp artifact declares {len(widths) - 1} layers of widths {widths[:8]}"
            f"{'...' if len(widths) > 8 else ''} ({n_params} parameters); limits are "
            f"{MAX_LAYERS} layers, {MAX_WIDTH} units per layer, {MAX_PARAMETERS} parameters"
        )


def _batch_size(configured: int | None, n: int) -> int:
    if configured is not None:
        return int(configured)
    return int(np.clip(2 ** round(math.log2(max(n, 1) / 64)), 32, 1024))


def _reached(value: float | None, target: float | None, metric: str) -> bool:
    if value is None or target is None:
        return False
    from driftline.config.pipeline import HIGHER_IS_BETTER

    return value >= target if HIGHER_IS_BETTER[metric] else value <= target


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so class labels compare and serialize alike."""
    return value.item() if isinstance(value, np.generic) else value

"""Artifacts and framework names written by an attacker: each is refused and nothing runs."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.testing._private.utils as np_testing_utils
import pytest
import river.utils.math
import scipy.optimize
import sklearn.utils._testing
import skops.io as sio
from safetensors.numpy import save as st_save

from driftline.retrainer.adapters import adapter_class, load_adapter, make_adapter
from driftline.retrainer.adapters.torch_mlp import TorchMLP
from driftline.retrainer.exceptions import ArtifactFormatError, UnknownAdapterError


def _payloads(marker: Path) -> dict[str, Callable[[], Any]]:
    """Callables that, once called, create ``marker`` (or at least run foreign code)."""
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "numpy runstring": functools.partial(np_testing_utils.runstring, code, {}),
        "builtins.exec": functools.partial(exec, code),
        "builtins.eval": functools.partial(eval, f"exec({code!r})"),
        "os.system": functools.partial(os.system, f"touch {marker}"),
        "scipy function": functools.partial(
            scipy.optimize.minimize_scalar, lambda _: exec(code) or 0.0
        ),
        "sklearn function": functools.partial(
            sklearn.utils._testing.assert_run_python_script_without_output, code
        ),
        "river function": functools.partial(river.utils.math.dot, {}, {}),
    }


@pytest.mark.parametrize("framework,slot", [("sklearn", "estimator"), ("river", "model")])
@pytest.mark.parametrize("payload", list(_payloads(Path("x"))))
def test_skops_artifact_with_a_callable_is_refused_and_nothing_runs(
    tmp_path: Path, framework: str, slot: str, payload: str
) -> None:
    marker = tmp_path / "pwned"
    evil = _payloads(marker)[payload]
    data = sio.dumps({"meta": {"adapter": framework}, slot: evil, "scaler": None})
    with pytest.raises(ArtifactFormatError, match="outside"):
        load_adapter(framework, data)
    assert not marker.exists()


def test_the_payload_is_real_when_trusted(tmp_path: Path) -> None:
    # the control: the same artifact, loaded by a reader that trusts everything, runs code
    marker = tmp_path / "pwned"
    evil = _payloads(marker)["numpy runstring"]
    data = sio.dumps({"meta": {"adapter": "sklearn"}, "estimator": evil})
    doc = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    doc["estimator"]()
    assert marker.exists()


def _torch_artifact(hidden: list[int], n_features: int = 4) -> bytes:
    meta = {
        "adapter": "torch-mlp",
        "params": {"hidden": hidden},
        "classes": [0, 1],
        "n_features": n_features,
        "y_mean": 0.0,
        "y_std": 1.0,
    }
    tensors = {"x_mean": np.zeros(1, np.float32), "x_std": np.ones(1, np.float32)}
    return bytes(st_save(tensors, metadata={"driftline": json.dumps(meta)}))


@pytest.mark.parametrize(
    "hidden,n_features",
    [([1_000_000, 1_000_000], 4), ([60_000] * 20, 4), ([8] * 65, 4), ([16], 10**7), ([0], 4)],
)
def test_torch_artifact_with_an_oversized_architecture_is_refused_quickly(
    hidden: list[int], n_features: int
) -> None:
    data = _torch_artifact(hidden, n_features)
    started = time.perf_counter()
    with pytest.raises(ArtifactFormatError, match="limits are"):
        TorchMLP.load(data)
    assert time.perf_counter() - started < 0.5


def test_torch_artifact_without_an_architecture_is_refused() -> None:
    with pytest.raises(ArtifactFormatError, match="no valid architecture"):
        TorchMLP.load(_torch_artifact(["wide"]))  # type: ignore[list-item]


@pytest.mark.parametrize("framework", ["this:s", "os:system", "driftline.errors:ConfigError"])
def test_framework_from_the_wire_is_refused_unless_registered(framework: str) -> None:
    with pytest.raises(UnknownAdapterError, match="registered"):
        load_adapter(framework, b"")
    with pytest.raises(UnknownAdapterError, match="torch-mlp"):
        adapter_class(framework)


def test_framework_from_the_wire_never_imports_a_module() -> None:
    script = (
        "import sys\n"
        "from driftline.retrainer.adapters import load_adapter\n"
        "from driftline.retrainer.exceptions import UnknownAdapterError\n"
        "try:\n"
        "    load_adapter('this:s', b'')\n"
        "except UnknownAdapterError:\n"
        "    pass\n"
        "print('this' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


def test_config_may_still_name_a_dotted_path() -> None:
    # the operator's config picks code on purpose; that registers the name for loading
    name = "driftline.retrainer.adapters.sklearn_adapter:SklearnAdapter"
    assert type(make_adapter(name)).__name__ == "SklearnAdapter"
    assert adapter_class(name).__name__ == "SklearnAdapter"

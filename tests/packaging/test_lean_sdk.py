"""A consumer service installs the core only: the SDK imports without the worker, the model
frameworks or the report (their imports are blocked here, as if they were not installed)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXTRAS_ONLY = ["torch", "faust", "matplotlib", "sklearn", "skops", "river", "aiokafka", "mode"]

_PROGRAM = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS_ONLY!r}:
            raise ImportError(f"{{name}} is not installed")
sys.meta_path.insert(0, Block())
from driftline import ModelSubscriber, Settings
from driftline.schemas import ModelVersionSigner
key = ModelVersionSigner.generate().public_key
sub = ModelSubscriber("127.0.0.1:9092", "fraud", loader=lambda event, data: data, verify_keys=[key])
print(sub.topic, Settings(pipeline="fraud").kafka_security.protocol)
"""


def test_the_sdk_imports_with_the_core_dependencies_only() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.split() == ["fraud.model-versions", "PLAINTEXT"]


def test_core_dependencies_leave_the_heavy_frameworks_to_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for heavy in ("torch", "faust", "matplotlib", "scikit-learn", "river"):
        assert heavy not in core
    extras = project["optional-dependencies"]
    assert any("faust" in d for d in extras["worker"])
    assert any("torch" in d for d in extras["torch"])
    assert any("matplotlib" in d for d in extras["report"])
    assert "all" in extras["dev"][0]

"""A wheel built from the repository, installed in a fresh virtual environment, runs the demo:
schema files and migrations ship as real files, not as the repository's symlinks."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


def test_the_wheel_installs_in_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        ROOT,
        "-w",
        tmp_path / "dist",
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("driftline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "driftline/schemas/json/drift_event.json" in names
    assert "driftline/lifecycle_store/migrations/env.py" in names
    assert any(n.startswith("driftline/lifecycle_store/migrations/versions/") for n in names)

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run(
        python,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=tmp_path,
        env=env,
    )
    # The dependencies come from this environment's site-packages, added only now so pip
    # never sees another driftline. A plain path line: that directory's own .pth files (an
    # editable driftline among them) are not processed, so driftline comes from the wheel.
    venv_site = Path(
        _run(
            python, "-c", "import site; print(site.getsitepackages()[0])", cwd=tmp_path, env=env
        ).strip()
    )
    (venv_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    where = _run(python, "-c", "import driftline; print(driftline.__file__)", cwd=tmp_path, env=env)
    assert where.startswith(str(venv)), where
    _run(
        venv / "bin" / "driftline",
        "demo",
        "--out",
        tmp_path / "run",
        "--rows-per-concept",
        "2000",
        cwd=tmp_path,
        env=env,
    )
    assert (tmp_path / "run" / "report.json").is_file()

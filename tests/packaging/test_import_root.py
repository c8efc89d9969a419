"""One import root: a user's service with its own ``schemas.py`` and ``streams.py`` still imports
the SDK exactly as README shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_import_line() -> str:
    lines = [line for line in README.read_text().splitlines() if "import ModelSubscriber" in line]
    assert lines, "README.md shows no ModelSubscriber import"
    return lines[0].strip()


def test_a_service_with_its_own_schemas_and_streams_modules_imports_the_sdk(
    tmp_path: Path,
) -> None:
    (tmp_path / "schemas.py").write_text("class Item:\n    pass\n")
    (tmp_path / "streams.py").write_text("raise ImportError('the user streams module')\n")
    (tmp_path / "detectors.py").write_text("raise ImportError('the user detectors module')\n")
    service = tmp_path / "service.py"
    service.write_text(
        "import schemas\n"
        f"{_readme_import_line()}\n"
        "assert schemas.Item\n"
        "import sys\n"
        "assert 'torch' not in sys.modules and 'faust' not in sys.modules, sorted(sys.modules)\n"
        "print(ModelSubscriber.__module__)\n"
    )
    done = subprocess.run(
        [sys.executable, str(service)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "driftline.streams.sdk.subscriber"


def test_the_root_package_names_what_users_need() -> None:
    import driftline

    for name in driftline.__all__:
        assert getattr(driftline, name) is not None
    assert issubclass(driftline.ConfigError, driftline.DriftlineError)

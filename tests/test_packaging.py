"""The built wheel installs `stepscope`, never a top-level `smprof`.

Why: AWS's SageMaker Profiler package is called ``smprof`` and is preinstalled in
SageMaker's framework containers, where our collector runs; a second ``smprof`` would
overwrite it or be shadowed by it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_top_level_is_stepscope_not_smprof(tmp_path: Path) -> None:
    # build from a copy: an in-tree build leaves build/ and *.egg-info in the checkout
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv*",
            "build",
            "dist",
            "*.egg-info",
            ".bench",
            ".*cache*",
            "__pycache__",
            "stepscope-report",
        ),
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("stepscope-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (top_file,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        top = set(zf.read(top_file).decode().split())
        entry = zf.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
    assert "stepscope" in top
    assert "smprof" not in top
    assert not any(n.startswith("smprof/") for n in names)
    assert "stepscope = stepscope.cli:main" in entry

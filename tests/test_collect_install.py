"""The collector installs into a PyTorch-DLC-like environment without changing a package there.

Why: attach ships the collector inside the user's job (stepscope is not on PyPI), and the
training container's packages are the user's: an install that upgraded psutil or protobuf
could break their training. So: a fresh venv with a pinned DLC-like set
(``envs/dlc-like-requirements.txt``; psutil older than stepscope's own pin), a pip dry run
of the requirements file attach writes (run as SageMaker's toolkits run it: ``pip install
-r requirements.txt`` in the code folder), then the real install, then the generated entry
shim running a script under the launcher from that venv alone.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path
from typing import Any

import pytest

from stepscope.attach.collectors import (
    COLLECTOR_DIST,
    ENTRY_SHIM,
    build_collector_wheel,
    collector_wheel_name,
    stage_source,
)

REPO = Path(__file__).resolve().parents[1]
DLC_SET = REPO / "envs" / "dlc-like-requirements.txt"
HEAVY = (
    "pandas",
    "pyarrow",
    "plotly",
    "streamlit",
    "click",
    "numpy",
    "pydantic",
    "boto3",
    "rich",
    "analyzer",
    "rules",
)
#: pip's words for "could not reach the index" (the one reason to skip)
_UNREACHABLE = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
    r"Failed to establish a new connection|ConnectTimeoutError|ProxyError|No route to host|"
    r"dns error|error sending request"  # uv's
)

TRAIN = """\
import json, os, sys
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
import stepscope.collectors.launcher
import stepscope.collectors.system
import stepscope.collectors.trace
heavy_after = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
json.dump({{"argv": sys.argv[1:], "orig_argv": sys.orig_argv, "heavy": heavy,
           "heavy_after": heavy_after,
           "run_dir": os.environ.get("STEPSCOPE_RUN_DIR"), "stepscope": stepscope.__file__}},
          open(os.environ["RESULT"], "w"))
import time; time.sleep(1.2)
sys.exit(3)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no venv of ours: the DLC-like venv sees only what is installed in it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("STEPSCOPE_")
    }
    env.update(extra)
    return env


def _pip(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
        timeout=300,
    )


def _checked(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        if _UNREACHABLE.search(proc.stderr + proc.stdout):
            pytest.skip(
                f"package index unreachable ({what}): {proc.stderr.strip().splitlines()[-1]}"
            )
        pytest.fail(f"{what} failed:\n{proc.stderr[-3000:]}", pytrace=False)


def _freeze(python: Path) -> dict[str, str]:
    proc = _pip(python, "list", "--format=json")
    assert proc.returncode == 0, proc.stderr
    return {
        p["name"].lower().replace("_", "-"): p["version"]
        for p in json.loads(proc.stdout)
        if p["name"].lower() not in ("pip", "setuptools")
    }


def _has_uv() -> bool:
    return (
        subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True).returncode
        == 0
    )


@pytest.fixture(scope="module")
def dlc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv (with pip, as a DLC has) with the DLC-like set installed; its interpreter.
    The set goes in with uv where this environment has it (seconds, not a minute); what is
    under test, the collector's install, is always pip's, as in the container."""
    root = tmp_path_factory.mktemp("dlc")
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    if _has_uv():
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "uv",
                "pip",
                "install",
                "-q",
                "--python",
                str(python),
                "-r",
                str(DLC_SET),
            ],
            capture_output=True,
            text=True,
            env=_clean_env(),
            timeout=300,
        )
    else:
        proc = _pip(python, "install", "-q", "-r", str(DLC_SET))
    _checked(proc, "installing the DLC-like set")
    return python


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in DLC_SET.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_collector_wheel_holds_only_the_collectors(tmp_path: Path) -> None:
    wheel = build_collector_wheel(tmp_path / "a")
    assert wheel.name == collector_wheel_name() and wheel.name.startswith("stepscope_collect-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        init = zf.read("stepscope/__init__.py").decode()
    code = [n for n in names if ".dist-info/" not in n]
    assert (
        "stepscope/collectors/launcher.py" in code
        and "stepscope/collectors/bootstrap/sitecustomize.py" in code
    )
    assert all(
        n == "stepscope/__init__.py" or n.startswith("stepscope/collectors/") for n in code
    ), code
    assert not any("__pycache__" in n for n in names)
    # depends on psutil and nvidia-ml-py with no version: nothing there gets up- or downgraded
    assert re.findall(r"^Requires-Dist: (.*)$", metadata, re.M) == ["psutil", "nvidia-ml-py"]
    assert f"Name: {COLLECTOR_DIST}\n" in metadata
    # the package root the wheel carries imports nothing
    assert not [n for n in ast.walk(ast.parse(init)) if isinstance(n, ast.Import | ast.ImportFrom)]
    # the same code gives the same bytes (a re-attach uploads an identical file)
    again = build_collector_wheel(tmp_path / "b")
    assert (
        hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(wheel.read_bytes()).digest()
    )


@pytest.mark.slow
def test_install_into_dlc_like_env_changes_nothing(dlc: Path, tmp_path: Path) -> None:
    before = _freeze(dlc)
    pins = _pins()
    assert {k: before.get(k) for k in pins} == pins  # the set is what the file says
    assert "nvidia-ml-py" not in before and COLLECTOR_DIST not in before

    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(TRAIN.format(heavy=HEAVY))
    (src / "requirements.txt").write_text("six\n")  # the user's line, already satisfied
    out = tmp_path / "out"
    staged = stage_source(
        src, "train.py", out_dir=str(out), interval_ms=100, dest=tmp_path / "staged"
    )
    code = staged.source_dir
    assert (code / "requirements.txt").read_text() == f"six\n./{staged.wheel.name}\n"
    assert (src / "requirements.txt").read_text() == "six\n" and not (src / ENTRY_SHIM).exists()

    # the dry run: what `pip install -r requirements.txt` in the code folder would do
    report_path = tmp_path / "report.json"
    _checked(
        _pip(
            dlc,
            "install",
            "--dry-run",
            "--report",
            str(report_path),
            "-r",
            "requirements.txt",
            cwd=code,
        ),
        "pip dry run of the collector",
    )
    report: dict[str, Any] = json.loads(report_path.read_text())
    would = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
    assert set(would) == {COLLECTOR_DIST, "nvidia-ml-py"}, (
        would
    )  # the collector and the one absent package
    assert not set(would) & set(
        before
    )  # no package already there is reinstalled, up- or downgraded

    _checked(
        _pip(dlc, "install", "-q", "-r", "requirements.txt", cwd=code), "installing the collector"
    )
    after = _freeze(dlc)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {COLLECTOR_DIST, "nvidia-ml-py"}

    # the toolkit runs the entry point, here the shim, with the hyperparameters as arguments
    result = tmp_path / "result.json"
    proc = subprocess.run(
        [str(dlc), "-u", ENTRY_SHIM, "--epochs", "2"],
        cwd=code,
        capture_output=True,
        text=True,
        env=_clean_env(RESULT=str(result)),
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr  # the script's exit code comes back
    seen = json.loads(result.read_text())
    assert seen["argv"] == ["--epochs", "2"]
    assert seen["orig_argv"][1] == "-u"  # unbuffered as the toolkit asked (torchrun passes -u)
    assert seen["run_dir"] == str(out)  # it ran under the launcher
    assert seen["stepscope"].startswith(
        str(dlc.parents[1])
    )  # the installed wheel, not this checkout
    assert seen["heavy"] == [] and seen["heavy_after"] == []
    samples = list((out / "system" / "incremental").rglob("*.json"))
    assert samples, f"no system metrics written: {proc.stderr}"
    rows = [json.loads(line) for f in samples for line in f.read_text().splitlines()]
    assert {"cpu", "memory"} <= {r["Type"] for r in rows}  # psutil 5.9 serves the sampler


@pytest.mark.slow
def test_shim_without_the_collector_runs_the_script(tmp_path: Path) -> None:
    """If the requirements install were skipped, the job still trains (one line on stderr)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("import sys; print('trained', sys.argv[1:]); sys.exit(4)\n")
    staged = stage_source(
        src, "train.py", out_dir=str(tmp_path / "out"), interval_ms=500, dest=tmp_path / "s"
    )
    bare = tmp_path / "bare"
    venv.EnvBuilder(with_pip=False).create(bare)
    proc = subprocess.run(
        [str(bare / "bin" / "python"), ENTRY_SHIM, "--lr", "0.1"],
        cwd=staged.source_dir,
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=60,
    )
    assert proc.returncode == 4 and "trained ['--lr', '0.1']" in proc.stdout
    assert proc.stderr.count("\n") == 1 and "stepscope: collectors off" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_dlc_set_is_pinned() -> None:
    """Every line of the DLC-like set is an exact pin (a range would test nothing)."""
    pins = _pins()
    assert pins["psutil"].startswith("5.9.")
    assert all(re.fullmatch(r"[\w.]+", v) for v in pins.values())


TORCH_PYTHON = REPO / ".venv-torch" / "bin" / "python"


def _torch_python() -> str:
    """This interpreter when it has torch, else .venv-torch's; skip (or fail with
    STEPSCOPE_REQUIRE_TORCH=1) when neither has it."""
    from tests.support.torch_env import HAS_TORCH, require_torch

    if HAS_TORCH:
        return sys.executable
    if TORCH_PYTHON.exists():
        probe = subprocess.run(
            [str(TORCH_PYTHON), "-c", "import torch"], capture_output=True, timeout=120
        )
        if probe.returncode == 0:
            return str(TORCH_PYTHON)
    require_torch("the shim under torchrun", __file__)
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_shim_under_torchrun_traces_every_rank_with_one_sampler(tmp_path: Path) -> None:
    """A distributed entry point, run as the toolkits run it (``torchrun ... stepscope_entry.py
    ARGS``, each worker with ``-u``): every worker becomes a launcher running the script,
    each rank gets its trace, the node one sampler, and the job exits 0."""
    python = _torch_python()
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text((REPO / "samples" / "train_sample.py").read_text())
    out = tmp_path / "out"
    staged = stage_source(
        src, "train.py", out_dir=str(out), interval_ms=100, dest=tmp_path / "code"
    )
    env = _clean_env(
        PYTHONPATH=str(REPO)
    )  # the collector from this checkout (installed: see above)
    proc = subprocess.run(
        [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            ENTRY_SHIM,
            "--steps",
            "12",
            "--loader-ms",
            "0",
            "--straggler-ms",
            "0",
        ],
        cwd=staged.source_dir,
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = sorted(p.name.split(".")[0].rsplit("_", 1)[1] for p in out.glob("*.pt.trace.json.gz"))
    assert ranks == ["rank0", "rank1"], proc.stderr[-4000:]
    nodes = {f.name.split(".")[1] for f in (out / "system" / "incremental").rglob("*.json")}
    assert len(nodes) == 1, nodes

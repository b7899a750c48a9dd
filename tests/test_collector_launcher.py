"""``stepscope run``: the launcher, its bootstrap ``sitecustomize`` and the trace recorder.

Each test runs the launcher as a real process (``python -m stepscope.collectors.launcher``
or the click command), since what is under test is process behaviour: exit codes, signals,
environments, what a child interpreter imports. The tests that need torch (the recorder, the
known-answer DDP run) skip without it and fail with ``STEPSCOPE_REQUIRE_TORCH=1`` (the
Makefile's run in .venv-torch).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import pty
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from stepscope.collectors import identity, launcher, trace
from tests.support.torch_env import require_torch

REPO = Path(__file__).resolve().parents[1]
TRAIN_DDP = REPO / "samples" / "train_sample.py"
HAS_SAMPLER = importlib.util.find_spec(launcher.SAMPLER_MODULE) is not None
LAUNCHER = [sys.executable, "-m", "stepscope.collectors.launcher"]
HEAVY = (
    "pandas",
    "pyarrow",
    "numpy",
    "plotly",
    "streamlit",
    "click",
    "rich",
    "pydantic",
    "boto3",
    "msgspec",
)


@pytest.fixture
def torch_available() -> None:
    """Skip a test that needs torch, or fail with ``STEPSCOPE_REQUIRE_TORCH=1``."""
    require_torch("the trace recorder", "tests/test_collector_launcher.py")


def _env(**extra: str) -> dict[str, str]:
    """This environment without any launcher variables (the suite may run under one)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (trace.ENV_DIR, trace.ENV_STEPS, trace.ENV_NODE, "PYTHONPATH")
    }
    env.update(extra)
    return env


def _launch(
    tmp: Path,
    *command: str,
    opts: tuple[str, ...] = (),
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAUNCHER, "--out", str(tmp / "out"), *opts, "--", *command],
        cwd=tmp,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ours(stderr: str) -> list[str]:
    """The launcher's and the recorder's lines ("stepscope: ..."; the sampler has its own)."""
    return [line for line in stderr.splitlines() if line.startswith("stepscope: ")]


def _wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- options


def test_steps_parse_and_reject() -> None:
    assert trace.parse_steps("1:1:8") == (1, 1, 8) == trace.DEFAULT_STEPS
    assert trace.parse_steps(" 0:0:1 ") == (0, 0, 1)
    for bad in ("1:1", "1:1:8:1", "a:1:2", "1:1:0", "-1:1:3", ""):
        with pytest.raises(ValueError, match="WAIT"):
            trace.parse_steps(bad)
    assert trace.format_steps((5, 1, 10)) == "5:1:10"


def test_child_env_puts_the_bootstrap_first_once(tmp_path: Path) -> None:
    base = {"PYTHONPATH": os.pathsep.join(["/a", "/b"]), "KEEP": "1"}
    env = launcher.child_env(tmp_path, (2, 1, 3), "algo-7", base)
    boot = str(launcher.BOOTSTRAP_DIR)
    assert env["PYTHONPATH"].split(os.pathsep) == [boot, "/a", "/b"]
    assert (env[trace.ENV_DIR], env[trace.ENV_STEPS], env[trace.ENV_NODE]) == (
        str(tmp_path),
        "2:1:3",
        "algo-7",
    )
    assert env["KEEP"] == "1" and base["PYTHONPATH"] == "/a" + os.pathsep + "/b"
    nested = launcher.child_env(tmp_path, (1, 1, 8), "algo-7", env)  # a launcher under a launcher
    assert nested["PYTHONPATH"].split(os.pathsep) == [boot, "/a", "/b"]
    assert launcher.child_env(tmp_path, (1, 1, 8), "n", {})["PYTHONPATH"] == boot


def test_bootstrap_names_agree_and_ship() -> None:
    """The sitecustomize reads the switch the launcher sets without importing stepscope,
    and it is inside a package, so the wheel carries it."""
    text = (launcher.BOOTSTRAP_DIR / "sitecustomize.py").read_text()
    assert f'_SWITCH = "{trace.ENV_DIR}"' in text
    assert importlib.util.find_spec("stepscope.collectors.bootstrap.sitecustomize") is not None


def test_default_output_dir_is_used(tmp_path: Path) -> None:
    env = _env()
    for k in [k for k in env if k.startswith("SM_")]:
        del env[k]
    proc = subprocess.run(
        [*LAUNCHER, "--", sys.executable, "-c", f"import os; print(os.environ['{trace.ENV_DIR}'])"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == tmp_path / identity.LOCAL_OUTPUT_DIR
    assert (tmp_path / identity.LOCAL_OUTPUT_DIR).is_dir()


# --------------------------------------------------------------------------- exit code, signals


def test_exit_code_passes_through(tmp_path: Path) -> None:
    proc = _launch(tmp_path, sys.executable, "-c", "import sys; print('trained'); sys.exit(3)")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "trained\n"
    assert _ours(proc.stderr) == []


def test_click_command_passes_the_exit_code_and_options(tmp_path: Path) -> None:
    code = "from stepscope.cli.run import run_command; run_command(prog_name='stepscope run')"
    child = (
        f"import os, sys; print(os.environ['{trace.ENV_STEPS}'], "
        f"os.environ['{trace.ENV_DIR}']); sys.exit(4)"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--out",
            "o",
            "--steps",
            "3:1:2",
            "--",
            sys.executable,
            "-c",
            child,
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout.split() == ["3:1:2", str(tmp_path / "o")]
    bad = subprocess.run(
        [sys.executable, "-c", code, "--steps", "3:1", "--", "true"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "WAIT:WARMUP:ACTIVE" in bad.stderr


def test_launcher_runs_without_the_analysis_side(tmp_path: Path) -> None:
    """A ``--no-deps`` install in a training image has no click, pandas...: the launcher
    (and the sampler it starts) must not need them."""
    code = (
        "import sys\n"
        f"for m in {HEAVY!r}: sys.modules[m] = None  # importing any of them fails\n"
        "from stepscope.collectors import launcher\n"
        "launcher.main(sys.argv[1:])\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--out",
            str(tmp_path / "out"),
            "--",
            sys.executable,
            "-c",
            "import sys; sys.exit(6)",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 6, proc.stderr
    assert _ours(proc.stderr) == [], proc.stderr


def test_command_not_found_is_127(tmp_path: Path) -> None:
    proc = _launch(tmp_path, "stepscope-no-such-command")
    assert proc.returncode == 127
    assert _ours(proc.stderr) == ["stepscope: error: command not found: stepscope-no-such-command"]


SIGNAL_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    got = []
    signal.signal(signal.SIGINT, lambda s, f: got.append(s))
    open(sys.argv[1], "w").write(str(os.getpid()))
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # a second SIGINT (a duplicate) would arrive meanwhile
    sys.exit(40 + len(got))
    """
)


def test_sigterm_to_the_launcher_ends_the_command_and_the_launcher_by_it(tmp_path: Path) -> None:
    ready = tmp_path / "pid"
    child = f"import os, time; open({str(ready)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    proc = subprocess.Popen(
        [*LAUNCHER, "--out", str(tmp_path / "out"), "--", sys.executable, "-c", child],
        cwd=tmp_path,
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    child_pid = int(_wait_for(ready))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, err  # the launcher died of the same signal
    assert not _alive(child_pid)
    assert _ours(err) == []


def test_sigint_sent_to_the_launcher_reaches_the_command_once(tmp_path: Path) -> None:
    ready = tmp_path / "pid"
    proc = subprocess.Popen(
        [
            *LAUNCHER,
            "--out",
            str(tmp_path / "out"),
            "--",
            sys.executable,
            "-c",
            SIGNAL_CHILD,
            str(ready),
        ],
        cwd=tmp_path,
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(ready)
    os.kill(proc.pid, signal.SIGINT)  # as `kill -INT`: the command gets it from the launcher
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 41, err


def test_ctrl_c_at_the_terminal_reaches_the_command_once(tmp_path: Path) -> None:
    """A Ctrl-C reaches the whole foreground group from the kernel: the launcher must not
    pass on a second one."""
    ready = tmp_path / "pid"
    argv = [
        *LAUNCHER,
        "--out",
        str(tmp_path / "out"),
        "--",
        sys.executable,
        "-c",
        SIGNAL_CHILD,
        str(ready),
    ]
    env = _env()
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own with the pty as its terminal
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(99)
    output = b""
    try:
        _wait_for(ready)
        os.write(fd, b"\x03")  # the terminal's interrupt character
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: every process on the terminal has closed it
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 41, output.decode(errors="replace")


# --------------------------------------------------------------------------- collector failures


def test_unusable_output_folder_still_runs_the_command(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    proc = subprocess.run(
        [
            *LAUNCHER,
            "--out",
            str(tmp_path / "file" / "out"),
            "--",
            sys.executable,
            "-c",
            f"import os, sys; print(os.environ.get('{trace.ENV_DIR}')); sys.exit(5)",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 5
    assert proc.stdout.strip() == "None"  # no collectors: the command runs as it would alone
    lines = _ours(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("stepscope: collectors off"), proc.stderr


def test_sampler_that_cannot_start_is_one_line(tmp_path: Path) -> None:
    code = (
        "import sys; from stepscope.collectors import launcher; "
        "launcher.SAMPLER_MODULE = 'stepscope_no_such_sampler'; launcher.main(sys.argv[1:])"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--out",
            str(tmp_path / "out"),
            "--",
            sys.executable,
            "-c",
            "print('trained')",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == "trained\n"
    lines = _ours(proc.stderr)
    assert len(lines) == 1 and "system metrics sampler not started" in lines[0], proc.stderr


def _fake_sampler(tmp: Path, body: str) -> dict[str, str]:
    """A sampler module of our own making, found through PYTHONPATH by the launcher."""
    (tmp / "fake_sampler.py").write_text(textwrap.dedent(body))
    return _env(PYTHONPATH=str(tmp))


def _with_sampler(module: str) -> list[str]:
    code = (
        "import sys; from stepscope.collectors import launcher; "
        f"launcher.SAMPLER_MODULE = {module!r}; launcher.main(sys.argv[1:])"
    )
    return [sys.executable, "-c", code]


def test_sampler_that_dies_is_one_line_and_training_goes_on(tmp_path: Path) -> None:
    env = _fake_sampler(tmp_path, "import sys; sys.exit(5)\n")
    proc = subprocess.run(
        [
            *_with_sampler("fake_sampler"),
            "--out",
            str(tmp_path / "out"),
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(2.5); print('trained')",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == "trained\n"
    assert _ours(proc.stderr) == [
        "stepscope: system metrics sampler exited with code 5; "
        "training goes on without system metrics"
    ]


def test_one_sampler_per_node_and_folder(tmp_path: Path) -> None:
    """A launcher under a launcher (or several launchers on one node) starts one sampler; the
    sampler is asked to stop (SIGTERM) when the command ends, and gets its arguments."""
    log = tmp_path / "samplers.log"
    env = _fake_sampler(
        tmp_path,
        f"""
        import os, signal, sys, time
        with open({str(log)!r}, "a") as f:
            f.write(" ".join(sys.argv[1:]) + "\\n")
        signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))
        time.sleep(60)
        sys.exit(9)
        """,
    )
    out = str(tmp_path / "out")
    inner = [
        *_with_sampler("fake_sampler"),
        "--out",
        out,
        "--interval-ms",
        "250",
        "--",
        sys.executable,
        "-c",
        "import time; time.sleep(1)",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(
        [*_with_sampler("fake_sampler"), "--out", out, "--interval-ms", "250", "--", *inner],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert _ours(proc.stderr) == []
    assert log.read_text().splitlines() == [
        f"--out {out} --interval-ms 250 --node {identity.node_name()}"
    ]
    assert time.monotonic() - t0 < 30  # stopped by SIGTERM, not by its 60 s sleep


@pytest.mark.skipif(not HAS_SAMPLER, reason=f"{launcher.SAMPLER_MODULE} is not there yet")
def test_system_metrics_are_sampled_while_the_command_runs(tmp_path: Path) -> None:
    proc = _launch(
        tmp_path,
        sys.executable,
        "-c",
        "import time; time.sleep(1.5)",
        opts=("--interval-ms", "100"),
    )
    assert proc.returncode == 0, proc.stderr
    node = identity.node_name()
    files = sorted((tmp_path / "out" / "system" / "incremental").glob(f"*/*.{node}.json"))
    assert files, proc.stderr
    recs = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    mem = [r for r in recs if r["Name"] == "MemoryUsedPercent"]
    assert len(mem) >= 5 and {r["NodeId"] for r in recs} == {node}
    assert launcher._node_lock((tmp_path / "out").absolute(), node) is not None  # released


# --------------------------------------------------------------------------- the bootstrap


PROBE = textwrap.dedent(
    """
    import json, sys
    print(json.dumps({
        "modules": sorted(sys.modules),
        "watchers": [
            type(f).__name__ for f in sys.meta_path
            if type(f).__name__ == "_TorchOptimWatcher"
        ],
        "sitecustomize": getattr(sys.modules.get("sitecustomize"), "__file__", None),
        "chained": getattr(sys.modules.get("sitecustomize"), "CHAINED", None),
    }))
    """
)


def _probe(tmp: Path, env: dict[str, str], python: str = sys.executable) -> dict[str, Any]:
    proc = subprocess.run(
        [python, "-c", PROBE], cwd=tmp, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert _ours(proc.stderr) == [], proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_bootstrap_is_inert_without_the_launcher(tmp_path: Path) -> None:
    got = _probe(tmp_path, _env(PYTHONPATH=str(launcher.BOOTSTRAP_DIR)))
    assert got["watchers"] == []
    assert [m for m in got["modules"] if m.startswith("stepscope")] == []


def test_child_interpreter_stays_light_without_torch(tmp_path: Path) -> None:
    """Under the launcher a process that never imports torch loads nothing of stepscope and
    nothing heavy: only the one-shot import watcher is there."""
    proc = _launch(tmp_path, sys.executable, "-c", PROBE)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["watchers"] == ["_TorchOptimWatcher"]
    assert [m for m in got["modules"] if m.startswith("stepscope")] == []
    assert [m for m in got["modules"] if m.split(".")[0] in HEAVY] == []


def _other_sitecustomize(tmp: Path, body: str = "CHAINED = 'yes'\n") -> Path:
    other = tmp / "theirs"
    other.mkdir()
    (other / "sitecustomize.py").write_text(body)
    return other


@pytest.mark.parametrize("switched_on", [False, True])
def test_bootstrap_chains_to_the_sitecustomize_it_hides(tmp_path: Path, switched_on: bool) -> None:
    other = _other_sitecustomize(tmp_path)
    extra = {trace.ENV_DIR: str(tmp_path / "out")} if switched_on else {}
    env = _env(PYTHONPATH=os.pathsep.join([str(launcher.BOOTSTRAP_DIR), str(other)]), **extra)
    got = _probe(tmp_path, env)
    assert got["chained"] == "yes"
    assert got["sitecustomize"] == str(other / "sitecustomize.py")
    assert got["watchers"] == (["_TorchOptimWatcher"] if switched_on else [])


def test_a_failing_chained_sitecustomize_is_reported_as_site_would(tmp_path: Path) -> None:
    other = _other_sitecustomize(tmp_path, "raise RuntimeError('theirs is broken')\n")
    env = _env(PYTHONPATH=os.pathsep.join([str(launcher.BOOTSTRAP_DIR), str(other)]))
    proc = subprocess.run(
        [sys.executable, "-c", "print('ran')"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == "ran\n"
    assert "Error in sitecustomize" in proc.stderr and "theirs is broken" in proc.stderr


FAKE_TORCH = {
    "torch/__init__.py": "from torch import optim\n",
    "torch/optim/__init__.py": "from torch.optim import optimizer\n",
    "torch/optim/optimizer.py": textwrap.dedent(
        """
        hooks = []

        class _Handle:
            def remove(self):
                hooks.clear()

        def register_optimizer_step_post_hook(hook):
            hooks.append(hook)
            return _Handle()
        """
    ),
}


def _fake_torch(tmp: Path) -> Path:
    root = tmp / "fake-torch"
    for rel, text in FAKE_TORCH.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _system_python_without_stepscope() -> str | None:
    """The interpreter this venv was made from, say (a venv's packages are not its)."""
    for python in (os.path.join(sys.base_prefix, "bin", "python3"), "/usr/bin/python3"):
        if not os.access(python, os.X_OK):
            continue
        check = subprocess.run(
            [python, "-c", "import sys; assert sys.version_info >= (3, 8); import stepscope"],
            cwd="/",
            env=_env(),
            capture_output=True,
            timeout=60,
        )
        if check.returncode != 0 and b"No module named 'stepscope'" in check.stderr:
            return python
    return None


@pytest.mark.parametrize("interpreter", ["this", "without-stepscope"])
def test_importing_torch_optim_installs_the_step_hook(tmp_path: Path, interpreter: str) -> None:
    """The hook is registered the moment ``torch.optim.optimizer`` has run (a stand-in torch
    here), also in an interpreter that has no stepscope installed (loaded from the checkout
    the bootstrap sits in)."""
    python = sys.executable if interpreter == "this" else _system_python_without_stepscope()
    if python is None:
        pytest.skip("no second Python without stepscope on this machine")
    fake = _fake_torch(tmp_path)
    env = launcher.child_env(tmp_path / "out", (1, 1, 8), "algo-3", _env(PYTHONPATH=str(fake)))
    code = textwrap.dedent(
        """
        import sys
        assert not [m for m in sys.modules if m.startswith("stepscope")]
        import torch
        from torch.optim import optimizer
        from stepscope.collectors import trace
        rec = trace.recorder
        w = rec.window
        print(len(optimizer.hooks), optimizer.hooks[0] == rec.on_optimizer_step, w.node,
              w.wait, w.warmup, w.active, w.out_dir)
        print(sum(type(f).__name__ == "_TorchOptimWatcher" for f in sys.meta_path))
        print(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[1:]))
        """
    )
    proc = subprocess.run(
        [python, "-c", code, *HEAVY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"1 True algo-3 1 1 8 {tmp_path / 'out'}", "0", "[]"]
    assert _ours(proc.stderr) == []


def test_a_broken_recorder_install_is_one_line(tmp_path: Path) -> None:
    fake = _fake_torch(tmp_path)
    (fake / "torch/optim/optimizer.py").write_text(
        "def register_optimizer_step_post_hook(h):\n    raise OSError('no')\n"
    )
    env = launcher.child_env(tmp_path / "out", (1, 1, 8), "n", _env(PYTHONPATH=str(fake)))
    proc = subprocess.run(
        [sys.executable, "-c", "import torch; print('trained')"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == "trained\n"
    assert _ours(proc.stderr) == [
        "stepscope: trace recorder not installed (OSError: no); training goes on"
    ]


# --------------------------------------------------------------------------- the recorder (torch)


TRAIN_LOOP = textwrap.dedent(
    """
    import sys, time
    import torch
    from torch.utils.data import DataLoader, Dataset

    steps, sleep_ms = int(sys.argv[1]), float(sys.argv[2])

    class Slow(Dataset):
        def __len__(self):
            return steps
        def __getitem__(self, i):
            time.sleep(sleep_ms / 1000)
            return torch.randn(4, 8), torch.randn(4, 1)

    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in DataLoader(Slow(), batch_size=None):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[3:])
    print("trained", heavy, "stepscope.collectors.trace" in sys.modules)
    """
)


def _train(
    tmp: Path,
    steps: int,
    sleep_ms: float,
    window: str,
    env: dict[str, str] | None = None,
    launch: bool = True,
) -> subprocess.CompletedProcess[str]:
    script = tmp / "train.py"
    script.write_text(TRAIN_LOOP)
    cmd = [sys.executable, str(script), str(steps), str(sleep_ms), *HEAVY]
    if not launch:
        return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    return _launch(tmp, *cmd, opts=("--steps", window), timeout=120)


def _events(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as f:
        doc: dict[str, Any] = json.load(f)
    return [e for e in doc["traceEvents"] if e.get("ph") == "X"]


@pytest.mark.usefixtures("torch_available")
def test_a_training_loop_gets_one_trace_of_its_window(tmp_path: Path) -> None:
    alone = _train(tmp_path, steps=2, sleep_ms=0, window="", env=_env(), launch=False)
    proc = _train(tmp_path, steps=10, sleep_ms=20, window="2:1:4")
    assert proc.returncode == 0, proc.stderr
    # the recorder is in, and it brought nothing heavy that torch did not load itself
    assert proc.stdout.strip() == alone.stdout.strip().replace("False", "True")
    assert _ours(proc.stderr) == []
    traces = sorted((tmp_path / "out").glob("*.pt.trace.json.gz"))
    assert len(traces) == 1
    assert re.fullmatch(
        rf"{re.escape(identity.node_name())}_rank0\.\d{{19}}\.pt\.trace\.json\.gz", traces[0].name
    )
    ev = _events(traces[0])
    steps = sorted(
        int(e["name"].split("#")[1]) for e in ev if e["name"].startswith("ProfilerStep#")
    )
    assert steps == [3, 4, 5, 6]  # wait 2, warm-up 1, then 4 recorded
    loads = [
        e["dur"] / 1000
        for e in ev
        if e["name"].startswith("enumerate(DataLoader)#") and e["name"].endswith("__next__")
    ]
    assert len(loads) >= 4 and min(loads) >= 20, loads  # the data-loader waits are in the trace
    assert any(e["name"].startswith("Optimizer.step#SGD") for e in ev)


@pytest.mark.usefixtures("torch_available")
def test_a_job_that_ends_inside_the_window_still_gets_its_steps(tmp_path: Path) -> None:
    proc = _train(tmp_path, steps=5, sleep_ms=1, window="1:1:8")
    assert proc.returncode == 0, proc.stderr
    (only,) = (tmp_path / "out").glob("*.pt.trace.json.gz")
    names = {e["name"] for e in _events(only)}
    assert {"ProfilerStep#2", "ProfilerStep#3"} <= names


@pytest.mark.usefixtures("torch_available")
def test_too_few_steps_for_the_window_is_one_line(tmp_path: Path) -> None:
    proc = _train(tmp_path, steps=2, sleep_ms=1, window="3:1:2")
    assert proc.returncode == 0 and proc.stdout.startswith("trained"), proc.stderr
    assert list((tmp_path / "out").glob("*.pt.trace.json.gz")) == []
    assert _ours(proc.stderr) == [
        "stepscope: no trace from rank 0: it ran 2 optimizer step(s); "
        "recording starts at step 5 (stepscope run --steps)"
    ]


@pytest.mark.usefixtures("torch_available")
def test_a_trace_that_cannot_be_written_does_not_stop_the_training(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    env = launcher.child_env(tmp_path / "file" / "out", (0, 1, 2), "n", _env())
    proc = _train(tmp_path, steps=8, sleep_ms=1, window="", env=env, launch=False)
    assert proc.returncode == 0 and proc.stdout.startswith("trained"), proc.stderr
    lines = _ours(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "stepscope: trace recorder off in this process: recording the trace failed"
    )


@pytest.mark.usefixtures("torch_available")
def test_a_script_that_profiles_itself_keeps_its_profiler(tmp_path: Path) -> None:
    script = tmp_path / "own.py"
    script.write_text(
        textwrap.dedent(
            """
        import torch
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with torch.profiler.profile() as prof:
            for _ in range(12):
                loss = model(torch.randn(2, 4)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        prof.export_chrome_trace("own.json")
        print("trained")
        """
        )
    )
    proc = _launch(tmp_path, sys.executable, str(script), opts=("--steps", "0:1:2"), timeout=120)
    assert proc.returncode == 0 and proc.stdout == "trained\n", proc.stderr
    assert (tmp_path / "own.json").is_file()
    assert list((tmp_path / "out").glob("*.pt.trace.json.gz")) == []
    assert _ours(proc.stderr) == [
        "stepscope: no trace from rank 0: the script runs its own torch.profiler"
    ]


@pytest.mark.parametrize("health", [False, True], ids=["trace", "trace+health"])
@pytest.mark.usefixtures("torch_available")
def test_a_hook_registered_after_ours_survives_the_window(tmp_path: Path, health: bool) -> None:
    """PyTorch iterates its global optimizer hooks while calling them: a recorder that removed
    its hook from inside that loop broke every hook registered after it ("OrderedDict mutated
    during iteration"). Ours goes inert after the window and leaves at exit instead."""
    code = textwrap.dedent(
        """
        import atexit, sys
        # registered before torch (so before the recorder): atexit runs it after the recorder's
        atexit.register(
            lambda: print(
                "at exit",
                len(sys.modules["torch.optim.optimizer"]._global_optimizer_post_hooks),
            )
        )
        import torch
        from torch.optim import optimizer
        from stepscope.collectors import trace
        calls = []
        # a library's
        optimizer.register_optimizer_step_post_hook(lambda opt, args, kwargs: calls.append(1))
        p = torch.nn.Parameter(torch.ones(2))
        opt = torch.optim.SGD([p], lr=0.1)
        hooks = []
        for _ in range(8):
            p.grad = torch.ones(2)
            opt.step()
            hooks.append(len(optimizer._global_optimizer_post_hooks))
        print(len(calls), hooks[0] == hooks[-1], trace.recorder.off, trace.recorder.prof is None,
              len(trace.recorder.trace_files))
        """
    )
    env = launcher.child_env(tmp_path / "out", (0, 1, 2), "n", _env())
    if health:
        env["STEPSCOPE_RUN_HEALTH"] = "2"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert _ours(proc.stderr) == [], proc.stderr
    first, last = proc.stdout.strip().splitlines()
    assert first == "8 True True True 1"  # the library's hook ran every step; one trace written
    # at exit the recorder's hook is gone (and the health hooks' too); the library's stays
    assert last == "at exit 1"


# --------------------------------------------------------------------------- the proof


LOADER_MS, STRAGGLER_MS = 50.0, 40.0


@pytest.mark.usefixtures("torch_available")
def test_ddp_job_under_stepscope_run_finds_the_injected_stall_and_straggler(tmp_path: Path) -> None:
    """Known answer: a real 2-process gloo DDP run of a script with no profiling code, under
    ``stepscope run -- torchrun``. Each rank waits LOADER_MS per batch for data, rank 1 does
    STRAGGLER_MS more work per step; the rules must say so, with those sizes."""
    from analyzer.ingest import ingest
    from analyzer.job import Job
    from analyzer.sources import open_source
    from rules.engine import evaluate
    from rules.ruleset import load_ruleset

    def ddp_run(work: Path) -> subprocess.CompletedProcess[str]:
        work.mkdir()
        return _launch(
            work,
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(TRAIN_DDP),
            "--steps",
            "14",
            "--loader-ms",
            str(LOADER_MS),
            "--straggler-rank",
            "1",
            "--straggler-ms",
            str(STRAGGLER_MS),
            opts=("--steps", "1:1:8"),
            timeout=240,
        )

    work = tmp_path / "run"
    proc = ddp_run(work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _ours(proc.stderr) == [], proc.stderr[-4000:]
    out = work / "out"
    node = identity.node_name()
    traces = sorted(p.name.split(".")[0] for p in out.glob("*.pt.trace.json.gz"))
    assert traces == [f"{node}_rank0", f"{node}_rank1"]
    if HAS_SAMPLER:
        assert list((out / "system" / "incremental").glob(f"*/*.{node}.json"))

    result = ingest(open_source(str(out)), cache_dir=tmp_path / "cache")
    assert result.summary["ranks"] == 2
    judged = {r.rule: r for r in evaluate(Job(result.dataset, result.summary), load_ruleset())}

    stalls = {f.evidence["rank"]: f.evidence for f in judged["DataLoaderStall"].findings}
    assert sorted(stalls) == [0, 1], judged["DataLoaderStall"]
    for ev in stalls.values():
        assert ev["steps"] == 8
        # the sleep plus the loader's own few tenths of a millisecond per batch
        assert LOADER_MS * 0.98 <= ev["mean_wait_ms"] <= LOADER_MS * 1.06, ev

    (straggler,) = judged["StragglerRank"].findings
    ev = straggler.evidence
    # the collectives matched across the ranks: rank 1 arrives last at every profiled step's
    # all-reduce, rank 0 waits there the injected time, and what rank 1 did more before it is
    # the sleep (no profiled op) and a little Python around it
    assert ev["rank"] == 1 and ev["steps_last"] == ev["steps"] == 8, ev
    assert STRAGGLER_MS * 0.9 <= ev["others_wait_ms_per_step"] <= STRAGGLER_MS * 1.1, ev
    assert ev["cause"] == "unrecorded", ev
    assert STRAGGLER_MS * 0.95 <= ev["excess_ms"] <= STRAGGLER_MS * 1.1, ev

"""The collectors' exit paths (stepscope.collectors.exits), in real torch processes under the
launcher: whichever way a training process ends, the trace window recorded so far is
written and the exit status is the script's own.

Each case is one single-process script with no profiling code, started by ``stepscope run``
with a window that is still recording when the script ends (``--steps 0:1:20``, the script
runs fewer steps), so only the exit path can have written the trace.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stepscope.collectors import exits, trace
from tests.support.torch_env import require_torch

LAUNCHER = [sys.executable, "-m", "stepscope.collectors.launcher"]
NODE = "algo-7"


@pytest.fixture()
def torch_available() -> None:
    require_torch("the collectors' exit paths", "tests/test_collector_exits.py")


TRAIN = """\
import os, signal, sys, time
import torch
from torch import nn

model = nn.Linear(8, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)

def train(steps, loader=None):
    batches = loader if loader is not None else (torch.randn(4, 8) for _ in range(steps))
    for i, x in enumerate(batches):
        if i >= steps:
            break
        loss = model(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
"""

CASES = {
    # the script ends with os._exit (as frameworks and our own DDP scripts do): no atexit runs
    "os_exit": (TRAIN + "train(6)\nos._exit(3)\n", 3),
    # SageMaker's stop (SIGTERM) arrives while the window records: the default action, after
    # the trace is written, so the status is "killed by SIGTERM" as without stepscope
    "sigterm": (
        TRAIN + "train(6)\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(30)\n",
        -signal.SIGTERM,
    ),
    # the normal interpreter exit, after an uncaught exception: exit code 1, trace written
    "exception": (TRAIN + "train(6)\nraise RuntimeError('boom')\n", 1),
    # sys.exit with a code of the script's own
    "sys_exit": (TRAIN + "train(6)\nsys.exit(5)\n", 5),
    # DataLoader worker processes (fork) exit through os._exit too: they never write the
    # parent's trace or exit record, and the parent's own exit is normal
    "dataloader_workers": (
        TRAIN
        + textwrap.dedent("""\
        from torch.utils.data import DataLoader, TensorDataset
        data = TensorDataset(torch.randn(64, 8))
        loader = DataLoader(data, batch_size=4, num_workers=2, multiprocessing_context="fork",
                            collate_fn=lambda b: torch.stack([t[0] for t in b]))
        train(6, loader)
        """),
        0,
    ),
}


def _run(
    tmp: Path, code: str, steps: str = "0:1:20"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    script = tmp / "train.py"
    script.write_text(code)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (trace.ENV_DIR, trace.ENV_STEPS, trace.ENV_NODE, "PYTHONPATH")
        and not k.startswith("SM_")
    }
    out = tmp / "out"
    proc = subprocess.run(
        [*LAUNCHER, "--out", str(out), "--steps", steps, "--", sys.executable, str(script)],
        cwd=tmp,
        env={**env, "SM_CURRENT_HOST": NODE},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, out


def _steps_in(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        events = json.load(f)["traceEvents"]
    return sorted({e["name"] for e in events if str(e.get("name", "")).startswith("ProfilerStep#")})


@pytest.mark.usefixtures("torch_available")
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_exit_path_writes_the_window_and_keeps_the_exit_status(
    case: str, tmp_path: Path
) -> None:
    code, status = CASES[case]
    proc, out = _run(tmp_path, code)
    assert proc.returncode == status, proc.stderr[-3000:]
    traces = sorted(out.glob("*.pt.trace.json.gz"))
    assert [p.name.split(".")[0] for p in traces] == [f"{NODE}_rank0"], proc.stderr[-3000:]
    # six optimizer steps: the first starts the profiler, five step boundaries follow
    assert len(_steps_in(traces[0])) >= 4, _steps_in(traces[0])
    assert [line for line in proc.stderr.splitlines() if line.startswith("stepscope: ")] == []


@pytest.mark.usefixtures("torch_available")
def test_a_normal_exit_leaves_an_exit_record_and_an_empty_fault_file(tmp_path: Path) -> None:
    proc, out = _run(tmp_path, TRAIN + "train(6)\n", steps="0:1:3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / exits.EXITS_DIR / f"{NODE}_rank0.json").read_text())
    # the recorder counts optimizer steps until its window is written (1 + 0:1:3 here)
    assert record["node"] == NODE and record["rank"] == 0 and record["optimizer_steps"] == 5
    assert record["fault_file"] == f"{NODE}_rank0.fault"
    assert (out / exits.EXITS_DIR / record["fault_file"]).read_text() == ""  # finalized cleanly
    judged = _judged(out, tmp_path)["AbortAtExit"]
    assert judged.findings == [] and judged.skipped_reason is None and judged.error is None, judged


#: a script whose interpreter dies in finalization, after its code ended, the way a rank dies
#: of PyTorch's teardown abort: a module global released during finalization calls abort()
#: (there, a C++ destructor on a gloo thread; here, __del__ on the main thread)
ABORT_IN_FINALIZATION = TRAIN + textwrap.dedent("""\
    class Teardown:
        def __del__(self):
            sys.stderr.write("terminate called without an active exception\\n")
            sys.stderr.flush()
            os.abort()

    train(6)
    teardown = Teardown()
    """)


@pytest.mark.usefixtures("torch_available")
def test_an_abort_in_finalization_leaves_its_fault_dump_beside_the_exit_record(
    tmp_path: Path,
) -> None:
    proc, out = _run(tmp_path, ABORT_IN_FINALIZATION, steps="0:1:3")
    assert proc.returncode == -signal.SIGABRT, proc.stderr[-3000:]
    record = json.loads((out / exits.EXITS_DIR / f"{NODE}_rank0.json").read_text())
    assert record["optimizer_steps"] == 5
    fault = (out / exits.EXITS_DIR / record["fault_file"]).read_text()
    assert "Fatal Python error: Aborted" in fault

    # the report names it: an abort after the training ended, PyTorch's teardown abort
    (finding,) = _judged(out, tmp_path)["AbortAtExit"].findings
    ev = finding.evidence
    assert (ev["rank"], ev["node"], ev["signal"], ev["optimizer_steps"]) == (0, NODE, "SIGABRT", 5)
    assert ev["known_issue"] == "https://github.com/pytorch/pytorch/issues/190489"
    assert finding.where == f"rank 0 ({NODE})"
    assert "not a failure of the training" in finding.message


def _judged(out: Path, tmp_path: Path) -> dict[str, object]:
    from analyzer.ingest import ingest
    from analyzer.job import Job
    from analyzer.sources import open_source
    from rules.engine import evaluate
    from rules.ruleset import load_ruleset

    result = ingest(open_source(str(out)), cache_dir=tmp_path / "cache")
    assert result.summary.get("skipped", []) in ([], 0), result.summary
    return {r.rule: r for r in evaluate(Job(result.dataset, result.summary), load_ruleset())}


@pytest.mark.usefixtures("torch_available")
def test_a_script_with_its_own_sigterm_handler_keeps_it(tmp_path: Path) -> None:
    """The script's handler is set before the window starts: the collector leaves SIGTERM
    alone, the script's handler runs and decides the exit (here: 7 after its own cleanup)."""
    code = (
        TRAIN.replace(
            "model = nn.Linear",
            textwrap.dedent("""\
        def stop(signo, frame):
            print("script handler", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, stop)
        model = nn.Linear"""),
        )
        + "train(6)\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(30)\n"
    )
    proc, out = _run(tmp_path, code)
    assert proc.returncode == 7, proc.stderr[-3000:]
    assert "script handler" in proc.stdout
    assert len(list(out.glob("*.pt.trace.json.gz"))) == 1  # sys.exit: the normal exit wrote it


@pytest.mark.usefixtures("torch_available")
def test_drain_sees_gloo_threads_and_returns_once_they_are_parked(tmp_path: Path) -> None:
    """A one-rank gloo DDP job: gloo's worker threads are found by name, and once the last
    collective is done they park, so the drain returns True well before its time-out."""
    code = TRAIN + textwrap.dedent(f"""\
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel
        from stepscope.collectors import exits
        dist.init_process_group(
            "gloo", init_method="file://{tmp_path / "store"}", rank=0, world_size=1
        )
        model = DistributedDataParallel(nn.Linear(8, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        train(3)
        dist.barrier()
        t0 = time.monotonic()
        print(len(exits.gloo_threads()), exits.drain_gloo_threads(timeout_s=5.0),
              time.monotonic() - t0 < 2.0)
        dist.destroy_process_group()
        """)
    script = tmp_path / "drain.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in (trace.ENV_DIR, "PYTHONPATH")}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    threads, drained, quick = proc.stdout.split()
    assert int(threads) >= 1 and drained == "True" and quick == "True", proc.stdout


def test_drain_is_free_in_a_process_without_torch_distributed() -> None:
    if "torch.distributed" in sys.modules:
        pytest.skip("this interpreter imported torch.distributed: another test covers that case")
    assert exits.drain_gloo_threads(timeout_s=0.05) is True

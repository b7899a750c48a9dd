"""stepscope.collectors.profiling (the training-script helper): free when disabled (no torch
at all), traces named per rank when enabled, in one process and in a real 2-rank DDP job. (The
bundled sample is recorded by ``stepscope run`` now, not by this helper:
tests/test_sample_job.py checks it.)"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from stepscope.collectors import profiling
from tests.support.torch_env import require_torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def torch_available() -> None:
    """Skip a test that needs torch, or fail with ``STEPSCOPE_REQUIRE_TORCH=1``."""
    require_torch(
        "the enabled path of stepscope.collectors.profiling", "tests/test_profiling_helper.py"
    )


def test_disabled_path_never_imports_torch() -> None:
    """Run where ``import torch`` fails, so any torch import on this path is an error."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # make `import torch` raise ImportError
        from stepscope.collectors.profiling import profile_training
        with profile_training(enabled=False) as prof:
            for x in prof.iterate(range(3)):
                with prof.data_loading():
                    pass
                with prof.label("forward"):
                    pass
                prof.step()
        assert prof.torch_profiler is None and prof.trace_files == []
        assert [m for m in sys.modules if m.startswith("torch.")] == []
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_disabled_by_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSCOPE_PROFILE", "0")
    assert profiling.profile_training(enabled=None).enabled is False
    monkeypatch.setenv("STEPSCOPE_PROFILE", "1")
    assert profiling.profile_training(enabled=None).enabled is True
    monkeypatch.setenv("STEPSCOPE_PROFILE", "0")
    assert profiling.profile_training(enabled=True).enabled is True  # explicit wins


def test_iterate_yields_everything_when_disabled() -> None:
    with profiling.profile_training(enabled=False) as prof:
        assert list(prof.iterate([1, 2, 3])) == [1, 2, 3]
        assert list(prof.iterate([])) == []


def test_default_out_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(profiling, "SAGEMAKER_TENSORBOARD_DIR", tmp_path / "absent")
    for k in [k for k in os.environ if k.startswith("SM_")]:
        monkeypatch.delenv(k)
    assert profiling.default_out_dir() == Path("stepscope-traces")
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-2")
    assert profiling.default_out_dir() == tmp_path / "absent"
    monkeypatch.delenv("SM_CURRENT_HOST")
    (tmp_path / "absent").mkdir()
    assert profiling.default_out_dir() == tmp_path / "absent"
    assert profiling.profile_training(out_dir=tmp_path / "x").out_dir == tmp_path / "x"


def test_rank_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")  # no process group initialised in this test process
    assert profiling.trace_rank() == 3
    monkeypatch.setenv("RANK", "junk")
    assert profiling.trace_rank() == 0
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-5")
    assert profiling.trace_host() == "algo-5"


@pytest.mark.usefixtures("torch_available")
def test_enabled_writes_one_gzip_trace_per_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "0")
    with profiling.profile_training(
        out_dir=tmp_path, wait=1, warmup=1, active=2, host="algo-1"
    ) as prof:
        for _ in prof.iterate(range(5)):
            with prof.label("forward"):
                sum(range(1000))
            prof.step()
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files == prof.trace_files
    assert re.fullmatch(r"algo-1_rank0\.\d+\.pt\.trace\.json\.gz", files[0].name)
    with gzip.open(files[0], "rt") as f:
        names = {e.get("name") for e in json.load(f)["traceEvents"]}
    assert {"ProfilerStep#2", "ProfilerStep#3", "forward", profiling.DATA_LOADING_LABEL} <= names


@pytest.mark.usefixtures("torch_available")
def test_enabled_trace_ingests_with_steps_and_data_loader_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the helper writes is what stepscope reads: the steps table has the profiled
    ProfilerStep numbers under the file's rank, and the helper's data-loading label counts
    as the loop's wait for its next batch."""
    from analyzer.analyses.steps import dataloader_waits, step_durations
    from analyzer.ingest import ingest
    from analyzer.sources import open_source

    sleep_s = 0.02

    def slow_loader(n: int) -> Any:
        for i in range(n):
            time.sleep(sleep_s)
            yield i

    monkeypatch.setenv("RANK", "3")  # no process group: the rank comes from RANK
    out = tmp_path / "traces"
    with profiling.profile_training(out_dir=out, wait=1, warmup=1, active=3, host="algo-2") as prof:
        for _ in prof.iterate(slow_loader(6)):
            with prof.label("forward"):
                sum(range(1000))
            prof.step()
    assert [p.name.split(".")[0] for p in prof.trace_files] == ["algo-2_rank3"]

    ds = ingest(open_source(str(out)), cache_dir=tmp_path / "cache").dataset
    steps = step_durations(ds)
    assert set(steps["source"]) == {"kineto"}
    assert steps["rank"].tolist() == [3, 3, 3]
    assert steps["step"].tolist() == [2, 3, 4]
    assert (steps["dur_ns"] > 0).all()
    assert ds.to_pandas("kineto_traces")["node"].tolist() == ["algo-2"]

    waits = dataloader_waits(ds, steps)
    assert waits[["rank", "step"]].values.tolist() == [[3, 2], [3, 3], [3, 4]]
    # each step's batch fetch (one sleep) runs inside that step's ProfilerStep window
    assert (waits["wait_ms"] >= sleep_s * 1000 * 0.9).all(), waits
    assert (waits["share_pct"] > 0).all() and (waits["share_pct"] <= 100).all()


@pytest.mark.usefixtures("torch_available")
def test_disabled_path_never_imports_torch_when_installed() -> None:
    """With torch importable, the disabled helper still leaves torch (and torch.profiler)
    out of ``sys.modules``."""
    code = textwrap.dedent(
        """
        import sys
        from stepscope.collectors.profiling import profile_training
        with profile_training(enabled=False) as prof:
            for x in prof.iterate(range(3)):
                with prof.label("forward"):
                    pass
                prof.step()
        assert prof.torch_profiler is None and prof.trace_files == []
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- several ranks


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel
    from stepscope.collectors.profiling import profile_training

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    model = DistributedDataParallel(nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def batches(n):
        for _ in range(n):
            time.sleep(0.01)
            yield torch.randn(4, 8)

    with profile_training(out_dir=sys.argv[1], wait=1, warmup=1, active=3, host="algo-1") as prof:
        for x in prof.iterate(batches(7)):
            with prof.label("forward"):
                loss = model(x).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            prof.step()
    dist.barrier()  # no rank tears gloo down while the other still talks to it
    dist.destroy_process_group()
    # no interpreter finalization, so no teardown abort at exit (docs/collect.md, "The exit abort")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
    """
)


@pytest.mark.usefixtures("torch_available")
def test_enabled_in_a_ddp_job_writes_one_trace_per_rank(tmp_path: Path) -> None:
    """The helper inside a real 2-process gloo DDP script (what the bundled sample used to be
    recorded with; it now comes from ``stepscope run``): each rank writes its own trace, named
    by its process-group rank, with the distributed info, the gradient all-reduce, memory
    events and the helper's labels, and stepscope reads both ranks back under their node."""
    from analyzer.analyses.steps import step_durations
    from analyzer.ingest import ingest
    from analyzer.sources import open_source

    script = tmp_path / "train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "traces"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPSCOPE_RUN_", "SM_"))}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = sorted(out.glob("*.pt.trace.json.gz"))
    assert [p.name.split(".")[0] for p in files] == ["algo-1_rank0", "algo-1_rank1"]
    for rank, path in enumerate(files):
        with gzip.open(path, "rt") as f:
            trace = json.load(f)
        info = trace["distributedInfo"]
        assert (info["rank"], info["world_size"], info["backend"]) == (rank, 2, "gloo")
        names = {e.get("name") for e in trace["traceEvents"]}
        assert {"ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"} <= names
        assert "ProfilerStep#5" not in names  # active=3: the window closes
        assert {"gloo:all_reduce", "forward", profiling.DATA_LOADING_LABEL, "[memory]"} <= names

    ds = ingest(open_source(str(out)), cache_dir=tmp_path / "cache").dataset
    steps = step_durations(ds)
    assert sorted(zip(steps["rank"], steps["step"], strict=True)) == [
        (r, s) for r in (0, 1) for s in (2, 3, 4)
    ]
    assert set(ds.to_pandas("kineto_traces")["node"]) == {"algo-1"}

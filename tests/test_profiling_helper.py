"""rules.profiling: free when disabled (no torch at all), traces named per rank when enabled;
and the bundled sample job recorded through it holds what INJECTED.json says."""

from __future__ import annotations

import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from rules import profiling
from tests.support.torch_env import require_torch

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"


@pytest.fixture
def torch_available() -> None:
    """Skip a test that needs torch, or fail with ``STEPSCOPE_REQUIRE_TORCH=1``."""
    require_torch("the enabled path of rules.profiling", "tests/test_profiling_helper.py")


def test_disabled_path_never_imports_torch() -> None:
    """Run where ``import torch`` fails, so any torch import on this path is an error."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # make `import torch` raise ImportError
        from rules.profiling import profile_training
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
        from rules.profiling import profile_training
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


# --------------------------------------------------------------------------- the sample


def _sample() -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    if not (SAMPLE / "INJECTED.json").is_file():
        pytest.skip("samples/sample-job not recorded (see samples/README.md)")
    injected = json.loads((SAMPLE / "INJECTED.json").read_text())
    traces = {}
    for p in sorted((SAMPLE / "tensorboard").glob("*.pt.trace.json.gz")):
        with gzip.open(p, "rt") as f:
            t = json.load(f)
        traces[t["distributedInfo"]["rank"]] = t
    return injected, traces


def _durations_ms(trace: dict[str, Any], pred: Any) -> list[float]:
    return [e["dur"] / 1000 for e in trace["traceEvents"] if e.get("ph") == "X" and pred(e["name"])]


def test_sample_job_holds_the_injected_truths() -> None:
    injected, traces = _sample()
    ws = injected["world_size"]
    assert sorted(traces) == list(range(ws))
    for rank, t in traces.items():
        info = t["distributedInfo"]
        assert (info["rank"], info["world_size"], info["backend"]) == (rank, ws, "gloo")
        steps = sorted(
            int(e["name"].split("#")[1])
            for e in t["traceEvents"]
            if e.get("ph") == "X" and e["name"].startswith("ProfilerStep#")
        )
        assert steps == injected["profiled_steps"]
        names = {e.get("name") for e in t["traceEvents"]}
        assert {"gloo:all_reduce", "c10d::allreduce_"} <= names
        assert "[memory]" in names  # profile_memory=True
        loader = _durations_ms(
            t, lambda n: n.startswith("enumerate(DataLoader)#") and n.endswith("__next__")
        )
        assert len(loader) >= len(steps)
        assert statistics.median(loader) >= injected["dataloader_sleep_ms_per_batch"]
    straggler = injected["straggler_rank"]
    extra = injected["straggler_extra_ms_per_step"]
    for rank, t in traces.items():
        wait = statistics.median(_durations_ms(t, lambda n: n == "gloo:all_reduce"))
        if rank == straggler:
            assert wait < extra / 3
        else:  # the others wait for the straggler inside the collective
            assert extra * 0.8 <= wait <= extra * 2


def test_sample_job_system_metrics() -> None:
    injected, _ = _sample()
    files = sorted((SAMPLE / "profiler-output" / "system" / "incremental").glob("*/*.algo-1.json"))
    assert files
    recs = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert {r["NodeId"] for r in recs} == {"algo-1"}
    dims = {(r["Type"], r["Dimension"] or r["Name"]) for r in recs}
    assert {
        ("cpu", "CPUUtilization"),
        ("cpu", "I/OWaitPercentage"),
        ("memory", "MemoryUsedPercent"),
    } <= dims
    mem = [r for r in recs if r["Name"] == "MemoryUsedPercent"]
    assert len(mem) == injected["system_metrics_samples"]
    t0 = injected["training_start_epoch_s"]
    assert min(r["Timestamp"] for r in recs) < t0 < max(r["Timestamp"] for r in recs)
    total = sum(f.stat().st_size for f in SAMPLE.rglob("*") if f.is_file())
    assert total < 1_500_000

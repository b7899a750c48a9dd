"""Steps of traces with no ``ProfilerStep``: the script's own step markers.

A custom loop, a profiler started without a schedule, or a serving loop has no
``ProfilerStep#N``; its steps are then the CPU-side ``record_function`` ranges named as
steps (``step``, ``train_step``, ``step[DECODE bs=32]``, ``Step#3``; ``analyzer.ingest.kineto.
STEP_LIKE_RE``). The first test records such a trace with real torch (CPU); the second is a
minimal trace in Kineto's documented layout (``ph: X`` events of category
``user_annotation``), so it runs without torch.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from analyzer.analyses.steps import step_durations
from analyzer.ingest import ingest
from analyzer.sources import open_source
from tests.support.torch_env import HAS_TORCH, require_torch

REPO = Path(__file__).resolve().parents[1]


def _steps(folder: Path, cache: Path) -> list[tuple[int, int]]:
    ds = ingest(open_source(str(folder)), cache_dir=cache).dataset
    steps = step_durations(ds)
    return sorted(zip(steps["rank"].astype(int), steps["step"].astype(int), strict=True))


def test_a_loop_without_a_schedule_gets_its_marked_steps(tmp_path: Path) -> None:
    require_torch("recording a trace without a schedule", "tests/test_kineto_step_markers.py")
    assert HAS_TORCH
    code = textwrap.dedent(
        """
        import sys
        import torch
        from torch.profiler import profile, record_function, ProfilerActivity

        model = torch.nn.Linear(16, 4)
        with profile(activities=[ProfilerActivity.CPU]) as prof:   # no schedule, no prof.step()
            for _ in range(5):
                with record_function("step[DECODE bs=32]"):
                    model(torch.randn(32, 16)).sum().backward()
        prof.export_chrome_trace(sys.argv[1])
        """
    )
    out = tmp_path / "job" / "algo-1_rank0.1.pt.trace.json"
    out.parent.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {e.get("name") for e in json.loads(out.read_text())["traceEvents"]}
    assert not any(str(n).startswith("ProfilerStep#") for n in names)
    assert _steps(tmp_path / "job", tmp_path / "cache") == [(0, n) for n in range(1, 6)]


def test_numbered_markers_keep_their_numbers_and_profiler_steps_win(tmp_path: Path) -> None:
    def ev(name: str, ts: float, cat: str = "user_annotation") -> dict[str, object]:
        return {"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": 50.0}

    def write(name: str, events: list[dict[str, object]]) -> None:
        doc = {"distributedInfo": {"rank": 0, "world_size": 1}, "traceEvents": events}
        path = tmp_path / name / "algo-1_rank0.1.pt.trace.json.gz"
        path.parent.mkdir()
        path.write_bytes(gzip.compress(json.dumps(doc).encode()))

    # numbered markers: their numbers; an optimizer's own range is not a step
    write(
        "numbered",
        [
            ev("train_step 7", 0),
            ev("Optimizer.step#SGD.step", 10),
            ev("train_step 8", 100),
            ev("train_step 9", 200),
        ],
    )
    assert _steps(tmp_path / "numbered", tmp_path / "c1") == [(0, 7), (0, 8), (0, 9)]
    # a GPU-side copy of a marker is not a step; names that only start like one neither
    write(
        "gpu",
        [
            ev("step", 0),
            ev("step", 5, cat="gpu_user_annotation"),
            ev("stepper", 50),
            ev("step", 100),
        ],
    )
    assert _steps(tmp_path / "gpu", tmp_path / "c2") == [(0, 1), (0, 2)]
    # ProfilerStep present: the script's markers are not steps
    write("profiler", [ev("ProfilerStep#3", 0), ev("step", 1), ev("ProfilerStep#4", 100)])
    assert _steps(tmp_path / "profiler", tmp_path / "c3") == [(0, 3), (0, 4)]

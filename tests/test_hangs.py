"""Hangs (issue 22): the stall watchdog, the hang dumps' ingest (and the restricted unpickler
for PyTorch's own Flight Recorder pickles), the analysis and CollectiveHang, on dumps with a
known answer. Real hangs recorded under ``stepscope run`` are in tests/test_hang_recorded.py
(they need torch)."""

from __future__ import annotations

import json
import os
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from analyzer.analyses.hangs import hang_mismatches, rank_locations
from analyzer.ingest import ingest
from analyzer.ingest.hang_dumps import plain_unpickle
from analyzer.job import Job
from analyzer.sources import open_source
from rules.engine import evaluate
from rules.ruleset import load_ruleset
from stepscope.collectors import hang
from tests.support.hang_dumps import dump, entry, history


def _job(root: Path, tmp: Path) -> Job:
    return Job.open(open_source(str(root)), cache_dir=str(tmp / "cache"))


def test_a_rank_that_skipped_a_collective_is_named_with_its_line(tmp_path: Path) -> None:
    """Rank 1 skipped the metric all-reduce #7 (group 1) and waits in the next gradient
    all-reduce #8 (group 0), which rank 0, waiting in #7, never reaches: a circular wait
    whose cause is #7."""
    root = tmp_path / "job"
    dump(root, 0, [*history(), entry(12, "0", 7), entry(13, "1", 7)],
          {"0": (7, 7), "1": (7, 6)}, 54, "dist.all_reduce(logged, group=metrics)")  # fmt: skip
    dump(root, 1, [*history(), entry(12, "0", 7), entry(13, "0", 8)],
          {"0": (8, 7), "1": (6, 6)}, 47, "loss.backward()")  # fmt: skip
    job = _job(root, tmp_path)
    stuck = hang_mismatches(job.dataset)
    assert [(r.group, r.seq, r.kind, r.ranks_missing, r.cause) for r in stuck.itertuples()] == [
        ("1", 7, "missing", [1], True),
        ("0", 8, "missing", [0], False),
    ]
    where = rank_locations(job.dataset).set_index("rank")
    assert (where.loc[1, "file"], where.loc[1, "line"]) == ("/job/train.py", 47)

    (result,) = [r for r in evaluate(job, load_ruleset()) if r.rule == "CollectiveHang"]
    (f,) = result.findings
    assert f.severity == "error" and f.where == "rank 1 on algo-1, process group 1"
    assert f.title == "Rank 1 never entered gloo:all_reduce #7 of process group 1 (ranks 0, 1)"
    assert "rank 1 was at train.py:47 in main: `loss.backward()`" in f.message
    assert "holds up #8 of process group 0 (default_pg)" in f.message
    assert f.evidence["waited_s"] == pytest.approx(5.0 - 13e-6, abs=1e-3)
    assert f.evidence["locations"]["1"]["code"] == "loss.backward()"
    # rank 0 waited about 5 s for it: one GPU idle, 5 / 3600 GPU-hours so far
    assert f.evidence["waiting_ranks"] == 1
    assert f.evidence["idle_gpu_hours"] == pytest.approx(5.0 / 3600, abs=1e-6)
    assert "1 waiting rank × 5.0 s: 0.00139 GPU-hours idle so far" in f.message


def test_a_lagging_completion_mark_does_not_hide_the_missing_rank(tmp_path: Path) -> None:
    """Seen under load: gloo's worker thread had not yet marked rank 1's last metric
    all-reduce (#6) completed when the dump was taken; rank 0 had. #6 is done for the
    group (a collective completes on all its ranks together): #7 is the stuck one."""
    root = tmp_path / "job"
    dump(root, 0, [*history(), entry(12, "0", 7), entry(13, "1", 7)],
         {"0": (7, 7), "1": (7, 6)}, 54, "dist.all_reduce(logged, group=metrics)")  # fmt: skip
    dump(root, 1, [*history(), entry(12, "0", 7), entry(13, "0", 8)],
         {"0": (8, 7), "1": (6, 5)}, 47, "loss.backward()")  # fmt: skip
    stuck = hang_mismatches(_job(root, tmp_path).dataset)
    assert next((r.group, r.seq, r.kind, r.ranks_missing) for r in stuck.itertuples()) == (
        "1", 7, "missing", [1],
    )  # fmt: skip


def test_another_op_at_the_same_place_is_a_mismatch_and_names_the_odd_rank(
    tmp_path: Path,
) -> None:
    root = tmp_path / "job"
    dump(root, 0, [*history(), entry(12, "0", 7), entry(13, "1", 7)],
          {"0": (7, 7), "1": (7, 6)}, 54, "dist.all_reduce(logged, group=metrics)")  # fmt: skip
    dump(root, 1, [*history(), entry(12, "0", 7), entry(13, "1", 7, op="gloo:broadcast")],
          {"0": (7, 7), "1": (7, 6)}, 52, "dist.broadcast(logged, 0, group=metrics)")  # fmt: skip
    job = _job(root, tmp_path)
    (row,) = hang_mismatches(job.dataset).itertuples()
    assert (row.group, row.seq, row.kind, row.ranks_odd) == ("1", 7, "op", [1])
    (f,) = next(r for r in evaluate(job, load_ruleset()) if r.rule == "CollectiveHang").findings
    assert f.where.startswith("rank 1 on algo-1") and "gloo:broadcast" in f.message


def test_every_rank_in_and_none_done_is_the_transport(tmp_path: Path) -> None:
    root = tmp_path / "job"
    for rank in (0, 1):
        dump(root, rank, [*history(), entry(12, "0", 7)], {"0": (7, 6), "1": (6, 6)}, 40,
              "loss.backward()")  # fmt: skip
    (row,) = hang_mismatches(_job(root, tmp_path).dataset).itertuples()
    assert (row.group, row.seq, row.kind) == ("0", 7, "stuck")


def test_a_stall_outside_communication_is_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "job"
    for rank in (0, 1):
        dump(root, rank, history(), {"0": (6, 6), "1": (6, 6)}, 30, "batch = next(it)")
    job = _job(root, tmp_path)
    assert hang_mismatches(job.dataset).empty
    (f,) = next(r for r in evaluate(job, load_ruleset()) if r.rule == "CollectiveHang").findings
    assert f.severity == "warning" and "outside communication" in f.message
    assert "rank 0 was at train.py:30 in main: `batch = next(it)`" in f.message


def test_no_dumps_no_verdict(tmp_path: Path) -> None:
    (tmp_path / "job" / "exits").mkdir(parents=True)
    (tmp_path / "job" / "exits" / "algo-1_rank0.json").write_text('{"rank": 0}')
    job = _job(tmp_path / "job", tmp_path)
    result = next(r for r in evaluate(job, load_ruleset()) if r.rule == "CollectiveHang")
    assert not result.findings and "no hang dumps" in (result.skipped_reason or "")


class _RunsCode:
    """What a hostile pickle carries: loading it would run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_the_restricted_unpickler_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = pickle.dumps({"entries": [_RunsCode(marker)]})
    with pytest.raises(pickle.UnpicklingError, match="refused: the pickle asks for"):
        plain_unpickle(evil)
    # in a job folder: a counted skip with the reason, the command never run, the rest kept
    root = tmp_path / "job"
    root.mkdir()
    (root / "nccl_trace_rank_1").write_bytes(evil)
    plain = {"version": "2.10", "pg_status": {"0": {"last_completed_collective": 3}}}
    plain["entries"] = [entry(i, "0", i + 1) for i in range(3)]
    (root / "nccl_trace_rank_0").write_bytes(pickle.dumps(plain))
    result = ingest(open_source(str(root)), cache_dir=tmp_path / "cache")
    assert not marker.exists()
    skipped = result.summary["skipped"]
    assert [Path(s["path"]).name for s in skipped] == ["nccl_trace_rank_1"]
    assert "refused" in skipped[0]["reason"]
    entries = result.dataset.table("fr_entries").to_pandas()
    assert entries["rank"].tolist() == [0, 0, 0] and entries["seq"].tolist() == [1, 2, 3]


# --------------------------------------------------------------------------- the watchdog


def test_stall_timeout_values() -> None:
    assert hang.parse_stall_timeout("auto") is None and hang.parse_stall_timeout(None) is None
    assert hang.parse_stall_timeout("off") == 0.0 and hang.parse_stall_timeout("2.5") == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ValueError, match="expected seconds > 0"):
            hang.parse_stall_timeout(bad)


def test_automatic_timeout_follows_the_steps() -> None:
    dog = hang.Watchdog(Path("/nonexistent"), "n", None)
    assert dog.timeout_s() == hang.DEFAULT_MIN_S
    dog.intervals = [30.0] * 5  # 30 s steps: 20 of them
    assert dog.timeout_s() == 600.0


def test_watchdog_dumps_once_and_the_training_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this interpreter (no torch): the dump has every thread's stack and says why it has
    no Flight Recorder buffer; the watched thread is never stopped; a second stall writes
    nothing more."""
    dog = hang.Watchdog(tmp_path, "algo-1", 0.2)
    dog.beat()
    done = threading.Event()

    def training() -> None:  # stalls, then carries on
        time.sleep(0.6)
        done.set()

    worker = threading.Thread(target=training, name="training")
    worker.start()
    dog.start()
    worker.join(5)
    assert done.is_set()
    deadline = time.monotonic() + 5
    while dog.dumped is None and time.monotonic() < deadline:
        time.sleep(0.05)
    dog.stop()
    (path,) = (tmp_path / "hangs").glob("algo-1_rank*.json")
    assert path == dog.dumped
    doc = json.loads(path.read_text())
    assert doc["steps_seen"] == 1 and doc["stalled_s"] >= 0.2
    assert doc["flight_recorder"] is None and doc["flight_recorder_error"]
    frames = {t["thread"]: t["frames"] for t in doc["threads"]}
    assert "MainThread" in frames and frames["MainThread"][-1]["file"].endswith(".py")
    assert "stepscope-watchdog" not in frames
    assert "stall watchdog: rank" in capsys.readouterr().err
    time.sleep(0.5)
    assert len(list((tmp_path / "hangs").glob("*.json"))) == 1

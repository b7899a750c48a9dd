"""``stepscope export --perfetto``: every rank on one clock, stepscope's tracks beside them,
read back by stepscope's own ingest and by HTA's parser.

On the bundled sample (2 ranks, one host, rank 1 the injected straggler), on a copy of it
whose rank 1 is moved to another host with its clock 250 ms ahead, and on the real NCCL
traces of two ranks of a 128-rank job in ``../shared/fixtures/kineto/sampled_128rank``
(their clocks differ by 170 µs), read in place.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from click.testing import CliRunner

from analyzer.job import Job
from analyzer.sources import open_source
from stepscope.cli import cli
from stepscope.present.perfetto import (
    CRITICAL_PATH_PID,
    CULPRIT_PID,
    FINDINGS_PID,
    write_timeline,
)
from tests.support.fixtures import fixtures_dir

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
MS = 1_000_000
SHIFT_NS = 250 * MS
TRACKS = {CULPRIT_PID, FINDINGS_PID, CRITICAL_PATH_PID}


def _open(folder: Path, cache: Path) -> Job:
    return Job.open(open_source(str(folder)), cache_dir=str(cache))


def _export(job: Job, **kw: Any) -> dict[str, Any]:
    buf = io.BytesIO()
    write_timeline(job, buf, **kw)
    doc: dict[str, Any] = orjson.loads(buf.getvalue())
    return doc


def _load(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    doc: dict[str, Any] = orjson.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    return doc


def _rank_events(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in doc["traceEvents"] if e["ph"] != "M" and e["pid"] not in TRACKS]


def _meta(doc: dict[str, Any], name: str) -> dict[int, Any]:
    return {e["pid"]: e["args"] for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == name}


def _abs_ns(doc: dict[str, Any], ev: dict[str, Any]) -> int:
    """An event's time as stepscope's ingest reads it back."""
    return int(doc["baseTimeNanoseconds"]) + round(ev["ts"] * 1000)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Job:
    return _open(SAMPLE, tmp_path_factory.mktemp("sample-cache"))


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Job:
    """The sample with rank 1 on host algo-2, whose clock is SHIFT_NS ahead."""
    folder = tmp_path_factory.mktemp("shifted")
    for p in SAMPLE.glob("*.pt.trace.json.gz"):
        doc = json.loads(gzip.decompress(p.read_bytes()))
        name = p.name
        if doc["distributedInfo"]["rank"] == 1:
            doc["baseTimeNanoseconds"] += SHIFT_NS
            name = name.replace("algo-1_", "algo-2_")
        (folder / name).write_bytes(gzip.compress(json.dumps(doc).encode(), compresslevel=1))
    return _open(folder, tmp_path_factory.mktemp("shifted-cache"))


@pytest.fixture(scope="module")
def nccl_folder() -> Path:
    return fixtures_dir("kineto", "sampled_128rank")


@pytest.fixture(scope="module")
def nccl(nccl_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Job:
    return _open(nccl_folder, tmp_path_factory.mktemp("nccl-cache"))


# -- the command ------------------------------------------------------------------------


def test_the_command_writes_one_gzipped_process_per_rank(tmp_path: Path) -> None:
    out = tmp_path / "timeline"  # no suffix: .json.gz is added
    res = CliRunner().invoke(
        cli,
        ["export", str(SAMPLE), "--perfetto", str(out), "--cache", str(tmp_path / "c")],
    )
    assert res.exit_code == 0, res.stderr
    path = tmp_path / "timeline.json.gz"
    assert path.is_file() and not list(tmp_path.glob(".timeline*"))  # no partial file left
    assert res.stderr.startswith(f"wrote {path} ") and res.stderr.count("\n") == 1
    assert "2 ranks" in res.stderr and "8 culprit steps" in res.stderr
    doc = _load(path)
    names = _meta(doc, "process_name")
    assert names[0] == {"name": "rank 0 (algo-1)"} and names[1] == {"name": "rank 1 (algo-1)"}
    assert names[CULPRIT_PID]["name"] == "stepscope: who held the others back"
    job = _open(SAMPLE, tmp_path / "c")
    per_pid = Counter(e["pid"] for e in _rank_events(doc))
    assert per_pid == {r: job.rank_events(r).num_rows for r in (0, 1)}
    # each rank's threads are its own, named, and never shared with another process
    threads = {(e["pid"], e["tid"]) for e in doc["traceEvents"] if e["pid"] in (0, 1)}
    assert len({t for _, t in threads}) == len(threads)
    thread_names = [
        e["args"]["name"]
        for e in doc["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == 1
    ]
    assert any(n.startswith("thread ") for n in thread_names), thread_names
    # the findings are markers at the step they name
    marks = [e for e in doc["traceEvents"] if e["pid"] == FINDINGS_PID and e["ph"] == "i"]
    assert f"{len(marks)} findings" in res.stderr and marks
    assert all(e["s"] == "g" and e["args"]["message"] for e in marks)
    straggler = [m for m in marks if m["args"]["evidence"].get("last_in_steps")]
    assert straggler and straggler[0]["args"]["placed_at"] == "step 2 of rank 1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ranks", "0,x"], "invalid value for '--ranks': 'x' is not a rank or a range"),
        (["--ranks", "3-1"], "the range ends before it starts"),
        (["--steps", "a:b"], "invalid value for '--steps'"),
        (["--ranks", "0,5-6"], "--ranks: no trace of ranks 5, 6 (the traces are of ranks 0-1)"),
        (["--steps", "30:40"], "--steps 30:40: no profiled step in that window"),
        (["--perfetto", "s3://bucket/t.json.gz"], "give a local file"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepscope",
            "export",
            str(SAMPLE),
            "--perfetto",
            str(out),
            "--cache",
            str(tmp_path / "c"),
            "--no-findings",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("stepscope: error: ") and proc.stderr.count("\n") == 1
    assert message in proc.stderr
    assert not out.exists()


# -- clocks ---------------------------------------------------------------------------


def test_the_clock_offset_of_another_host_is_subtracted(sample: Job, shifted: Job) -> None:
    offsets = shifted.cross_rank().offsets.set_index("rank")["offset_ns"]
    assert abs(int(offsets[1]) - SHIFT_NS) < MS  # the analysis finds the shift...
    doc = _export(shifted)
    applied = doc["otherData"]["clock"]["applied_offsets_ns"]
    assert applied == {"0": 0, "1": int(offsets[1])}  # ...the export says what it applied...
    assert "clock offset +25" in _meta(doc, "process_labels")[1]["labels"]
    # ...and rank 1's events land where they are on the unshifted recording, not 250 ms late
    plain = _export(sample)
    moved = sorted(_abs_ns(doc, e) for e in _rank_events(doc) if e["pid"] == 1)
    truth = sorted(_abs_ns(plain, e) for e in _rank_events(plain) if e["pid"] == 1)
    assert len(moved) == len(truth)
    assert max(abs(a - b) for a, b in zip(moved, truth, strict=True)) < MS
    # the waits are on the common clock too: rank 0 waits from its arrival to rank 1's
    waits = [e for e in doc["traceEvents"] if e.get("cat") == "stepscope.wait"]
    assert waits and all(e["args"]["rank"] == 0 and e["args"]["last_rank"] == 1 for e in waits)
    assert all(30 < e["args"]["wait_ms"] < 60 for e in waits)  # ~40 ms, never ~250 ms


def test_real_nccl_ranks_offsets_applied_exactly(nccl: Job) -> None:
    offsets = nccl.cross_rank().offsets.set_index("rank")["offset_ns"].to_dict()
    assert offsets[0] == 0 and offsets[1] != 0  # two hosts' clocks: 170 µs apart
    doc = _export(nccl)
    for rank in (0, 1):
        got = sorted(_abs_ns(doc, e) for e in _rank_events(doc) if e["pid"] == rank)
        raw = nccl.rank_events(rank).column("start_ns").to_pylist()
        assert got == sorted(t - offsets[rank] for t in raw)


# -- stepscope's tracks and the selection ----------------------------------------------


def test_culprit_track_names_the_late_rank_each_step(sample: Job) -> None:
    doc = _export(sample)
    culprits = sample.step_culprits()
    slices = [e for e in doc["traceEvents"] if e.get("cat") == "stepscope.culprit"]
    assert [e["args"]["step"] for e in slices] == culprits["step"].tolist()
    assert {e["name"] for e in slices} == {"rank 1: unprofiled time"}
    assert all(e["pid"] == CULPRIT_PID and e["dur"] > 100_000 for e in slices)  # a step: >100 ms


def test_no_culprit_track_without_matched_collectives(tmp_path: Path) -> None:
    """One rank alone (a single-rank NCCL trace): nothing to match, so no slice claims one."""
    job = _open(fixtures_dir("kineto", "nccl_2rank_rank0"), tmp_path)
    doc = _export(job)
    assert not [e for e in doc["traceEvents"] if e.get("cat", "").startswith("stepscope.")]
    assert doc["otherData"]["clock"]["applied_offsets_ns"] == {"0": 0}
    assert Counter(e["pid"] for e in _rank_events(doc)) == {0: job.rank_events(0).num_rows}


def test_rank_subset_and_step_window(sample: Job) -> None:
    doc = _export(sample, ranks=[0], steps=(3, 4))
    events = _rank_events(doc)
    assert {e["pid"] for e in events} == {0}
    assert 1 not in _meta(doc, "process_name")
    steps = sample.steps()
    mine = steps[(steps["rank"] == 0) & steps["step"].between(3, 4)]
    lo = int(mine["start_ns"].min())
    hi = int((mine["start_ns"] + mine["dur_ns"]).max())
    for e in events:  # every event overlaps rank 0's steps 3-4
        start = _abs_ns(doc, e)
        assert start <= hi and start + round(e.get("dur", 0) * 1000) >= lo
    full = Counter(e["pid"] for e in _rank_events(_export(sample)))
    assert 0 < len(events) < full[0] / 2  # 2 of 8 steps
    assert any(e["name"] == "ProfilerStep#3" for e in events)
    assert not any(e["name"] in ("ProfilerStep#2", "ProfilerStep#6") for e in events)
    culprit_steps = [
        e["args"]["step"] for e in doc["traceEvents"] if e.get("cat") == "stepscope.culprit"
    ]
    assert culprit_steps == [3, 4]
    waits = [e for e in doc["traceEvents"] if e.get("cat") == "stepscope.wait"]
    assert sorted(e["args"]["step"] for e in waits) == [3, 4]
    assert doc["otherData"]["ranks"] == [0] and doc["otherData"]["steps"] == [3, 4]


def test_a_critical_path_frame_becomes_a_track(shifted: Job) -> None:
    """The hook a critical-path analysis plugs into: segments on the ranks' own clocks are
    moved by each rank's offset like the events."""
    offset = int(shifted.cross_rank().offsets.set_index("rank")["offset_ns"][1])
    t = int(shifted.rank_events(1).column("start_ns")[0].as_py())
    frame = pd.DataFrame(
        {
            "rank": [1],
            "start_ns": [t],
            "end_ns": [t + 5 * MS],
            "category": ["gpu_compute"],
            "name": ["aten::mm"],
        }
    )
    doc = _export(shifted, critical_path=frame)
    (seg,) = [e for e in doc["traceEvents"] if e["pid"] == CRITICAL_PATH_PID and e["ph"] == "X"]
    assert seg["name"] == "gpu_compute"
    assert seg["args"] == {"rank": 1, "category": "gpu_compute", "event": "aten::mm"}
    assert _abs_ns(doc, seg) == t - offset and seg["dur"] == 5000.0
    # times already on the common clock are left as they are
    doc = _export(shifted, critical_path=frame, critical_path_clock_corrected=True)
    (seg,) = [e for e in doc["traceEvents"] if e["pid"] == CRITICAL_PATH_PID and e["ph"] == "X"]
    assert _abs_ns(doc, seg) == t


# -- read back ------------------------------------------------------------------------


def test_read_back_by_stepscope_ingest(nccl: Job, tmp_path: Path) -> None:
    """One trace, not a job (docs/cli-export.md): it parses with nothing skipped, every
    event of every rank is there, its ``pid`` the rank."""
    folder = tmp_path / "export"
    folder.mkdir()
    with gzip.open(folder / "timeline.json.gz", "wb") as f:
        write_timeline(nccl, f)
    back = _open(folder, tmp_path / "cache")
    assert back.summary.get("skipped") == []
    assert back.kineto_ranks == [0]  # distributedInfo.rank: the lowest rank exported
    events = back.kineto_events.to_pandas()
    per_pid = events[~events["pid"].isin(TRACKS)].groupby("pid").size().to_dict()
    assert per_pid == {r: nccl.rank_events(r).num_rows for r in (0, 1)}
    # the collectives' arguments survive (what the cross-rank analysis matches on)
    orig = nccl.rank_events(1).to_pandas()
    mine = events[events["pid"] == 1]
    for col in ("collective", "msg_bytes", "stream", "correlation", "process_group"):
        assert mine[col].notna().sum() == orig[col].notna().sum(), col
    assert sorted(back.steps()["step"].unique()) == [551, 552]


_HTA_READ = """
import json, sys
from hta.common.trace_parser import parse_trace_dataframe
from hta.configs.parser_config import ParserConfig
out = {}
for path in sys.argv[1:]:
    meta, df, _ = parse_trace_dataframe(path, ParserConfig.get_default_cfg())
    out[path] = {
        "rank": meta.get("distributedInfo", {}).get("rank"),
        "rows": {str(k): int(v) for k, v in df.groupby("pid").size().items()},
        "gpu_rows": {
            str(k): int(v) for k, v in df[df["stream"] >= 0].groupby("pid").size().items()
        },
    }
print(json.dumps(out))
"""


@pytest.mark.parametrize("which", ["sample", "nccl"])
def test_read_back_by_hta_parser(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """HTA's Kineto parser reads the export, and finds each rank's events (its own filter:
    complete events with a category) and GPU events as in that rank's own trace file."""
    if not PEERS_PYTHON.exists():
        pytest.skip("the peer env .venv-peers (HTA) is absent: make peers")
    folder = SAMPLE if which == "sample" else request.getfixturevalue("nccl_folder")
    job = request.getfixturevalue("sample" if which == "sample" else "nccl")
    out = tmp_path / "timeline.json.gz"
    with gzip.open(out, "wb") as f:
        write_timeline(job, f)
    originals = {}
    for p in sorted(folder.glob("*.json.gz")):
        originals[json.loads(gzip.decompress(p.read_bytes()))["distributedInfo"]["rank"]] = p
    proc = subprocess.run(
        [str(PEERS_PYTHON), "-c", _HTA_READ, str(out), *map(str, originals.values())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    mine = got.pop(str(out))
    assert mine["rank"] == min(originals)
    for rank, path in originals.items():
        theirs = got[str(path)]
        # the original's processes (the host process, each GPU) are the rank's one process
        assert mine["rows"][str(rank)] == sum(theirs["rows"].values())
        assert mine["gpu_rows"].get(str(rank), 0) == sum(theirs["gpu_rows"].values())
    if which == "nccl":
        assert all(mine["gpu_rows"][str(r)] > 0 for r in originals)  # kernels on streams
    assert str(CULPRIT_PID) in mine["rows"]  # stepscope's slices are complete events too


def test_one_step_without_findings_leaves_the_source_alone(tmp_path: Path) -> None:
    """``--steps 5 --no-findings -q``: one step, no markers, nothing said, and nothing
    written beside the traces (only OUT)."""
    before = sorted(p.name for p in SAMPLE.rglob("*"))
    res = CliRunner().invoke(
        cli,
        [
            "export", str(SAMPLE), "--perfetto", str(tmp_path / "t.json"), "--no-findings",
            "--cache", str(tmp_path / "c"), "--steps", "5", "-q",
        ],
    )  # fmt: skip
    assert res.exit_code == 0 and res.stderr == ""
    assert sorted(p.name for p in SAMPLE.rglob("*")) == before
    doc = _load(tmp_path / "t.json")
    assert doc["otherData"]["steps"] == [5, 5]
    assert not [e for e in doc["traceEvents"] if e["pid"] == FINDINGS_PID]


# -- the dashboard --------------------------------------------------------------------


def test_dashboard_offers_the_selected_step(
    sample: Job, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Communication page's "Who held the others back" offers one step's timeline, built
    by the same function as the command (Streamlit's AppTest: no browser, no server)."""
    from streamlit.testing.v1 import AppTest

    from dashboards import data
    from stepscope.present.dashboard_options import DashboardOptions
    from stepscope.present.perfetto import timeline_bytes

    data.clear()
    try:
        options = DashboardOptions(str(SAMPLE), cache_dir=str(tmp_path))
        monkeypatch.setattr(sys, "argv", ["app.py", *options.app_args()])
        at = AppTest.from_file(str(REPO / "dashboards" / "app.py"), default_timeout=180)
        at.run()
        at.switch_page("views/communication.py").run()
        assert not at.exception, [e.value for e in at.exception]
        pick = at.selectbox(key="comm-export-step")
        assert list(pick.options) == [str(s) for s in range(2, 10)]
        pick.set_value(5).run()
        assert not at.exception, [e.value for e in at.exception]
        (button,) = at.get("download_button")
        assert "step 5" in button.proto.label
    finally:
        data.clear()
    doc = orjson.loads(gzip.decompress(timeline_bytes(sample, steps=(5, 5))))
    assert doc["otherData"]["steps"] == [5, 5]
    steps = {e["name"] for e in _rank_events(doc) if e["name"].startswith("ProfilerStep#")}
    assert steps == {"ProfilerStep#5"}

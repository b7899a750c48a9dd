"""Known answers for hangs, from real 2-rank gloo jobs that hang on purpose under
``stepscope run --stall-timeout 3 -- torchrun ...`` (tests/support/hang_train.py).

* ``skip``: rank 1 skips the metric all-reduce of step 6 (process group 1); the report must
  name rank 1, that collective, and the line rank 1 was at (``loss.backward()`` of the next
  step, waiting in the gradient all-reduce rank 0 never reaches);
* ``other``: rank 1 broadcasts where rank 0 all-reduces: the mismatch, with both lines.

Each run: the watchdog of every rank writes its dump after 3 s without a step (the job goes
on hanging: the watchdog stops nothing); the test then stops the job. PyTorch's own
``fr_trace`` analyser, run on the same Flight Recorder buffers (written as the pickles it
reads), must find the same collectives. Needs torch (skips without it, fails under
``STEPSCOPE_REQUIRE_TORCH=1``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.torch_env import require_torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "support" / "hang_train.py"
LINES = SCRIPT.read_text().splitlines()


def _line_of(text: str) -> int:
    return next(i for i, line in enumerate(LINES, start=1) if text in line)


def _hang(work: Path, fault: str) -> Path:
    """Run the job until both ranks dumped, stop it, return its output folder."""
    out = work / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPSCOPE_")}
    command = [
        sys.executable, "-m", "stepscope.collectors.launcher", "--out", str(out),
        "--stall-timeout", "3", "--", sys.executable, "-m", "torch.distributed.run",
        "--standalone", "--nproc-per-node", "2", str(SCRIPT), "--fault", fault,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "hangs").glob("*.json"))) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the job ended instead of hanging"
        assert len(list((out / "hangs").glob("*.json"))) == 2, "no dumps within 120 s"
        # a stop, as SageMaker's: SIGTERM to the launcher, which passes it on; the ranks,
        # blocked in native code, still die of it (the collectors' SIGTERM watcher)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        _kill_tree(proc)
    assert err.count("stall watchdog: rank") == 2, err[-3000:]
    return out


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """Whatever is left of the job (only after a failure above)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=10)


def _report(out: Path, cache: Path) -> tuple[Any, Any]:
    from analyzer.job import Job
    from analyzer.sources import open_source
    from rules.engine import evaluate
    from rules.ruleset import load_ruleset

    job = Job.open(open_source(str(out)), cache_dir=str(cache))
    result = next(r for r in evaluate(job, load_ruleset()) if r.rule == "CollectiveHang")
    return job, result


def _fr_trace(out: Path, work: Path) -> str:
    """PyTorch's fr_trace on the dumps' Flight Recorder buffers, as the pickles it reads
    (gloo's buffer names no group members: the dump's own list of groups gives them)."""
    folder = work / "fr"
    folder.mkdir()
    for path in (out / "hangs").glob("*.json"):
        doc = json.loads(path.read_text())
        fr = doc["flight_recorder"]
        fr["pg_config"] = {
            g["name"]: {"name": g["name"], "desc": g["desc"], "ranks": json.dumps(g["ranks"])}
            for g in doc["process_groups"]
        }
        (folder / f"fr_trace_rank_{doc['rank']}").write_bytes(pickle.dumps(fr))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.flight_recorder.fr_trace", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(autouse=True)
def _torch() -> None:
    require_torch("the recorded hangs", "tests/test_hang_recorded.py")


def test_a_skipped_collective_names_the_rank_the_collective_and_the_line(tmp_path: Path) -> None:
    out = _hang(tmp_path, "skip")
    job, result = _report(out, tmp_path / "cache")
    (f,) = result.findings
    ev = f.evidence
    assert (ev["kind"], ev["process_group"], ev["ranks_missing"], ev["ranks_in"]) == (
        "missing", "1", [1], [0],
    )  # fmt: skip
    assert ev["op"] == "gloo:all_reduce" and ev["seq"] == 7  # step 6 is the group's 7th call
    loc = ev["locations"]["1"]
    assert Path(loc["file"]).name == SCRIPT.name
    assert loc["line"] == _line_of("loss.backward()") and loc["code"] == "loss.backward()"
    assert ev["waited_s"] >= 3.0
    assert [a["process_group"] for a in ev["also_stuck"]] == ["0"]  # the consequence
    assert f.where.startswith("rank 1 on ") and f.where.endswith("process group 1")

    # PyTorch's fr_trace finds the same two collectives not all ranks joined
    text = _fr_trace(out, tmp_path)
    found = {
        (m.group("group"), int(m.group("seq")), m.group("missing"))
        for m in re.finditer(
            r"Not all ranks joining collective, sequence number: (?P<seq>\d+).*?"
            r"group info: (?P<group>\d+)\S*.*?missing ranks: \{(?P<missing>[\d, ]+)\}",
            text,
            re.S,
        )
    }
    stuck = job.hang_mismatches()
    ours = {(r.group, int(r.seq), ", ".join(map(str, r.ranks_missing))) for r in stuck.itertuples()}
    assert found == ours == {("1", 7, "1"), ("0", 13, "0")}, text


def test_another_op_names_the_mismatch_and_both_lines(tmp_path: Path) -> None:
    out = _hang(tmp_path, "other")
    _, result = _report(out, tmp_path / "cache")
    (f,) = result.findings
    ev = f.evidence
    assert (ev["kind"], ev["process_group"], ev["seq"], ev["ranks_odd"]) == ("op", "1", 7, [1])
    assert "rank 0: gloo:all_reduce; rank 1: gloo:broadcast" in ev["detail"]
    assert ev["locations"]["1"]["line"] == _line_of("dist.broadcast(")
    assert ev["locations"]["0"]["line"] == _line_of("dist.all_reduce(logged")
    text = _fr_trace(out, tmp_path)
    assert re.search(
        r"Collective sequence number: 7 has errors.*?group info: 1.*?COLLECTIVE_TYPE_MISMATCH",
        text,
        re.S,
    ), text


def test_a_rank_that_raises_is_named_with_its_exception_and_line(tmp_path: Path) -> None:
    """Rank 1 raises at step 6 and the job fails. Without any log source, rank 1's exit
    record (``stepscope run``'s excepthook) names it: JobFailure says which rank raised
    what, and the script's line. Rank 0, blocked in a collective with rank 1, raises in turn
    (gloo: "Connection closed by peer"; or torchrun stops it first): that is a consequence,
    folded into the cause's finding; torchrun's agent, which raises too, is no rank."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPSCOPE_")}
    command = [
        sys.executable, "-m", "stepscope.collectors.launcher", "--out", str(out),
        "--", sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", "2", str(SCRIPT), "--fault", "raise", "--steps", "20",
    ]  # fmt: skip
    proc = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "ValueError: bad batch at step 6" in proc.stderr  # the traceback still prints
    from analyzer.job import Job
    from analyzer.sources import open_source
    from rules.engine import evaluate
    from rules.ruleset import load_ruleset

    job = Job.open(open_source(str(out)), cache_dir=str(tmp_path / "cache"))
    exits = job.process_exits().set_index("rank")
    assert exits.loc[1, "exception"] == "ValueError: bad batch at step 6"
    # rank 0 raised too, because rank 1 died: a consequence, in the cause's finding
    if 0 in exits.index and exits.loc[0, "exception"] is not None:
        assert "Connection closed by peer" in exits.loc[0, "exception"]
    result = next(r for r in evaluate(job, load_ruleset()) if r.rule == "JobFailure")
    (f,) = result.findings
    line = _line_of('raise ValueError(f"bad batch at step {step}")')
    assert f.title == f"Rank 1 raised ValueError at hang_train.py:{line}", f.title
    assert f.evidence["fields"]["rank"] == 1 and f.evidence["source"] == "exit_record"
    assert f.where.startswith("rank 1")
    assert 'raise ValueError(f"bad batch at step {step}")' in f.message
    if 0 in exits.index and exits.loc[0, "exception"] is not None:
        assert f.evidence["followed_by"] == ["rank 0 lost a peer (RuntimeError)"]

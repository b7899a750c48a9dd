"""Known answers for the cross-rank analysis, from real 4-rank gloo DDP runs recorded here.

Each run is ``tests/support/culprit_train.py`` (no profiling code) under ``stepscope run``:
rank 2 waits LOADER_MS more for its batch on the odd profiler steps, rank 3 computes
COMPUTE_MS more (matrix products) on the even ones. The analysis must name, step by step,
the rank the others waited for and what it did more than them.

* ``torchrun``: one ``stepscope run -- torchrun --nproc-per-node 4`` (the usual launch).
* ``shifted``: the four ranks started directly, each under its own ``stepscope run`` (as an
  MPI-style launcher does), rank 1 named as a second host (``SM_CURRENT_HOST=algo-2``, the
  others ``algo-1``) and its clock moved SHIFT_S ahead by Debian's libfaketime
  (``LD_PRELOAD``, wall clock only; the monotonic clock gloo's timeouts use is left alone):
  a real offset between the ranks' clocks, as between hosts, which the analysis must
  estimate within 1 ms and correct before it compares arrivals.

Needs torch (skips without it, fails under ``STEPSCOPE_REQUIRE_TORCH=1``) and, for the
shifted run, libfaketime (``make system-deps``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.torch_env import require_torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "support" / "culprit_train.py"
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
LOADER_MS, COMPUTE_MS, SHIFT_S = 60.0, 40.0, 0.2
STEPS = 20
WINDOW = "1:1:16"  # wait 1, warm up 1, record 16 steps: ProfilerStep#2..#17
PROFILED = list(range(2, 18))
# ProfilerStep#k is loop iteration k-1 (the step hook numbers from the first optimizer step),
# so the script's "even" iterations are the odd profiler steps
ARGS = [
    "--steps", str(STEPS), "--loader-rank", "2", "--loader-ms", str(LOADER_MS),
    "--loader-steps", "even", "--compute-rank", "3", "--compute-ms", str(COMPUTE_MS),
    "--compute-steps", "odd",
]  # fmt: skip
EXPECTED = {s: (2, "dataloader") if s % 2 == 1 else (3, "host") for s in PROFILED}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPSCOPE_", "FAKETIME"))}
    env.pop("LD_PRELOAD", None)
    return env


def _launcher(out: Path) -> list[str]:
    return [sys.executable, "-m", "stepscope.collectors.launcher", "--out", str(out)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def torchrun_job(tmp_path_factory: pytest.TempPathFactory) -> object:
    require_torch("the recorded cross-rank runs", "tests/test_cross_rank_recorded.py")
    work = tmp_path_factory.mktemp("torchrun")
    command = [
        *_launcher(work / "out"), "--steps", WINDOW, "--",
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", "4", str(SCRIPT), *ARGS,
    ]  # fmt: skip
    proc = subprocess.run(
        command,
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return _open(work)


@pytest.fixture(scope="module")
def shifted_job(tmp_path_factory: pytest.TempPathFactory) -> object:
    require_torch("the recorded cross-rank runs", "tests/test_cross_rank_recorded.py")
    if not FAKETIME.exists():
        pytest.skip(f"{FAKETIME} missing: `make system-deps` installs Debian's libfaketime")
    work = tmp_path_factory.mktemp("shifted")
    port = str(_free_port())
    procs = []
    script = [str(SCRIPT), *ARGS]
    for rank in range(4):
        env = _env() | {
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
            "LOCAL_RANK": str(rank), "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "4",
        }  # fmt: skip
        # rank 1 alone on a host of its own, with a clock of its own (the others share one)
        env["SM_CURRENT_HOST"] = "algo-2" if rank == 1 else "algo-1"
        if rank == 1:
            env |= {
                "LD_PRELOAD": str(FAKETIME),
                "FAKETIME": f"+{SHIFT_S}",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            }
        procs.append(
            subprocess.Popen(
                [*_launcher(work / "out"), "--steps", WINDOW, "--", sys.executable, *script],
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-4000:]
    return _open(work)


def _open(work: Path) -> object:
    from analyzer.job import Job
    from analyzer.sources import open_source

    return Job.open(open_source(str(work / "out")), cache_dir=str(work / "cache"))


def _check_culprits(job: object) -> None:
    culprits = job.step_culprits().set_index("step")  # type: ignore[attr-defined]
    assert sorted(culprits.index) == PROFILED, culprits
    # the data loader's wait per rank and step, as the trace measured it: a 60 ms sleep lasts
    # longer when four ranks share two cores (the sleeper is woken late), never shorter
    waits = job.dataloader_waits().set_index(["rank", "step"])["wait_ms"]  # type: ignore[attr-defined]
    excess_cols = [c for c in culprits.columns if c.startswith("excess_")]
    for step, (rank, cause) in EXPECTED.items():
        row = culprits.loc[step]
        assert (row["culprit"], row["cause"]) == (rank, cause), (step, row.to_dict())
        own = row[f"excess_{cause}_ns"] / 1e6
        total = float(row[excess_cols].sum()) / 1e6
        if cause == "dataloader":
            # the loader time rank 2 spent beyond the others, in the data-loader category
            slept = waits.loc[(2, step)]
            others = waits.loc[[(r, step) for r in (0, 1, 3)]].median()
            assert slept >= LOADER_MS, (step, slept)
            assert abs(own - (slept - others)) <= 0.05 * LOADER_MS, (step, own, slept, others)
        else:
            # 40 ms of matrix products by the wall clock: mostly CPU ops, the rest the Python
            # loop between them (unrecorded); the sum is the injected time
            assert row["cause_share_pct"] >= 60, (step, row.to_dict())
            assert COMPUTE_MS * 0.9 <= total <= COMPUTE_MS * 1.25, (step, total, row.to_dict())
        # the three other ranks each waited about that long for it: less where their own
        # work in the step took longer than the culprit's (four ranks share two cores here)
        waited = row["others_wait_ns"] / 1e6
        assert 3 * total * 0.6 <= waited <= 3 * total * 1.4, (step, waited, total)
    summary = job.culprit_summary().set_index("rank")  # type: ignore[attr-defined]
    assert sorted(summary.index) == [2, 3]
    half = len(PROFILED) // 2
    assert summary.loc[2, "cause"] == "dataloader" and summary.loc[2, "steps_last"] == half
    assert summary.loc[3, "cause"] == "host" and summary.loc[3, "steps_last"] == half


def test_culprit_and_cause_of_each_step_under_torchrun(torchrun_job: object) -> None:
    _check_culprits(torchrun_job)
    cross = torchrun_job.cross_rank()  # type: ignore[attr-defined]
    assert cross.mismatches.empty and cross.unpaired == 0
    assert set(cross.matches["ranks"]) == {4}
    # two calls a step (DDP's gradient all-reduce, the logged loss's), each on all 4 ranks
    assert len(cross.matches) == 2 * len(PROFILED)
    # gloo's records name no group: stepscope run's Flight Recorder record gives it
    assert cross.groups == {"0": "flight_recorder"}


def test_clock_offset_of_a_shifted_rank_is_estimated_and_corrected(shifted_job: object) -> None:
    cross = shifted_job.cross_rank()  # type: ignore[attr-defined]
    offsets = cross.offsets.set_index("rank")["offset_ns"]
    others = offsets.drop(1)
    assert others.nunique() == 1, offsets.to_dict()  # one host, one clock
    shift_ms = (offsets[1] - others.iloc[0]) / 1e6
    assert abs(shift_ms - SHIFT_S * 1000) < 1.0, offsets.to_dict()
    assert abs(cross.skew_ns / 1e6 - SHIFT_S * 1000) < 1.0
    # the arrivals compared after the correction: the same culprits as without a shift
    _check_culprits(shifted_job)


def test_gloo_calls_take_group_and_sequence_from_the_flight_recorder(tmp_path: Path) -> None:
    """gloo's trace records name no process group. A job with two groups (DDP's gradients on
    the default one, a logged metric on a group of its own: tests/support/hang_train.py with
    no fault): ``stepscope run`` writes the Flight Recorder buffer beside each trace, and
    each call takes its group, sequence number and size from there; the ranks are matched on
    (group, sequence number)."""
    require_torch("the recorded cross-rank runs", "tests/test_cross_rank_recorded.py")
    script = REPO / "tests" / "support" / "hang_train.py"
    command = [
        *_launcher(tmp_path / "out"), "--", sys.executable, "-m", "torch.distributed.run",
        "--standalone", "--nproc-per-node", "2", str(script), "--fault", "none",
        "--steps", "14",
    ]  # fmt: skip
    proc = subprocess.run(
        command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert len(list((tmp_path / "out").glob("*.fr.json"))) == 2
    job = _open(tmp_path)
    arrivals = job.collective_arrivals()  # type: ignore[attr-defined]
    assert set(arrivals["group_source"]) == {"flight_recorder"}
    cross = job.cross_rank()  # type: ignore[attr-defined]
    assert cross.mismatches.empty and cross.unpaired == 0
    by_group = cross.matches.groupby("group")
    # 8 profiled steps: one gradient all-reduce (68 floats) and one metric (1 float) each
    assert by_group.size().to_dict() == {"0": 8, "1": 8}
    assert by_group["msg_bytes"].unique().map(list).to_dict() == {"0": [272], "1": [4]}
    for _, g in by_group:  # consecutive sequence numbers of the group, on both ranks
        seqs = sorted(g["position"])
        assert seqs == list(range(seqs[0], seqs[0] + 8))


def test_cross_rank_critical_path_runs_through_the_injected_delays(torchrun_job: object) -> None:
    """The step's critical path across ranks goes through the rank the others waited for
    and the delay injected there: on the odd profiler steps rank 2's data loader (its wait
    as the trace measured it, within 5 % of LOADER_MS; making it zero would shorten the step
    by at least 90 % of LOADER_MS, the rest being the next longest chain), on the even ones
    rank 3's CPU ops, the largest stretch of the path: its CPU-op time before the gradient
    all-reduce as the cross-rank lead-in measures it (the union of its CPU ops, where the
    path follows one thread's nesting), within 10 % of COMPUTE_MS (measured: 0.1-2.4 ms).
    That is 69-113 % of COMPUTE_MS in recorded runs, varying with how busy the two cores
    are; the Python loop between the matrix products (no op covers it) is the path's
    ``unrecorded`` time, with the rest of that rank's own Python work in the step."""
    job = torchrun_job
    path = job.cross_rank_critical_path()  # type: ignore[attr-defined]
    assert sorted(path.length_ns.index) == PROFILED and all(path.ok.values())
    comp = path.composition.set_index(["step", "rank", "category"])["ns"] / 1e6
    waits = job.dataloader_waits().set_index(["rank", "step"])["wait_ms"]  # type: ignore[attr-defined]
    calls = job.cross_rank().calls  # type: ignore[attr-defined]
    for step, (rank, _) in EXPECTED.items():
        slack = path.slack[path.slack["step"] == step].set_index(["rank", "category"])
        top = slack["slack_ns"].idxmax()
        if rank == 2:
            on_path = comp.get((step, 2, "data_loading"), 0.0)
            slept = waits.loc[(2, step)]
            assert abs(on_path - slept) <= 0.05 * LOADER_MS, (step, on_path, slept)
            assert top == (2, "data_loading"), (step, slack)
            assert slack.loc[top, "slack_ns"] / 1e6 >= 0.9 * LOADER_MS, (step, slack)
        else:
            on_path = comp.get((step, 3, "cpu"), 0.0)
            # the CPU-op time of rank 3's lead-in to the gradient all-reduce, as the
            # cross-rank analysis measured it; with the loop's unprofiled time, the injection
            mine = calls[(calls["step"] == step) & (calls["rank"] == 3)]
            lead = mine.loc[mine["lead_host_ns"].idxmax()]
            assert abs(on_path - lead["lead_host_ns"] / 1e6) <= 0.1 * COMPUTE_MS, (step, lead)
            injected = on_path + lead["lead_unrecorded_ns"] / 1e6
            assert 0.9 * COMPUTE_MS <= injected <= 1.5 * COMPUTE_MS, (step, on_path, lead)
            assert comp.loc[step].idxmax() == (3, "cpu"), (step, comp.loc[step])
            # how much shorter without it depends on the next longest chain, which four
            # ranks sharing two cores make close at times: only its sign is certain
            assert slack.loc[(3, "cpu"), "slack_ns"] > 0, (step, slack)
        # the path is the step's: with the time between the training thread's top-level ops
        # counted (not its waits), nearly the whole step (recorded: 92-105 % of the span
        # from the first rank's start to the last rank's end; an op straddling the step's
        # end may carry it a little past), and at least most of the culprit's own step
        st = job.steps().query("step == @step and source == 'kineto'")  # type: ignore[attr-defined]
        span = (st["start_ns"] + st["dur_ns"]).max() - st["start_ns"].min()
        length = path.length_ns[step]
        assert length <= span * 1.1, (step, length, span)
        assert length >= 0.85 * st.loc[st["rank"] == rank, "dur_ns"].max(), (step, length, st)

"""Built-in rules on generated jobs with injected patterns, against smdebug's definitions.

smdebug's rule implementations (``smdebug/profiler/analysis/rules/*.py`` in
awslabs/sagemaker-debugger) ship in no installable package, so they cannot run beside
stepscope here. Each test instead encodes, in its docstring, what smdebug's implementation
does on the generated data (fire / not fire), and checks stepscope reaches the same verdict
and names the right node, GPU or rank and time window. The cases sit next to the
thresholds: one that must fire, one just under that must not, and one bad node (GPU, rank)
among healthy ones, which must be the only one named (stepscope judges each node on its own).

Common to all of smdebug's rules: the rule container scans every ``scan_interval_us``
(60 s) from the job's first profiler data, and each scan re-judges everything seen so far;
a rule has fired when any scan's check held. System metrics are sampled every 0.5 s here,
so ``patience = 1000`` samples is 500 s and ``window = 500`` samples is 250 s.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzer.analyses import system as system_analyses
from analyzer.ingest import ingest
from analyzer.job import Job
from analyzer.sources import open_source
from rules.builtin.max_initialization_time import fires_after_s
from rules.engine import Finding, RuleResult, evaluate, registry
from rules.registry import BY_ID
from rules.ruleset import load_ruleset
from tests.support import hang_dumps
from tests.support import kineto_synth as synth
from tests.support.synthetic import (
    CPUBottleneck,
    GPUMemoryGrowth,
    IOBottleneck,
    LowGPU,
    Pattern,
    generate_system_metrics,
)

#: epoch seconds of the first sample, on a whole minute (smdebug's scan clock starts at the
#: first profiler file's timestamp, which SageMaker names after the minute).
START = 1_700_000_040.0
assert START % 60 == 0


def _ts(iso: str | None) -> float:
    assert iso is not None
    return datetime.fromisoformat(iso).timestamp()


def _ingest(root: Path) -> Any:
    return ingest(open_source(str(root / "job")), cache_dir=root / "cache").dataset


class Judged(dict[str, RuleResult]):
    """A job's rule results by rule id, and the job they judged (to judge it again)."""

    def __init__(self, job: Job, results: list[RuleResult]) -> None:
        super().__init__((r.rule, r) for r in results)
        self.job = job


def _judge(ds: Any, rules_toml: str | None = None, tmp: Path | None = None) -> Judged:
    """The default rules (or ``rules_toml`` over them) on a dataset or a :class:`Job`."""
    ruleset = load_ruleset()
    if rules_toml is not None:
        assert tmp is not None
        path = tmp / "rules.toml"
        path.write_text(rules_toml)
        ruleset = load_ruleset(path)
    job = ds if isinstance(ds, Job) else Job(ds)
    return Judged(job, evaluate(job, ruleset))


def _system(
    root: Path,
    *,
    nodes: int,
    minutes: float,
    patterns: list[Pattern],
    gpus: int = 2,
    cpus: int = 2,
    seed: int = 11,
) -> None:
    generate_system_metrics(
        root / "job",
        nodes=nodes,
        gpus=gpus,
        cpus=cpus,
        minutes=minutes,
        interval_s=0.5,
        start=START,
        seed=seed,
        patterns=patterns,
        io_network=False,
    )


def _by(findings: list[Finding], *keys: str) -> dict[tuple[Any, ...], Finding]:
    return {tuple(f.evidence[k] for k in keys): f for f in findings}


# --------------------------------------------------------------------------- traces


def _write_kineto(root: Path, rank: int, world: int, events: list[dict[str, Any]]) -> None:
    """A PyTorch profiler trace as torch's tensorboard_trace_handler names it."""
    doc = {
        "schemaVersion": 1,
        "distributedInfo": {"backend": "nccl", "rank": rank, "world_size": world},
        "deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3"}],
        "traceEvents": events,
    }
    out = (
        root / "job" / "tensorboard" / f"algo-1_rank{rank}.{int(START * 1000)}{rank}.pt.trace.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc))


def _profiler_steps(durations_ms: list[float], t0_us: float, pid: int) -> list[dict[str, Any]]:
    """Back-to-back ``ProfilerStep#N`` CPU annotations of the given lengths."""
    out, t = [], t0_us
    for i, d in enumerate(durations_ms):
        out.append(
            {
                "ph": "X",
                "cat": "user_annotation",
                "name": f"ProfilerStep#{i}",
                "pid": pid,
                "tid": pid,
                "ts": t,
                "dur": d * 1000,
            }
        )
        t += d * 1000
    return out


def _write_framework(
    root: Path,
    node: str,
    pid: int,
    rank: int | None,
    rows: list[tuple[str, str, float, float, dict[str, Any]]],
) -> None:
    """A SageMaker Debugger framework timeline (``pythontimeline``) written by one process.

    ``rows``: (phase, name, start epoch s, duration s, args). The phase is the Chrome-trace
    process row the event sits on, which smdebug reads as the event's phase.
    """
    origin_us = int(START * 1e6)
    phases = sorted({r[0] for r in rows})
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": 0,
            "args": {"start_time_since_epoch_in_micros": origin_us},
        }
    ]
    events += [
        {"name": "process_name", "ph": "M", "pid": i + 1, "args": {"name": ph}}
        for i, ph in enumerate(phases)
    ]
    for ph, name, t, dur, args in rows:
        events.append(
            {
                "name": name,
                "ph": "X",
                "pid": phases.index(ph) + 1,
                "tid": pid,
                "ts": round(t * 1e6) - origin_us,
                "dur": round(dur * 1e6),
                "args": args,
            }
        )
    node_id = f"{pid}-{node}" + (f"_{rank}" if rank is not None else "")
    hour = datetime.fromtimestamp(START, tz=UTC).strftime("%Y%m%d%H")
    out = (
        root
        / "job"
        / "profiler-output"
        / "framework"
        / "pevents"
        / hour
        / f"{origin_us}_{node_id}_pythontimeline.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(events))


# --------------------------------------------------------------------------- GPUMemoryIncrease


@pytest.fixture(scope="module")
def memory_job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RuleResult]:
    root = tmp_path_factory.mktemp("mem")

    def flat_then_step(node: int, gpu: int, at_s: float, to: float) -> list[Pattern]:
        # memory held at 60 % from the start (no jump: the first sample has no history),
        # then a step to `to` % at `at_s`
        return [
            GPUMemoryGrowth(node, gpu, 0, 0.25, 60, 60),
            GPUMemoryGrowth(node, gpu, at_s, at_s + 0.25, to, to),
        ]

    _system(
        root,
        nodes=4,
        minutes=15,
        patterns=[
            *flat_then_step(2, 1, 700, 87),  # +27 points after patience
            *flat_then_step(3, 0, 700, 83),  # +23 points after patience
            *flat_then_step(4, 1, 300, 95),  # +35 points, but before patience
        ],
    )
    return _judge(_ingest(root))


def test_gpu_memory_increase_fires_on_a_jump_after_patience(memory_job) -> None:
    """smdebug: for each GPU, at each new sample once it has more than ``window + 1``
    samples, diff = mean(last ``window`` samples) - mean(the ``window - 1`` samples ending
    two samples back); a violation when diff > ``increase`` (5) and the GPU has more than
    ``patience`` (1000) samples. A step of S points moves that diff by at most 0.2·S (two
    samples after the step), so +27 points at 700 s (1400 samples) gives 5.4 > 5: fires,
    on the two samples after the step."""
    fired = _by(memory_job["GPUMemoryIncrease"].findings, "node", "gpu")
    f = fired[("algo-2", "gpu1")]
    assert f.evidence["violations"] == 2
    assert 5 < f.evidence["max_increase"] < 6
    assert (
        START + 700
        <= _ts(f.evidence["window_start"])
        <= _ts(f.evidence["window_end"])
        <= START + 702
    )
    assert f.evidence["last_value_pct"] == pytest.approx(87, abs=0.5)


def test_gpu_memory_increase_ignores_a_jump_just_under_increase(memory_job) -> None:
    """smdebug: the same step of +23 points moves the moving average by at most 4.6 < 5:
    no violation, even though memory grew for good."""
    assert ("algo-3", "gpu0") not in _by(memory_job["GPUMemoryIncrease"].findings, "node", "gpu")


def test_gpu_memory_increase_ignores_a_jump_before_patience(memory_job) -> None:
    """smdebug: a jump of +35 points (diff 7 > 5) at 300 s, when the GPU has only 600 of
    the ``patience`` = 1000 samples, is not a violation; nothing after it moves again."""
    assert ("algo-4", "gpu1") not in _by(memory_job["GPUMemoryIncrease"].findings, "node", "gpu")


def test_gpu_memory_increase_names_only_the_growing_gpu(memory_job) -> None:
    """Per node and GPU, as smdebug keys its values (node id, GPU name): among 4 nodes x 2
    GPUs only algo-2's gpu1 is named."""
    assert list(_by(memory_job["GPUMemoryIncrease"].findings, "node", "gpu")) == [
        ("algo-2", "gpu1")
    ]


# --------------------------------------------------------------------------- LoadBalancing


@pytest.fixture(scope="module")
def balance_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, RuleResult]]:
    root = tmp_path_factory.mktemp("lb")
    # On algo-2 and algo-3 both GPUs run at 90 ± 2 % (identical workloads), then one GPU
    # idles at 30 % for half of the 20 min job: first half on algo-2, second half on algo-3.
    _system(
        root,
        nodes=3,
        minutes=20,
        patterns=[
            LowGPU(2, None, 0, 1200, level=90),
            LowGPU(2, 1, 0, 600, level=30),
            LowGPU(3, None, 0, 1200, level=90),
            LowGPU(3, 0, 600, 1200, level=30),
        ],
    )
    ds = _ingest(root)
    return ds, _judge(ds)


def _js(a: np.ndarray, b: np.ndarray) -> float:
    """Jensen-Shannon distance as smdebug computes it with scipy.stats.entropy (natural log)."""
    bins = np.arange(0, 100, 2)
    ha, _ = np.histogram(a, bins=bins)
    hb, _ = np.histogram(b, bins=bins)
    m = (ha + hb) / 2

    def kl(p: np.ndarray, q: np.ndarray) -> float:
        p, q = p / p.sum(), q / q.sum()
        nz = p > 0
        return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))

    return float(np.sqrt((kl(ha, m) + kl(hb, m)) / 2))


def _gpu_values(ds: Any, node: str, gpu: str, until: float | None = None) -> np.ndarray:
    df = system_analyses.metric_frame(ds.table("system_metrics"), ["GPUUtilization"])
    sel = (df["node"] == node) & (df["device"] == gpu)
    if until is not None:
        sel &= df["t"] < until
    return df.loc[sel, "value"].to_numpy()


def test_load_balancing_fires_when_a_scan_sees_imbalance(balance_job) -> None:
    """smdebug: at every scan, each GPU with more than ``patience`` (1000) samples so far
    gets a histogram of all its samples so far (2 %-bins, 0..98 %); a pair of GPUs whose
    Jensen-Shannon distance exceeds ``threshold`` (0.5) fires. algo-2's gpu1 idles at 30 %
    for the first 600 s while gpu0 runs at 90 %: the first scan past patience (540 s,
    1080 samples) sees disjoint histograms (distance ≈ √ln 2 ≈ 0.83) and fires, although
    over the whole job (half idle) the distance is under 0.5."""
    ds, results = balance_job
    fired = _by(results["LoadBalancing"].findings, "node")
    f = fired[("algo-2",)]
    assert f.evidence["worst_pair"] == ["gpu0", "gpu1"]
    assert f.evidence["worst_distance"] > 0.8
    assert _ts(f.evidence["first_fired_at"]) == pytest.approx(START + 540, abs=1)
    # the whole job's histograms alone would not fire: cumulative scans are what fire
    whole = _js(_gpu_values(ds, "algo-2", "gpu0"), _gpu_values(ds, "algo-2", "gpu1"))
    assert f.evidence["final_distance"] == pytest.approx(whole, abs=1e-3)
    assert whole < 0.5
    at_first = _js(
        _gpu_values(ds, "algo-2", "gpu0", START + 540),
        _gpu_values(ds, "algo-2", "gpu1", START + 540),
    )
    assert at_first > 0.8


def test_load_balancing_quiet_just_under_threshold(balance_job) -> None:
    """smdebug: algo-3's gpu0 idles from 600 s to the end. The cumulative histograms drift
    apart scan by scan and are furthest apart at the last scan, where half of gpu0's
    samples are idle: distance ≈ 0.46, still under 0.5: no fire."""
    ds, results = balance_job
    assert ("algo-3",) not in _by(results["LoadBalancing"].findings, "node")
    whole = _js(_gpu_values(ds, "algo-3", "gpu0"), _gpu_values(ds, "algo-3", "gpu1"))
    assert 0.44 < whole < 0.5


def test_load_balancing_names_only_the_unbalanced_node(balance_job) -> None:
    """Per node (smdebug also pairs GPUs across nodes; stepscope compares the GPUs of one
    node): healthy algo-1 and the just-under algo-3 are not named."""
    _ds, results = balance_job
    assert list(_by(results["LoadBalancing"].findings, "node")) == [("algo-2",)]


# --------------------------------------------------------------------------- BatchSize


@pytest.fixture(scope="module")
def batch_job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RuleResult]:
    root = tmp_path_factory.mktemp("bs")
    _system(
        root,
        nodes=5,
        cpus=4,
        minutes=20,
        patterns=[
            LowGPU(2, 1, 600, 900, level=50),  # 300 s at 50 %: a whole window of 500 samples
            LowGPU(3, 0, 600, 820, level=50),  # 220 s at 50 %: shorter than a window
            LowGPU(4, 1, 600, 900, level=73),  # p95 just above 70
            CPUBottleneck(5, 600, 900),  # GPUs idle, but the CPUs are busy
        ],
    )
    return _judge(_ingest(root))


def test_batch_size_fires_on_an_underused_window(batch_job) -> None:
    """smdebug: at each scan, for a node with more than ``window`` (500) and ``patience``
    (1000) CPU samples, p95 of the last 500 node-CPU samples (mean over cores) < 70, and for
    each GPU p95 of its last 500 utilization and memory samples < 70: the GPU is underused.
    algo-2's gpu1 runs at 50 % from 600 s to 900 s (memory ~60 %, CPU ~30 %): the scans at
    840 s and 900 s see a window at least 95 % inside it and fire, though the job ends busy."""
    fired = _by(batch_job["BatchSize"].findings, "node", "gpu")
    f = fired[("algo-2", "gpu1")]
    assert f.evidence["violations"] == 2
    assert _ts(f.evidence["first_fired_at"]) == pytest.approx(START + 840, abs=1)
    assert (
        _ts(f.evidence["window_start"]) >= START + 585
        and _ts(f.evidence["window_end"]) <= START + 901
    )
    assert (
        f.evidence["gpu_p95"] < 55
        and f.evidence["gpu_memory_p95"] < 70
        and f.evidence["cpu_p95"] < 70
    )


def test_batch_size_quiet_when_the_low_stretch_is_shorter_than_a_window(batch_job) -> None:
    """smdebug: algo-3's gpu0 is at 50 % for 220 s = 440 samples; every window of 500
    samples keeps more than 5 % busy samples, so no scan's p95 is under 70."""
    assert ("algo-3", "gpu0") not in _by(batch_job["BatchSize"].findings, "node", "gpu")


def test_batch_size_quiet_just_above_gpu_threshold(batch_job) -> None:
    """smdebug: algo-4's gpu1 at 73 ± 2 % for 300 s has p95 ≈ 74.8 > 70: not underused."""
    assert ("algo-4", "gpu1") not in _by(batch_job["BatchSize"].findings, "node", "gpu")


def test_batch_size_needs_the_node_cpu_underused_too(batch_job) -> None:
    """smdebug: the CPU condition is per node; algo-5's GPUs idle under a CPU bottleneck
    (cores at 92-100 %), so its CPU p95 is over 70 and neither GPU is reported."""
    assert not any(
        node == "algo-5" for node, _gpu in _by(batch_job["BatchSize"].findings, "node", "gpu")
    )


def test_batch_size_names_only_the_underused_gpu(batch_job) -> None:
    """One underused GPU among 5 nodes x 2 GPUs: only it is named."""
    assert list(_by(batch_job["BatchSize"].findings, "node", "gpu")) == [("algo-2", "gpu1")]


# --------------------------------------------------------------------------- StepOutlier


def _durations(
    n: int, spikes: list[int], base: float = 100.0, spike: float = 300.0, seed: int = 0
) -> list[float]:
    """n step times of ``base`` ms (±1 ms), with ``spike`` ms at the given indices."""
    rng = np.random.default_rng(seed)
    d = (base + rng.uniform(-1, 1, n)).tolist()
    for i in spikes:
        d[i] = spike
    return d


@pytest.fixture(scope="module")
def outlier_job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RuleResult]:
    root = tmp_path_factory.mktemp("so")
    t0 = START * 1e6
    early = list(range(10, 300, 24))  # 13 spikes in the first 300 steps ...
    late = _durations(600, early, seed=4) + [100.0, 300.0] * 200  # ... then 400 bimodal steps
    per_rank = {
        0: _durations(150, [], seed=0),
        1: _durations(150, [5, 17, 30, 44, 58, 71, 85, 99, 112, 126, 140], seed=1),  # 11 spikes
        2: _durations(150, [5, 17, 30, 44, 58, 71, 85, 99, 112, 126], seed=2),  # 10 spikes
        3: late,
    }
    for rank, d in per_rank.items():
        _write_kineto(root, rank, 4, _profiler_steps(d, t0, pid=1000 + rank))
    return _judge(_ingest(root))


def test_step_outlier_fires_above_n_outliers(outlier_job) -> None:
    """smdebug: per process and step mode, once more than 100 steps were seen, the steps
    longer than mean + ``stddev`` (3) x σ (population) are outliers; more than
    ``n_outliers`` (10) fires. Rank 1: 139 steps of 100 ms and 11 of 300 ms (z ≈ 3.5):
    11 outliers > 10."""
    f = _by(outlier_job["StepOutlier"].findings, "rank")[(1,)]
    assert f.evidence["outliers"] == 11
    assert f.evidence["steps"] == [5, 17, 30, 44, 58, 71, 85, 99, 112, 126, 140]
    assert 250 < f.evidence["threshold_ms"] < 300


def test_step_outlier_tolerates_n_outliers(outlier_job) -> None:
    """smdebug: rank 2 has exactly 10 outliers, which ``n_outliers`` = 10 tolerates."""
    assert (2,) not in _by(outlier_job["StepOutlier"].findings, "rank")


def test_step_outlier_judges_every_scan(outlier_job) -> None:
    """smdebug: the check runs at every scan on the steps seen so far. Rank 3's first
    minute holds 13 spikes among ~580 steps of 100 ms: the first scan (60 s) finds 13
    outliers and fires. Its last 400 steps alternate 100/300 ms, which over the whole job
    lifts σ so far that no step is an outlier any more."""
    f = _by(outlier_job["StepOutlier"].findings, "rank")[(3,)]
    assert f.evidence["outliers"] == 13
    assert _ts(f.evidence["first_fired_at"]) == pytest.approx(START + 60, abs=0.01)
    d = np.array(_durations(600, list(range(10, 300, 24)), seed=4) + [100.0, 300.0] * 200)
    assert not (d > d.mean() + 3 * d.std()).any()


def test_step_outlier_names_only_the_spiky_ranks(outlier_job) -> None:
    """Per rank: clean rank 0 and tolerated rank 2 are not named."""
    assert sorted(_by(outlier_job["StepOutlier"].findings, "rank")) == [(1,), (3,)]


def test_step_outlier_needs_more_than_100_steps(tmp_path: Path) -> None:
    """smdebug: a group is judged only with more than 100 steps (``len(...) > 100``).
    With ``n_outliers = 2``, 3 spikes among 100 steps of rank 0 stay unjudged; the same 3
    spikes among 101 steps of rank 1 fire."""
    t0 = START * 1e6
    _write_kineto(tmp_path, 0, 2, _profiler_steps(_durations(100, [20, 50, 80]), t0, pid=1000))
    _write_kineto(tmp_path, 1, 2, _profiler_steps(_durations(101, [20, 50, 80]), t0, pid=1001))
    results = _judge(_ingest(tmp_path), "[rules.StepOutlier]\nn_outliers = 2\n", tmp_path)
    assert [f.evidence["rank"] for f in results["StepOutlier"].findings] == [1]
    assert results["StepOutlier"].findings[0].evidence["steps"] == [20, 50, 80]


def test_step_outlier_never_pools_train_and_eval_steps(tmp_path: Path) -> None:
    """smdebug: steps are grouped by their event name, ``Step:ModeKeys.TRAIN`` apart from
    ``Step:ModeKeys.EVAL``. 150 TRAIN steps with 11 spikes of 300 ms fire on their own;
    pooled with 30 EVAL steps of 1 s the threshold would rise above 1.2 s and nothing
    would. The 30 EVAL steps alone are too few (≤ 100) to be judged."""
    rows: list[tuple[str, str, float, float, dict[str, Any]]] = []
    t = START + 5
    train = _durations(150, [5, 17, 30, 44, 58, 71, 85, 99, 112, 126, 140], seed=1)
    for i, d in enumerate(train):
        rows.append(("Step:ModeKeys.TRAIN", "Step:ModeKeys.TRAIN", t, d / 1000, {"step_num": i}))
        t += d / 1000
        if i % 5 == 4:
            rows.append(("Step:ModeKeys.EVAL", "Step:ModeKeys.EVAL", t, 1.0, {"step_num": i // 5}))
            t += 1.0
    _write_framework(tmp_path, "algo-1", 151, 0, rows)
    _system(tmp_path, nodes=1, gpus=1, minutes=2, patterns=[])
    results = _judge(_ingest(tmp_path))
    fired = results["StepOutlier"].findings
    assert [(f.evidence["rank"], f.evidence["mode"]) for f in fired] == [(0, "TRAIN")]
    assert fired[0].evidence["outliers"] == 11
    pooled = np.array(train + [1000.0] * 30)
    assert not (pooled > pooled.mean() + 3 * pooled.std()).any()


# --------------------------------------------------------------------------- MaxInitializationTime


def _init_job(root: Path, first_step_s: float | None) -> dict[str, RuleResult]:
    """30 min of system metrics; one process whose first TRAIN step starts ``first_step_s``
    after the job start (then 20 steps), or with no step at all (data-loader setup only)."""
    _system(root, nodes=1, gpus=1, minutes=30, patterns=[])
    rows: list[tuple[str, str, float, float, dict[str, Any]]]
    if first_step_s is None:
        rows = [
            (
                "DataLoaderIterInitialize",
                "_MultiProcessingDataLoaderIter.__init__",
                START + 60 * k,
                2.0,
                {},
            )
            for k in range(1, 30)
        ]
    else:
        rows = [
            (
                "Step:ModeKeys.TRAIN",
                "Step:ModeKeys.TRAIN",
                START + first_step_s + i,
                0.5,
                {"step_num": i},
            )
            for i in range(20)
        ]
    _write_framework(root, "algo-1", 151, 0, rows)
    return _judge(_ingest(root))


def test_max_initialization_time_fires_after_the_first_scan_past_threshold(tmp_path: Path) -> None:
    """smdebug: at scan k (window [k, k+1] minutes after the job's first data) the rule
    fires when k minutes > ``threshold`` (20) and no ``Step:ModeKeys`` event overlapped
    any window so far. The first such scan is k = 21, which sees steps started by 22 min:
    a first step at 23 min fires."""
    fired = _init_job(tmp_path, 23 * 60)["MaxInitializationTime"].findings
    assert len(fired) == 1
    assert fired[0].evidence["seconds_to_first_step"] == pytest.approx(23 * 60, abs=0.1)
    assert fired[0].evidence["fires_after_s"] == 22 * 60


@pytest.mark.parametrize("minutes", [19.5, 21.5])
def test_max_initialization_time_quiet_until_that_scan(tmp_path: Path, minutes: float) -> None:
    """smdebug: a first step at 19.5 min is under the threshold; one at 21.5 min is over
    it, but the scan at minute 20 does not check (20 is not > 20) and the scan at minute
    21 already sees the step in its window [21, 22]: no fire either way."""
    assert _init_job(tmp_path, minutes * 60)["MaxInitializationTime"].findings == []


def test_max_initialization_time_fires_when_no_step_ever_comes(tmp_path: Path) -> None:
    """smdebug: the rule waits for the first step; 30 min of profiler data (framework
    events, but never a step) pass scan 21 with no step seen: it fires."""
    fired = _init_job(tmp_path, None)["MaxInitializationTime"].findings
    assert len(fired) == 1
    assert fired[0].evidence["seconds_to_first_step"] is None
    assert fired[0].evidence["seconds_recorded"] > 22 * 60


def test_max_initialization_time_uses_framework_steps_over_kineto_windows(tmp_path: Path) -> None:
    """smdebug reads the SageMaker framework steps, recorded from the first step on. A
    Kineto trace only covers the profiler's active window (here at 40 min, after a long
    ``wait``); the framework steps from 2 min on decide: no fire."""
    _write_kineto(tmp_path, 0, 1, _profiler_steps([100.0] * 5, (START + 40 * 60) * 1e6, pid=151))
    assert _init_job(tmp_path, 120)["MaxInitializationTime"].findings == []
    assert fires_after_s(20, 60_000_000) == 22 * 60


# --------------------------------------------------------------------------- Dataloader


@pytest.fixture(scope="module")
def loader_job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RuleResult]:
    root = tmp_path_factory.mktemp("dl")
    _system(root, nodes=5, gpus=1, cpus=4, minutes=5, patterns=[])
    workers = {1: 2, 2: 3, 3: 9, 4: 8, 5: 2}  # node -> DataLoader worker processes
    for node, n in workers.items():
        seconds = 8 if node == 5 else 120  # algo-5 loads data for 8 s only
        for w in range(n):
            pid = 4000 + 100 * node + w
            rows = [
                (
                    "DataLoaderWorker",
                    f"DataLoaderWorker:{w}",
                    START + 60.25 + 0.5 * i,
                    0.2,
                    {"worker_id": w, "pid": pid},
                )
                for i in range(2 * seconds)
            ]
            _write_framework(root, f"algo-{node}", pid, None, rows)
    return _judge(_ingest(root))


def test_dataloader_fires_on_too_few_workers(loader_job) -> None:
    """smdebug: data-loader events (PyTorch ``DataLoaderWorker`` / ``DataLoaderIter``
    phases) are bucketed by the second they start in; each second counts its distinct
    processes; at every scan with such events, once more than 10 seconds were seen, the
    median count below ``min_threshold`` (70) % of the CPU cores fires. algo-1: 2 workers
    on 4 cores (2 < 2.8), seen from 60 s: the scan ending at 120 s fires."""
    f = _by(loader_job["Dataloader"].findings, "node")[("algo-1",)]
    assert f.evidence["kind"] == "too_few"
    assert (f.evidence["cores"], f.evidence["median_processes"], f.evidence["seconds"]) == (
        4,
        2,
        120,
    )
    assert _ts(f.evidence["first_fired_at"]) == pytest.approx(START + 120, abs=0.01)
    assert (
        _ts(f.evidence["window_start"]) == START + 60
        and _ts(f.evidence["window_end"]) == START + 179
    )


def test_dataloader_fires_on_too_many_workers(loader_job) -> None:
    """smdebug: a median above ``max_threshold`` (200) % of the cores fires too:
    algo-3 runs 9 workers on 4 cores (9 > 8)."""
    f = _by(loader_job["Dataloader"].findings, "node")[("algo-3",)]
    assert (f.evidence["kind"], f.evidence["median_processes"]) == ("too_many", 9)


def test_dataloader_quiet_at_the_thresholds(loader_job) -> None:
    """smdebug: 3 workers on 4 cores (75 % ≥ 70 %) and 8 on 4 (200 %, not above 200 %)
    raise nothing: algo-2 and algo-4 are not named."""
    fired = _by(loader_job["Dataloader"].findings, "node")
    assert ("algo-2",) not in fired and ("algo-4",) not in fired


def test_dataloader_waits_for_patience(loader_job) -> None:
    """smdebug: with no more than ``patience`` (10) seconds of data loading the median is
    not judged: algo-5 (2 workers, 8 s) is not named."""
    assert ("algo-5",) not in _by(loader_job["Dataloader"].findings, "node")


def test_dataloader_names_only_the_misconfigured_nodes(loader_job) -> None:
    """Per node, against that node's cores (smdebug pools every node's processes per
    second against one node's core count)."""
    assert sorted(_by(loader_job["Dataloader"].findings, "node")) == [("algo-1",), ("algo-3",)]


# --------------------------------------------------------------------------- ExposedCommunication


def _comm_rank_events(rank: int, comm_offset_ms: float, comm_ms: float) -> list[dict[str, Any]]:
    """5 steps of 20 ms; in each of the first 4 a 10 ms GEMM (stream 7) and an NCCL
    all-reduce of ``comm_ms`` (stream 20) starting ``comm_offset_ms`` into the step; each
    kernel launched by a ``cudaLaunchKernel`` with its correlation id. The 5th step is
    HTA's trimmed last step."""
    pid, t0 = 1000 + rank, START * 1e6
    events = _profiler_steps([20.0] * 5, t0, pid=pid)
    corr = 1
    for s in range(4):
        step0 = t0 + s * 20_000
        for name, stream, at_ms, dur_ms in (
            ("sm90_xmma_gemm_f16f16_f32_tn_n_tilesize128x128x64", 7, 1.0, 10.0),
            (
                "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
                20,
                comm_offset_ms,
                comm_ms,
            ),
        ):
            start = step0 + at_ms * 1000
            events.append(
                {
                    "ph": "X",
                    "cat": "cuda_runtime",
                    "name": "cudaLaunchKernel",
                    "pid": pid,
                    "tid": pid,
                    "ts": start - 50,
                    "dur": 5,
                    "args": {"correlation": corr, "External id": corr},
                }
            )
            events.append(
                {
                    "ph": "X",
                    "cat": "kernel",
                    "name": name,
                    "pid": 0,
                    "tid": stream,
                    "ts": start,
                    "dur": dur_ms * 1000,
                    "args": {
                        "device": 0,
                        "stream": stream,
                        "correlation": corr,
                        "External id": corr,
                    },
                }
            )
            corr += 1
    return events


@pytest.fixture(scope="module")
def comm_job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RuleResult]:
    root = tmp_path_factory.mktemp("comm")
    layout = {
        0: (3.0, 4.0),
        1: (11.0, 6.0),
        2: (11.0, 3.0),
        3: (3.0, 4.0),
    }  # rank -> (offset, length) ms
    for rank, (offset, length) in layout.items():
        _write_kineto(root, rank, 4, _comm_rank_events(rank, offset, length))
    return _judge(_ingest(root))


def test_exposed_communication_fires_on_unhidden_all_reduce(comm_job) -> None:
    """stepscope's own rule (no smdebug counterpart): per rank, communication-kernel time
    that no computation kernel overlaps, as a share of the GPU's busy time, above
    ``threshold_pct`` (25) fires. Rank 1 runs its 6 ms all-reduce after the 10 ms GEMM:
    6 / 16 = 37.5 % exposed."""
    f = _by(comm_job["ExposedCommunication"].findings, "rank")[(1,)]
    assert f.evidence["exposed_share_pct"] == pytest.approx(37.5, abs=0.1)
    assert f.evidence["exposed_comm_ms"] == pytest.approx(4 * 6.0, abs=0.01)
    assert f.evidence["comm_comp_overlap_pct"] == pytest.approx(0.0, abs=0.01)


def test_exposed_communication_quiet_just_under_threshold(comm_job) -> None:
    """Rank 2's exposed 3 ms all-reduce is 3 / 13 = 23 % of its GPU busy time (< 25 %);
    ranks 0 and 3 hide theirs inside the GEMM (0 % exposed)."""
    fired = _by(comm_job["ExposedCommunication"].findings, "rank")
    assert all((r,) not in fired for r in (0, 2, 3))


def test_exposed_communication_names_only_the_exposed_rank(comm_job) -> None:
    assert list(_by(comm_job["ExposedCommunication"].findings, "rank")) == [(1,)]


# ------------------------------------------------- communication by parallel dimension
# (the traces and their figures: tests/support/kineto_synth.py, tests/test_parallelism.py)


@pytest.fixture(scope="module")
def sharded_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    root = tmp_path_factory.mktemp("zero3")
    synth.zero3(root / "job")
    return _judge(_ingest(root))


@pytest.fixture(scope="module")
def pipeline_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    work = [(1_000.0, 2_000.0)] * 2 + [(2_000.0, 4_000.0)] + [(1_000.0, 2_000.0)]
    root = tmp_path_factory.mktemp("gpipe")
    synth.gpipe(root / "job", work, 4)
    return _judge(_ingest(root))


@pytest.fixture(scope="module")
def moe_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    root = tmp_path_factory.mktemp("moe")
    synth.moe(root / "job")
    return _judge(_ingest(root))


@pytest.fixture(scope="module")
def small_collectives_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    root = tmp_path_factory.mktemp("small")
    synth.small_collectives(root / "job")
    return _judge(_ingest(root))


def test_exposed_sharded_communication_names_both_ranks_of_the_zero3_group(
    sharded_job: Judged,
) -> None:
    """Four 0.3 ms all-gathers before their matmuls and four reduce-scatters after theirs,
    nothing overlapping: 2.4 ms of a 10 ms step (24 % > 10 %) on each rank."""
    found = _by(sharded_job["ExposedShardedCommunication"].findings, "rank")
    assert sorted(found) == [(0,), (1,)]
    assert found[(0,)].evidence["share_pct"] == pytest.approx(24.0)


def test_pipeline_bubble_names_the_idle_stages_and_the_slow_one(pipeline_job: Judged) -> None:
    """Stage 2 at twice the others' work: they idle 1 - 4/11 = 63.6 % of the step, 20.8
    points above GPipe's ideal 3/7; stage 2 idles 27.3 %, below it."""
    found = _by(pipeline_job["PipelineBubble"].findings, "rank")
    assert sorted(found) == [(0,), (1,), (3,)]
    assert found[(0,)].evidence["bubble_pct"] == pytest.approx(100 * 7 / 11, abs=0.01)
    assert {f.evidence["slowest_stage"] for f in found.values()} == {2}


def test_all_to_all_imbalance_names_the_rank_with_three_times_the_bytes(moe_job: Judged) -> None:
    found = _by(moe_job["AllToAllImbalance"].findings, "rank")
    assert list(found) == [(2,)] and found[(2,)].evidence["ratio"] == pytest.approx(3.0)


def test_small_collectives_fire_on_80_all_reduces_of_64_kib(small_collectives_job: Judged) -> None:
    found = _by(small_collectives_job["SmallCollectives"].findings, "rank")
    assert sorted(found) == [(0,), (1,)]
    assert found[(1,)].evidence["calls_per_step"] == 80


# --------------------------------------------------------------------------- GPUStarvedByHost


def _launch_bound_events(
    rank: int, kernels: int, gap_us: float, host_wait: bool
) -> list[dict[str, Any]]:
    """``kernels`` 100 µs kernels on stream 7, ``gap_us`` apart. With ``host_wait`` each one is
    launched (``cudaLaunchKernel``) only after the previous kernel ended; otherwise they are all
    launched up front, so the gaps are the GPU's own."""
    pid, t0 = 2000 + rank, START * 1e6
    events: list[dict[str, Any]] = []
    t = t0 + 1000
    for i in range(kernels):
        launch = t - gap_us / 2 if host_wait and i else t0 + i
        events.append(
            {
                "ph": "X",
                "cat": "cuda_runtime",
                "name": "cudaLaunchKernel",
                "pid": pid,
                "tid": pid,
                "ts": launch,
                "dur": 1,
                "args": {"correlation": i + 1, "External id": i + 1},
            }
        )
        events.append(
            {
                "ph": "X",
                "cat": "kernel",
                "name": "void at::native::vectorized_elementwise_kernel<4>",
                "pid": 0,
                "tid": 7,
                "ts": t,
                "dur": 100,
                "args": {"device": 0, "stream": 7, "correlation": i + 1},
            }
        )
        t += 100 + gap_us
    return events


@pytest.fixture(scope="module")
def host_job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RuleResult]:
    root = tmp_path_factory.mktemp("host")
    layout = {
        0: (120, 200.0, True),
        1: (120, 20.0, False),
        2: (120, 40.0, True),
        3: (50, 400.0, True),
    }
    for rank, (kernels, gap, waits) in layout.items():
        _write_kineto(root, rank, len(layout), _launch_bound_events(rank, kernels, gap, waits))
    return _judge(_ingest(root))


def test_gpu_starved_by_host_fires_when_launches_come_late(host_job) -> None:
    """Rank 0 launches each kernel 100 µs into a 200 µs gap after the previous one ended:
    119 x 200 µs of host wait in a 35.8 ms span = 66.5 % (> 30 %)."""
    f = _by(host_job["GPUStarvedByHost"].findings, "rank")[(0,)]
    assert f.evidence["stream"] == 7 and f.evidence["events"] == 120
    assert f.evidence["host_wait_ms"] == pytest.approx(119 * 0.2, abs=1e-6)
    assert f.evidence["span_ms"] == pytest.approx(120 * 0.1 + 119 * 0.2, abs=1e-6)
    assert f.evidence["host_wait_share_pct"] == pytest.approx(100 * 23.8 / 35.8, abs=0.01)
    # 100 µs kernels from 1 µs launch calls: none ran shorter than its launch
    assert f.evidence["kernels_launched"] == 120 and f.evidence["short_kernels"] == 0


def test_gpu_starved_by_host_quiet_when_launched_ahead_or_under_threshold(host_job) -> None:
    """Rank 1's 20 µs gaps come with kernels launched long before (kernel wait, not host
    wait); rank 2 waits for the host 119 x 40 µs of 16.76 ms = 28.4 % (< 30 %)."""
    fired = _by(host_job["GPUStarvedByHost"].findings, "rank")
    assert (1,) not in fired and (2,) not in fired


def test_gpu_starved_by_host_needs_min_events(host_job) -> None:
    """Rank 3 idles 80 % waiting for the host, but on 50 kernels (< min_events 100)."""
    assert list(_by(host_job["GPUStarvedByHost"].findings, "rank")) == [(0,)]


# --------------------------------------------------------------------------- AllocatorMemoryGrowth


def _memory_events(rank: int, growth_mib_per_step: float, steps: int = 5) -> list[dict[str, Any]]:
    """``steps`` 20 ms ProfilerSteps on GPU 0; in each, 256 MiB of activations allocated and
    freed, plus ``growth_mib_per_step`` MiB allocated and never freed (what a leak looks like)."""
    pid, t0 = 3000 + rank, START * 1e6
    events = _profiler_steps([20.0] * steps, t0, pid=pid)
    live, mib = 1024 * 2**20, 2**20  # 1 GiB of weights before the first step
    events.append(
        {
            "ph": "i",
            "s": "t",
            "cat": "cpu_instant_event",
            "name": "[memory]",
            "pid": pid,
            "tid": pid,
            "ts": t0 - 100,
            "args": {
                "Device Type": 1,
                "Device Id": 0,
                "Bytes": live,
                "Total Allocated": live,
                "Total Reserved": 2 * live,
            },
        }
    )
    for s in range(steps):
        at = t0 + s * 20_000
        for dt, delta in (
            (1000, 256 * mib),
            (5000, int(growth_mib_per_step * mib)),
            (15000, -256 * mib),
        ):
            live += delta
            events.append(
                {
                    "ph": "i",
                    "s": "t",
                    "cat": "cpu_instant_event",
                    "name": "[memory]",
                    "pid": pid,
                    "tid": pid,
                    "ts": at + dt,
                    "args": {
                        "Device Type": 1,
                        "Device Id": 0,
                        "Bytes": delta,
                        "Total Allocated": live,
                        "Total Reserved": 4 * 1024 * mib,
                    },
                }
            )
    return events


@pytest.fixture(scope="module")
def memory_trace_job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RuleResult]:
    root = tmp_path_factory.mktemp("alloc")
    for rank, growth in {0: 100.0, 1: 0.0, 2: 12.0}.items():
        _write_kineto(root, rank, 3, _memory_events(rank, growth))
    return _judge(_ingest(root))


def test_allocator_memory_growth_fires_on_memory_kept_across_steps(memory_trace_job) -> None:
    """Rank 0 keeps 100 MiB more at every step's start: 1024 → 1424 MiB over 5 steps
    (+400 MiB > 64 MiB, up in 4 of 4 transitions)."""
    f = _by(memory_trace_job["AllocatorMemoryGrowth"].findings, "rank")[(0,)]
    assert f.evidence["device"] == "gpu0" and f.evidence["steps"] == 5
    assert f.evidence["first_step_mib"] == pytest.approx(1024) and f.evidence[
        "last_step_mib"
    ] == pytest.approx(1424)
    assert f.evidence["growth_per_step_mib"] == pytest.approx(100, abs=1e-6)
    assert f.evidence["peak_allocated_mib"] == pytest.approx(1024 + 256 + 500)


def test_allocator_memory_growth_quiet_when_steps_free_what_they_allocate(memory_trace_job) -> None:
    """Rank 1 frees its 256 MiB every step (flat at 1024 MiB); rank 2 grows 48 MiB in all,
    under the 64 MiB threshold."""
    assert list(_by(memory_trace_job["AllocatorMemoryGrowth"].findings, "rank")) == [(0,)]


def test_allocator_memory_growth_on_the_sample_job_is_flat(tmp_path: Path) -> None:
    """The bundled sample (real torch.profiler memory events, host memory): the same bytes
    are live at every step's start, so nothing fires."""
    from analyzer.analyses import memory as memory_analyses

    sample = Path(__file__).resolve().parents[1] / "samples" / "sample-job"
    ds = ingest(open_source(str(sample)), cache_dir=tmp_path).dataset
    summary = memory_analyses.allocator_memory_summary(ds)
    assert sorted(summary["rank"]) == [0, 1] and set(summary["device"]) == {-1}
    assert (summary["steps"] >= 5).all() and (summary["growing_steps"] == 0).all()
    assert (summary["first_step_bytes"] == summary["last_step_bytes"]).all()
    assert _judge(ds)["AllocatorMemoryGrowth"].findings == []


# --------------------------------------------------------------------------- the data itself


def test_generated_jobs_have_no_stray_findings(memory_job, balance_job, batch_job) -> None:
    """On the generated jobs, healthy algo-1 is never named by any rule."""
    for results in (memory_job, balance_job[1], batch_job):
        for r in results.values():
            assert r.error is None, r.error
            for f in r.findings:
                assert f.evidence.get("node") != "algo-1", f


def test_max_initialization_time_does_not_judge_from_horovod_timelines(tmp_path: Path) -> None:
    """Horovod timelines record collectives, never steps (and the real one in the shared
    fixtures carries days-long durations): no sign of a step-less training loop, no verdict."""
    from tests.support.fixtures import find_fixtures

    root = find_fixtures()
    src = None if root is None else root / "sagemaker-debugger" / "horovod_timeline_traces"
    if src is None or not src.is_dir():
        pytest.skip("shared fixtures not found (../shared/fixtures or STEPSCOPE_FIXTURES)")
    ds = ingest(open_source(str(src)), cache_dir=tmp_path).dataset
    assert ds.table("framework_events").num_rows > 0
    result = _judge(ds)["MaxInitializationTime"]
    assert result.findings == [] and result.skipped_reason == "no step annotations in this job"


# --------------------------------------------------------------------------- every rule


@pytest.fixture(scope="module")
def system_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    """One GPU idle on algo-2, algo-3's CPUs and algo-4's I/O saturated while their GPUs idle."""
    root = tmp_path_factory.mktemp("sys")
    _system(
        root,
        nodes=4,
        minutes=12,
        patterns=[
            LowGPU(2, 1, 60, 700),
            CPUBottleneck(3, 60, 700),
            IOBottleneck(4, 60, 700),
        ],
    )
    return _judge(_ingest(root))


@pytest.fixture(scope="module")
def sample_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    """The bundled sample: a data-loader sleep on every rank, and rank 1 a straggler."""
    sample = Path(__file__).resolve().parents[1] / "samples" / "sample-job"
    return _judge(
        ingest(open_source(str(sample)), cache_dir=tmp_path_factory.mktemp("sample")).dataset
    )


@pytest.fixture(scope="module")
def init_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    return _init_job(tmp_path_factory.mktemp("init"), 23 * 60)


@pytest.fixture(scope="module")
def regressed_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    """A job whose GPUs run at 30 %, against a healthy baseline run."""
    root = tmp_path_factory.mktemp("regressed")
    _system(root / "base", nodes=1, minutes=3, patterns=[])
    _system(root / "slow", nodes=1, minutes=3, patterns=[LowGPU(1, None, 0, 180, level=30)])
    job = Job(_ingest(root / "slow"), baseline=Job(_ingest(root / "base")))
    return _judge(job)


@pytest.fixture(scope="module")
def training_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    """Health-hook records of one worker with every training pathology (SageMaker Debugger's
    rules)."""
    from tests.support.health_records import sick_training_job

    root = tmp_path_factory.mktemp("training")
    sick_training_job(root / "job")
    return _judge(_ingest(root))


#: rules whose Debugger defaults cannot fire (no default bounds): the parameters their
#: FIRES_ON job is judged with, kept under every rule-file override below
EXPLICIT_PARAMS = {"TensorVariance": "max_threshold = 100.0\n"}


@pytest.fixture(scope="module")
def variance_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    """A worker whose gradient variance jumps 10 000x (std 0.5 -> 50) at step 7, judged with
    TensorVariance's bounds set (SageMaker Debugger gives it none)."""
    from tests.support.health_records import tensor, write_health

    root = tmp_path_factory.mktemp("variance")
    write_health(
        root / "job",
        "algo-1",
        0,
        [tensor(s, "fc1.weight", "gradient", std=50.0 if s >= 7 else 0.5) for s in range(1, 11)],
    )
    tmp = tmp_path_factory.mktemp("variance-rules")
    return _judge(
        _ingest(root), f"[rules.TensorVariance]\n{EXPLICIT_PARAMS['TensorVariance']}", tmp
    )


#: faulthandler's dump of a rank that died of SIGABRT in finalization, as CPython 3.11 writes it
#: (the layout recorded in tests/test_collector_exits.py's real run; the thread ids are made up)
ABORT_DUMP = """Fatal Python error: Aborted

Thread 0x00007f3a2c9ff640 (most recent call first):
  <no Python frame>

Current thread 0x00007f3a3d1e2740 (most recent call first):
  <no Python frame>
"""


@pytest.fixture(scope="module")
def abort_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    """stepscope run's exit records of a 4-rank job: rank 0 finalized cleanly, rank 1 died of
    SIGABRT after its script ended (the teardown abort), rank 2 of SIGSEGV after its script
    ended, rank 3 has a dump but no record (it died before its script's code ended: not
    this rule's case)."""
    root = tmp_path_factory.mktemp("exits")
    folder = root / "job" / "exits"
    folder.mkdir(parents=True)
    for rank, dump in (
        (0, ""),
        (1, ABORT_DUMP),
        (2, ABORT_DUMP.replace("Aborted", "Segmentation fault")),
        (3, ABORT_DUMP),
    ):
        stem = f"algo-1_rank{rank}"
        if rank != 3:
            (folder / f"{stem}.json").write_text(
                json.dumps(
                    {
                        "version": 1,
                        "node": "algo-1",
                        "rank": rank,
                        "pid": 100 + rank,
                        "script_ended_ns": 1_700_000_000_000_000_000,
                        "optimizer_steps": 10,
                        "fault_file": f"{stem}.fault",
                    }
                )
            )
        (folder / f"{stem}.fault").write_text(dump)
    return _judge(_ingest(root))


def test_abort_at_exit_names_each_rank_that_died_after_its_training(abort_job: Judged) -> None:
    findings = abort_job["AbortAtExit"].findings
    assert [f.evidence["rank"] for f in findings] == [1, 2]
    teardown, segv = findings
    assert teardown.evidence["signal"] == "SIGABRT" and teardown.evidence["no_python_frame"] is True
    assert teardown.evidence["known_issue"] == "https://github.com/pytorch/pytorch/issues/190489"
    assert teardown.where == "rank 1 (algo-1)"
    assert "PyTorch's teardown abort at exit" in teardown.message
    assert "not a failure of the training" in teardown.message
    assert segv.evidence["signal"] == "SIGSEGV" and "known_issue" not in segv.evidence
    assert segv.title == "Rank 2 crashed at exit (SIGSEGV), after its training ended"


@pytest.fixture(scope="module")
def hang_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    """The stall watchdog's dumps of a 2-rank job in which rank 1 skipped collective #7 of
    process group 1 (tests/support/hang_dumps.py; tests/test_hangs.py has the rest)."""
    root = tmp_path_factory.mktemp("hang")
    status_0, status_1 = {"0": (7, 7), "1": (7, 6)}, {"0": (8, 7), "1": (6, 6)}
    tail_0 = [hang_dumps.entry(12, "0", 7), hang_dumps.entry(13, "1", 7)]
    tail_1 = [hang_dumps.entry(12, "0", 7), hang_dumps.entry(13, "0", 8)]
    job = root / "job"
    hang_dumps.dump(job, 0, hang_dumps.history() + tail_0, status_0, 54, "dist.all_reduce(x)")
    hang_dumps.dump(job, 1, hang_dumps.history() + tail_1, status_1, 47, "loss.backward()")
    return _judge(_ingest(root))


def test_collective_hang_names_the_rank_the_collective_and_the_line(hang_job: Judged) -> None:
    (f,) = hang_job["CollectiveHang"].findings
    assert (f.evidence["process_group"], f.evidence["seq"], f.evidence["ranks_missing"]) == (
        "1",
        7,
        [1],
    )
    assert "rank 1 was at train.py:47 in main: `loss.backward()`" in f.message


@pytest.fixture(scope="module")
def failed_job(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    """A job folder holding one host's CloudWatch log tail, as the SageMaker job source
    stores it (tests/test_job_failure.py reads real streams over moto's server)."""
    from analyzer.sources.job_logs import DOC_FORMAT

    root = tmp_path_factory.mktemp("failed")
    (root / "job" / "cloudwatch-logs").mkdir(parents=True)
    doc = {
        "format": DOC_FORMAT,
        "stream": "job/algo-2-1700000000",
        "host": "algo-2",
        "events": [[1, "step 11 loss: nan"], [2, "stopping"]],
    }
    (root / "job" / "cloudwatch-logs" / "algo-2-1700000000.json").write_text(json.dumps(doc))
    return _judge(_ingest(root))


def test_job_failure_names_the_class_and_host(failed_job: Judged) -> None:
    (f,) = failed_job["JobFailure"].findings
    assert (f.evidence["kind"], f.where) == ("nonfinite_loss", "node algo-2")
    assert f.title == "The loss became nan"


def test_abort_at_exit_has_no_verdict_without_exit_records(system_job: Judged) -> None:
    result = system_job["AbortAtExit"]
    assert (
        result.findings == []
        and result.skipped_reason
        and "no exit records" in result.skipped_reason
    )


#: a job each rule fires on (the fixtures of this module)
FIRES_ON = {
    "LowGPUUtilization": "system_job",
    "CPUBottleneck": "system_job",
    "IOBottleneck": "system_job",
    "GPUMemoryIncrease": "memory_job",
    "LoadBalancing": "balance_job",
    "BatchSize": "batch_job",
    "StepOutlier": "outlier_job",
    "MaxInitializationTime": "init_job",
    "Dataloader": "loader_job",
    "DataLoaderStall": "sample_job",
    "StragglerRank": "sample_job",
    "ExposedCommunication": "comm_job",
    "ExposedShardedCommunication": "sharded_job",
    "PipelineBubble": "pipeline_job",
    "AllToAllImbalance": "moe_job",
    "SmallCollectives": "small_collectives_job",
    "GPUStarvedByHost": "host_job",
    "AllocatorMemoryGrowth": "memory_trace_job",
    "AbortAtExit": "abort_job",
    "CollectiveHang": "hang_job",
    "JobFailure": "failed_job",
    **{
        rule: "training_job"
        for rule in (
            "LossNotDecreasing",
            "Overfit",
            "Overtraining",
            "VanishingGradient",
            "ExplodingTensor",
            "WeightUpdateRatio",
            "DeadRelu",
            "SaturatedActivation",
            "PoorWeightInitialization",
            "AllZero",
        )
    },
    "TensorVariance": "variance_job",
    "StalledTrainingRule": "training_job",
    "BaselineRegression": "regressed_job",
}


def test_every_evaluated_rule_has_a_job_it_fires_on() -> None:
    assert list(FIRES_ON) == list(registry())


@pytest.mark.parametrize("rule_id", list(FIRES_ON))
def test_severity_override_in_the_rule_file_applies_to_every_rule(
    rule_id: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """``severity = ...`` under ``[rules.<id>]`` sets the severity of every finding of that rule,
    and changes nothing else: checked on real findings of each rule."""
    value = request.getfixturevalue(FIRES_ON[rule_id])
    judged: Judged = value[1] if isinstance(value, tuple) else value
    default = BY_ID[rule_id].severity
    before = judged[rule_id].findings
    assert before and {f.severity for f in before} == {default}
    other = "error" if default == "info" else "info"
    after = _judge(
        judged.job,
        f'[rules.{rule_id}]\nseverity = "{other}"\n{EXPLICIT_PARAMS.get(rule_id, "")}',
        tmp_path,
    )[rule_id].findings
    assert {f.severity for f in after} == {other}
    assert [f.model_copy(update={"severity": default}) for f in after] == before

"""Rules on data with a known answer: generated SageMaker jobs, the recorded sample job and
its baseline run (the same job with nothing injected)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from analyzer.analyses import system as system_analyses
from analyzer.ingest import ingest
from analyzer.job import Job
from analyzer.sources import open_source
from rules.engine import evaluate
from rules.ruleset import load_ruleset
from tests.support.synthetic import (
    CPUBottleneck,
    IOBottleneck,
    LowGPU,
    generate_system_metrics,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"
BASELINE = REPO / "samples" / "sample-baseline"
START = 1_700_000_000.0


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("gen")
    generate_system_metrics(
        root / "job",
        nodes=5,
        gpus=2,
        cpus=4,
        minutes=30,
        interval_s=0.5,
        start=START,
        seed=7,
        patterns=[
            LowGPU(node=2, gpu=1, start_s=600, end_s=1500, level=5),
            CPUBottleneck(node=3, start_s=300, end_s=1700),
            IOBottleneck(node=5, start_s=200, end_s=1600),
        ],
    )
    ds = ingest(open_source(str(root / "job")), cache_dir=root / "cache").dataset
    results = {r.rule: r for r in evaluate(Job(ds), load_ruleset())}
    return ds, results


def test_low_gpu_utilization_names_the_node_gpu_and_window(generated) -> None:
    _ds, results = generated
    fired = results["LowGPUUtilization"].findings
    underused = [f for f in fired if f.evidence["kind"] == "underused"]
    assert {(f.evidence["node"], f.evidence["gpu"]) for f in underused} == {
        ("algo-2", "gpu1"),
        *{("algo-3", f"gpu{i}") for i in range(2)},
        *{("algo-5", f"gpu{i}") for i in range(2)},
    }
    f = next(f for f in underused if f.evidence["node"] == "algo-2")
    # the worst window lies inside the injected one (600 s .. 1500 s after the start)
    assert (
        _ts(f.evidence["worst_window_start"]) >= START + 600
        and _ts(f.evidence["worst_window_end"]) <= START + 1500 + 60
    )
    assert f.evidence["worst_p95"] < 70
    assert not any(f.evidence["node"] in ("algo-1", "algo-4") for f in fired)


def _cpu_bottleneck_snapshots(ds) -> pd.DataFrame:
    """Every node's snapshots, flagged as CPUBottleneck's defaults judge them (GPU under 10 %,
    a core over 90 %), for the pooled share SageMaker would compute."""
    frame = system_analyses.metric_frame(
        ds.table("system_metrics"), ["GPUUtilization", "CPUUtilization"]
    )
    snaps = system_analyses.system_snapshots(frame)
    return snaps.assign(bottleneck=(snaps["min_gpu_util"] < 10) & (snaps["max_resource"] > 90))


def test_cpu_bottleneck_fires_only_on_the_stalled_node(generated) -> None:
    ds, results = generated
    fired = results["CPUBottleneck"].findings
    assert [f.evidence["node"] for f in fired] == ["algo-3"]
    f = fired[0]
    assert abs(_ts(f.evidence["window_start"]) - (START + 300)) < 2
    assert abs(_ts(f.evidence["window_end"]) - (START + 1700)) < 2
    # SageMaker pools the five nodes' snapshots: the same data would not fire there.
    snaps = _cpu_bottleneck_snapshots(ds)
    pooled_share = snaps["bottleneck"].mean() * 100
    assert pooled_share < 50 < f.evidence["share_pct"]


def test_io_bottleneck_fires_only_on_its_node(generated) -> None:
    _ds, results = generated
    assert [f.evidence["node"] for f in results["IOBottleneck"].findings] == ["algo-5"]


def test_clean_nodes_raise_nothing(generated) -> None:
    _ds, results = generated
    for r in results.values():
        for f in r.findings:
            assert f.evidence.get("node") not in ("algo-1", "algo-4"), f


def _truths(job: Path) -> dict:
    """What the recorder injected into ``job`` (samples/<job>.INJECTED.json, beside it)."""
    return json.loads(job.with_name(job.name + ".INJECTED.json").read_text())


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    ds = ingest(open_source(str(SAMPLE)), cache_dir=tmp_path_factory.mktemp("c")).dataset
    return ds, {r.rule: r for r in evaluate(Job(ds), load_ruleset())}, _truths(SAMPLE)["injected"]


def test_sample_fires_exactly_the_injected_problems(sample) -> None:
    _ds, results, injected = sample
    fired = sorted((r.rule, f.evidence.get("rank")) for r in results.values() for f in r.findings)
    assert fired == [
        ("DataLoaderStall", 0),
        ("DataLoaderStall", 1),
        ("StragglerRank", injected["straggler_rank"]),
    ]


def test_sample_dataloader_stall_matches_injected_sleep(sample) -> None:
    _ds, results, injected = sample
    fired = results["DataLoaderStall"].findings
    assert sorted(f.evidence["rank"] for f in fired) == [0, 1]
    sleep = injected["dataloader_sleep_ms_per_batch"]
    for f in fired:
        assert abs(f.evidence["mean_wait_ms"] - sleep) / sleep < 0.05
        step = f.evidence["mean_step_ms"]
        assert abs(f.evidence["share_pct"] - sleep / step * 100) < 3


def test_sample_straggler_rank_and_its_excess(sample) -> None:
    _ds, results, injected = sample
    fired = results["StragglerRank"].findings
    assert [f.evidence["rank"] for f in fired] == [injected["straggler_rank"]]
    extra = injected["straggler_extra_ms_per_step"]
    ev = fired[0].evidence
    # collectives matched across the ranks: rank 1 is last at the all-reduce of every
    # profiled step, rank 0 waits there about the injected sleep each time
    assert ev["steps_last"] == ev["steps"] == len(_truths(SAMPLE)["profiled_steps"])
    assert abs(ev["others_wait_ms_per_step"] - extra) / extra < 0.05, ev
    # what rank 1 did more than rank 0 before the all-reduce: the sleep, which no profiled op
    # covers, plus the few tenths of a millisecond of Python around it
    assert ev["cause"] == "unrecorded" and ev["cause_share_pct"] > 90, ev
    assert extra * 0.95 <= ev["excess_ms"] <= extra * 1.1, ev


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory):
    return ingest(open_source(str(BASELINE)), cache_dir=tmp_path_factory.mktemp("b")).dataset


def test_baseline_run_fires_nothing(baseline) -> None:
    """The same job with nothing injected: no rule names a problem, and the ranks' own work
    per step is even (the straggler in the sample is the injected sleep, not the machine)."""
    assert _truths(BASELINE)["injected"] == {}
    results = evaluate(Job(baseline), load_ruleset())
    assert [(r.rule, f.message) for r in results for f in r.findings] == []
    judged = {r.rule for r in results if r.skipped_reason is None and r.error is None}
    assert judged >= {"DataLoaderStall", "StragglerRank", "AllocatorMemoryGrowth"}


def test_sample_against_its_baseline_regresses_by_the_injected_time(sample, baseline) -> None:
    """BaselineRegression on the sample vs its baseline: slower by about what was injected per
    step (the loader sleep on every rank plus the straggler's sleep everyone waits for)."""
    ds, _results, injected = sample
    results = {r.rule: r for r in evaluate(Job(ds, baseline=Job(baseline)), load_ruleset())}
    regressed = {f.evidence["metric"]: f.evidence for f in results["BaselineRegression"].findings}
    assert set(regressed) == {"step_time_mean_ms", "steps_per_s", "dataloader_stall_pct"}
    step = regressed["step_time_mean_ms"]
    added = injected["dataloader_sleep_ms_per_batch"] + injected["straggler_extra_ms_per_step"]
    assert abs((step["current"] - step["baseline"]) - added) / added < 0.15, step


def test_threshold_in_rule_file_changes_the_verdict(sample, tmp_path: Path) -> None:
    ds, _results, _inj = sample
    rules = tmp_path / "rules.toml"
    rules.write_text("[rules.DataLoaderStall]\nthreshold_pct = 80.0\n")
    relaxed = {r.rule: r for r in evaluate(Job(ds), load_ruleset(rules))}
    assert relaxed["DataLoaderStall"].findings == []


def test_report_sets_sagemakers_pooled_verdict_beside_ours(generated, tmp_path: Path) -> None:
    """With SageMaker's own rule outputs in the job folder, the report puts each beside stepscope's
    verdict: SageMaker's pooled CPUBottleneck stays quiet on this data, stepscope names algo-3."""
    from stepscope.render import markdown
    from stepscope.render.verdict import Verdict
    from stepscope.report.build import build

    ds, _results = generated
    job = Path(ds.meta.source)
    snaps = _cpu_bottleneck_snapshots(ds)
    reports = job / "rule-output" / "ProfilerReport" / "profiler-output" / "profiler-reports"
    reports.mkdir(parents=True, exist_ok=True)
    pooled = {
        "RuleTriggered": 0,
        "Violations": int(snaps["bottleneck"].sum()),
        "Datapoints": len(snaps),
        "RuleParameters": "threshold:50\ncpu_threshold:90\ngpu_threshold:10\npatience:1000",
        "Details": {},
    }
    (reports / "CPUBottleneck.json").write_text(json.dumps(pooled))
    (reports / "LowGPUUtilization.json").write_text(
        json.dumps({"RuleTriggered": 1, "Violations": 3, "Datapoints": 7200})
    )
    (reports / "OverallSystemUsage.json").write_text(
        json.dumps({"Details": {"CPU": {}}})
    )  # a summary: no verdict
    again = ingest(open_source(str(job)), cache_dir=tmp_path)
    job_again = Job(again.dataset, again.summary)
    results = evaluate(job_again, load_ruleset())
    report = build(job_again, load_ruleset(), results)
    rows = {r["rule"]: r for r in report.document()["sagemaker_rule_reports"]}
    assert set(rows) == {"CPUBottleneck", "LowGPUUtilization"}
    cpu = rows["CPUBottleneck"]
    assert (
        cpu["sagemaker_triggered"] == 0 and cpu["stepscope_fired"] is True and cpu["agree"] is False
    )
    assert cpu["stepscope_where"] == ["node algo-3"] and cpu["sagemaker_datapoints"] == len(snaps)
    assert rows["LowGPUUtilization"]["agree"] is True
    text = markdown.render(report, Verdict.of(report, "never"))
    assert (
        "## SageMaker's own rule reports" in text
        and "| CPUBottleneck | not triggered |" in text
        and "⚠ differs" in text
    )

"""A rule's findings over many ranks said once, numeric place order, and each node's metrics
source (issue 14 items 8 and 14, issue 11).

The pure grouping is tested on findings the rules' own ``finding()`` makes; the files on a
12-rank job made of the sample's two traces (ranks 0-11: text order would put 10 and 11
before 2) with CloudWatch instance metrics for a second node.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from analyzer.job import Job
from analyzer.sources import open_source
from analyzer.sources.cloudwatch import DOC_FORMAT
from rules.base import Finding
from rules.ruleset import CATALOG
from stepscope.report.grouping import group_findings, message_of, place_key, spans
from stepscope.report.sources import node_metrics_sources

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"
RANKS = 12


def exposed(rank: int, ms: float) -> Finding:
    """ExposedCommunication's finding for ``rank`` as the rule words it."""
    share = ms / 300 * 100
    return CATALOG["ExposedCommunication"]().finding(
        title=f"Rank {rank}: {ms:.0f} ms of exposed communication ({share:.0f}% of GPU time)",
        message=(
            f"{ms:.1f} ms of {ms + 20:.1f} ms of communication is not overlapped by computation "
            f"({share:.1f}% of 300.0 ms GPU busy time > 25.0%; overlap 10.0%)"
        ),
        evidence={
            "rank": rank,
            "exposed_comm_ms": ms,
            "comm_ms": ms + 20,
            "gpu_busy_ms": 300.0,
            "exposed_share_pct": round(share, 2),
            "comm_comp_overlap_pct": 10.0,
        },
        where=f"rank {rank}",
    )


def low_gpu(node: str, gpu: str, kind: str, p95: float, p5: float, **extra: Any) -> Finding:
    return CATALOG["LowGPUUtilization"]().finding(
        title=f"GPU {gpu} on {node} is {kind}",
        message=(
            f"{kind} in 2 of 4 scans; worst window p95={p95:.1f}% p5={p5:.1f}% "
            "(thresholds p95<70%, p5<10%)"
        ),
        evidence={
            "node": node,
            "gpu": gpu,
            "kind": kind,
            "violations": 2,
            "worst_p95": p95,
            "worst_p5": p5,
            **extra,
        },
        where=f"node {node}, {gpu}",
    )


def test_64_ranks_are_one_line_with_the_range_and_the_worst() -> None:
    """ "all 64 ranks: ... (worst: rank N)", every finding kept under it in numeric order."""
    ms = {r: 120.0 + (r * 37) % 53 for r in range(64)}
    findings = sorted(
        (exposed(r, v) for r, v in ms.items()), key=lambda f: f.where
    )  # text order: 0, 1, 10, ...
    groups = group_findings(
        findings, ranks=64, rule_titles={"ExposedCommunication": "Exposed communication"}
    )
    assert len(groups) == 1
    g = groups[0]
    assert (g.rule, g.severity, g.title, g.where, g.count) == (
        "ExposedCommunication",
        "warning",
        "Exposed communication",
        "all 64 ranks",
        64,
    )
    assert g.locations == [f"rank {r}" for r in range(64)]
    assert [findings[i].where for i in g.findings] == g.locations and sorted(g.findings) == list(
        range(64)
    )
    worst = max(ms, key=lambda r: (ms[r], -r))
    assert findings[g.worst].where == f"rank {worst}"
    lo, hi = min(ms.values()), max(ms.values())
    assert g.message == (
        f"{lo:.1f}–{hi:.1f} ms of communication not overlapped by computation "
        f"({lo / 3:.0f}–{hi / 3:.0f}% of GPU busy time); worst: rank {worst}"
    )


def test_some_ranks_of_many() -> None:
    g = group_findings([exposed(17, 150.0), exposed(3, 140.0)], ranks=64)[0]
    assert (g.where, g.locations, g.count) == ("ranks 3 and 17 of 64", ["rank 3", "rank 17"], 2)
    assert g.message.endswith("; worst: rank 17")
    many = group_findings([exposed(r, 130.0) for r in (*range(8), 9, 12, 13, 14, 40)], ranks=64)[0]
    assert many.where == "ranks 0–7, 9, 12–14 and 40 of 64"
    assert many.message.startswith("130.0 ms of communication")  # one value, no "130.0–130.0"
    # traces of some ranks only: no "of 4" after an id of 130
    assert (
        group_findings([exposed(9, 1.0), exposed(130, 2.0)], ranks=4)[0].where
        == "ranks 9 and 130 (2 of 4 ranks)"
    )


def test_a_finding_alone_is_a_group_of_one_as_it_is() -> None:
    f = exposed(5, 140.0)
    (g,) = group_findings([f], ranks=64)
    assert (g.title, g.where, g.message, g.count, g.findings, g.worst) == (
        f.title,
        "rank 5",
        f.message,
        1,
        [0],
        0,
    )


def test_patterns_stay_apart_and_gpus_are_counted() -> None:
    """Underused and fluctuating GPUs are two patterns; a CloudWatch verdict (other evidence)
    a third; a different severity a fourth. GPUs are counted against the job's GPUs."""
    fs = [
        low_gpu("algo-10", "gpu1", "underused", 4.0, 0.1),
        low_gpu("algo-2", "gpu0", "underused", 2.0, 0.1),
        low_gpu("algo-2", "gpu1", "underused", 3.0, 0.2),
        low_gpu("algo-3", "gpu0", "fluctuating", 90.0, 0.3),
        low_gpu("algo-3", "gpu1", "fluctuating", 91.0, 0.5),
        low_gpu(
            "algo-4",
            "gpu-mean",
            "underused",
            30.0,
            20.0,
            metrics_source="cloudwatch",
            resolution_s=60.0,
        ),
    ]
    fs[-1].message += " (judged on CloudWatch's 60 s datapoints)"
    err = low_gpu("algo-5", "gpu0", "underused", 1.0, 0.0)
    err.severity = "error"
    groups = group_findings([*fs, err], nodes=12, gpus=24)
    by = {(g.severity, g.locations[0]): g for g in groups}
    under = by[("warning", "node algo-2, gpu0")]
    assert under.locations == ["node algo-2, gpu0", "node algo-2, gpu1", "node algo-10, gpu1"]
    assert under.where == "3 of 24 GPUs on algo-2 and algo-10"
    assert (
        under.message
        == "GPU utilization p95 2.0–4.0% in the worst window (in 2 scans); worst: node algo-2, gpu0"
    )
    fluct = by[("warning", "node algo-3, gpu0")]
    assert fluct.count == 2 and fluct.message.startswith(
        "GPU utilization p5 0.3–0.5% in the worst window"
    )
    cw = by[("warning", "node algo-4, gpu-mean")]
    assert cw.count == 1 and cw.message.endswith("(judged on CloudWatch's 60 s datapoints)")
    assert by[("error", "node algo-5, gpu0")].count == 1
    assert len(groups) == 4
    nodes = group_findings(
        [low_gpu(n, "gpu0", "underused", 3.0, 0.1) for n in ("algo-1", "algo-2")], nodes=2, gpus=2
    )
    assert nodes[0].where == "both GPUs"


def test_a_rule_without_a_figure_still_groups() -> None:
    """A rule the grouping knows no figure of (a new one) quotes its first finding."""
    rule = CATALOG["StragglerRank"]()
    fs = [
        Finding(
            rule="SomeNewRule",
            severity="warning",
            title=f"Rank {r} odd",
            message=f"rank {r}: odd by {r} ms",
            evidence={"rank": r},
            recommendation=rule.recommendation,
            where=f"rank {r}",
        )
        for r in (11, 2)
    ]
    (g,) = group_findings(fs, ranks=16)
    assert (g.where, g.message) == ("ranks 2 and 11 of 16", "e.g. rank 2: odd by 2 ms")


def test_place_said_once_and_numeric_order() -> None:
    f = Finding(
        rule="X",
        severity="info",
        title="t",
        message="rank 0: 3 ms",
        evidence={},
        recommendation="r",
        where="rank 0",
    )
    assert message_of(f) == "3 ms"
    f2 = f.model_copy(update={"message": "algo-2: 3 ms", "where": "node algo-2"})
    assert message_of(f2) == "3 ms"
    assert sorted(["rank 10", "rank 9", "rank 1, stream 7", "rank 1"], key=place_key) == [
        "rank 1",
        "rank 1, stream 7",
        "rank 9",
        "rank 10",
    ]
    assert sorted(
        ["node algo-10", "node algo-2", "node algo-2, gpu10", "node algo-2, gpu9"], key=place_key
    ) == ["node algo-2", "node algo-2, gpu9", "node algo-2, gpu10", "node algo-10"]
    assert (
        spans([0, 1, 2, 3, 7, 9]) == "0–3, 7 and 9"
        and spans([4]) == "4"
        and spans([1, 2]) == "1 and 2"
    )


# --------------------------------------------------------------------------- the files


def twelve_rank_job(root: Path) -> Path:
    """The sample's traces as ranks 0-11 of node algo-1 (even ranks rank 0's, odd rank 1's),
    its system metrics, and one-minute CloudWatch metrics of an idle node algo-2."""
    job = root / "job12"
    (job / "system").mkdir(parents=True)
    traces = sorted(SAMPLE.glob("*.pt.trace.json.gz"))
    for rank in range(RANKS):
        doc = json.loads(gzip.decompress(traces[rank % 2].read_bytes()))
        doc["distributedInfo"] = {**doc["distributedInfo"], "rank": rank, "world_size": RANKS}
        stamp = traces[rank % 2].name.split(".")[1]
        (job / f"algo-1_rank{rank}.{stamp}.pt.trace.json.gz").write_bytes(
            gzip.compress(json.dumps(doc).encode())
        )
    for p in (SAMPLE / "system").rglob("*.json"):
        dest = job / p.relative_to(SAMPLE)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(p.read_bytes())
    start = 1796159400.0  # the sample's first system-metrics minute
    ts = [start + 60 * m for m in range(40)]
    metrics = {
        "GPUUtilization": [4 * 5.0] * 40,
        "GPUMemoryUtilization": [4 * 50.0] * 40,
        "CPUUtilization": [48 * 20.0] * 40,
    }
    doc = {
        "format": DOC_FORMAT,
        "host": "algo-2",
        "instance_type": "ml.g5.12xlarge",
        "gpus": 4,
        "vcpus": 48,
        "period_s": 60,
        "metrics": {k: {"timestamps": ts, "values": v} for k, v in metrics.items()},
    }
    (job / "cloudwatch" / "algo-2").mkdir(parents=True)
    (job / "cloudwatch" / "algo-2" / "2026-12-01.json").write_text(json.dumps(doc))
    return job


@pytest.fixture(scope="module")
def twelve(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("g")
    out = root / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepscope",
            "report",
            str(twelve_rank_job(root)),
            "--out",
            str(out),
            "--cache",
            str(root / "cache"),
            "--fail-on",
            "error",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr  # DataLoaderStall is an error on every rank
    return out


def test_json_keeps_every_finding_in_numeric_order_and_adds_groups(twelve: Path) -> None:
    doc = json.loads((twelve / "report.json").read_text())
    assert doc["job"]["ranks"] == RANKS
    stall = [f for f in doc["findings"] if f["rule"] == "DataLoaderStall"]
    assert [f["where"] for f in stall] == [f"rank {r}" for r in range(RANKS)]  # not 0, 1, 10, 11, 2
    groups = doc["finding_groups"]
    assert sorted(i for g in groups for i in g["findings"]) == list(range(len(doc["findings"])))
    (g,) = [g for g in groups if g["rule"] == "DataLoaderStall"]
    assert (g["where"], g["count"], g["locations"]) == (
        f"all {RANKS} ranks",
        RANKS,
        [f["where"] for f in stall],
    )
    worst = max(stall, key=lambda f: f["evidence"]["mean_wait_ms"])
    assert (
        doc["findings"][g["worst"]]["evidence"]["mean_wait_ms"] == worst["evidence"]["mean_wait_ms"]
    )
    assert g["message"].endswith(f"; worst: {doc['findings'][g['worst']]['where']}")
    assert all(not f["message"].startswith(f["where"]) for f in doc["findings"])


def test_metrics_source_per_node_and_in_cloudwatch_verdicts(twelve: Path) -> None:
    doc = json.loads((twelve / "report.json").read_text())
    src = {n["node"]: n["metrics_source"] for n in doc["metrics"]["nodes"]}
    assert src == {
        "algo-1": {
            "source": "debugger-format",
            "label": "Debugger-format files",
            "resolution_s": 0.5,
        },
        "algo-2": {"source": "cloudwatch", "label": "CloudWatch", "resolution_s": 60.0},
    }
    low = [f for f in doc["findings"] if f["rule"] == "LowGPUUtilization"]
    assert [f["where"] for f in low] == ["node algo-2, gpu-mean"]
    assert low[0]["message"].endswith("(judged on CloudWatch's 60 s datapoints)")
    md = (twelve / "report.md").read_text()
    assert (
        "| algo-1 | Debugger-format files at 0.5 s |" in md
        and "| algo-2 | CloudWatch at 60 s |" in md
    )
    html = (twelve / "report.html").read_text()
    assert "<td>algo-2</td><td>CloudWatch at 60 s</td>" in html
    props = {
        p.get("name"): p.get("value")
        for p in ET.parse(twelve / "report.junit.xml").getroot().iter("property")
        if str(p.get("name")).startswith("metrics_source ")  # beside the run's own properties
    }
    assert props == {
        "metrics_source algo-1": "Debugger-format files at 0.5 s",
        "metrics_source algo-2": "CloudWatch at 60 s",
    }


def test_markdown_and_html_say_a_group_once_with_its_findings_folded(twelve: Path) -> None:
    md = (twelve / "report.md").read_text()
    table = md.split("## Findings")[1].split("\n\n")[1]
    rows = [ln for ln in table.splitlines() if "| DataLoaderStall |" in ln]
    assert len(rows) == 1 and f"| all {RANKS} ranks | " in rows[0]
    folded = md.split(
        f"<details><summary>DataLoaderStall, all {RANKS} ranks: "
        f"each of the {RANKS} findings</summary>"
    )[1]
    folded = folded.split("</details>")[0]
    assert [ln.split(" | ")[0] for ln in folded.splitlines() if ln.startswith("| rank ")] == [
        f"| rank {r}" for r in range(RANKS)
    ]
    html = (twelve / "report.html").read_text()
    findings = html.split("<h2>Findings</h2>")[1].split("</table>\n")[0]
    assert findings.count("<td>DataLoaderStall</td>") == 1
    assert f"<details><summary>each of the {RANKS} findings</summary>" in findings


def test_junit_says_the_group_once_and_each_place_once(twelve: Path) -> None:
    doc = json.loads((twelve / "report.json").read_text())
    (g,) = [g for g in doc["finding_groups"] if g["rule"] == "DataLoaderStall"]
    case = next(
        c
        for c in ET.parse(twelve / "report.junit.xml").getroot().iter("testcase")
        if c.get("name") == "DataLoaderStall"
    )
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == f"all {RANKS} ranks: {g['message']}"
    lines = (failure.text or "").splitlines()
    # the group's line, then what its findings cost over the run (GPU-hours without a price)
    head, _, costs = lines[0].partition(" [costs ")
    assert head == f"[error] all {RANKS} ranks: {g['message']}"
    assert re.fullmatch(r"[\d.]+ GPU-h over the run\]", costs), lines[0]
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == [f"rank {r}" for r in range(RANKS)]
    assert not any(f"rank {r}: rank {r}" in (failure.text or "") for r in range(RANKS))


def test_messages_lead_with_what_a_user_acts_on(twelve: Path) -> None:
    """Issue 14 item 8 (with issue 20's cross-rank verdict): how often the rank came last and
    what the others waited, the ratio after, the cause last; no message repeats the place its
    ``where`` already says."""
    doc = json.loads((twelve / "report.json").read_text())
    for f in doc["findings"]:
        assert not f["message"].startswith((f["where"], f["where"].removeprefix("node "))), f
    straggler = [f for f in doc["findings"] if f["rule"] == "StragglerRank"]
    assert straggler
    for f in straggler:
        ev = f["evidence"]
        lead, ratio = f["message"].split(" (", 1)
        assert lead == (
            f"arrives last at the step's collectives in {ev['steps_last']} of {ev['steps']} "
            f"steps; the other 11 ranks wait {ev['others_wait_ms_per_step']:.1f} ms per such "
            f"step in total, {ev['wait_ms_per_waiting_rank']:.1f} ms each"
        )
        assert f"{ev['wait_share_pct']:.0f}% of the {ev['median_step_ms']:.1f} ms" in ratio
        assert ratio.endswith(f"in {'time no profiled op covers'} (Python code, sleeping) (96 %)")
    stall = next(f for f in doc["findings"] if f["rule"] == "DataLoaderStall")
    assert stall["title"].startswith(
        f"Rank {stall['evidence']['rank']} waits for data "
        f"{stall['evidence']['mean_wait_ms']:.1f} ms per step"
    )


def test_the_collector_is_told_by_what_only_it_samples(tmp_path: Path) -> None:
    """algo-1's files hold NVML power (only stepscope's collector writes it), sampled every
    0.2 s; algo-2's hold what SageMaker Debugger writes too, every second."""
    job = tmp_path / "job"
    folder = job / "system" / "incremental" / "2023111422"
    folder.mkdir(parents=True)
    t0 = 1700000000
    one = "".join(
        f'{{"Type":"gpu","Name":"gpu{g}","Dimension":"{d}","Value":50,"NodeId":"algo-1",'
        f'"Timestamp":{t0 + i * 0.2:.1f}}}\n'
        for i in range(300)
        for g in (0, 1)
        for d in ("GPUUtilization", "GPUPowerInWatts")
    )
    two = "".join(
        f'{{"Type":"cpu","Name":"cpu{c}","Dimension":"CPUUtilization","Value":20,"NodeId":"algo-2",'
        f'"Timestamp":{t0 + i}}}\n'
        for i in range(60)
        for c in (0, 1)
    )
    (folder / f"{t0}.algo-1.json").write_text(one)
    (folder / f"{t0}.algo-2.json").write_text(two)
    src = node_metrics_sources(Job.open(open_source(str(job)), cache_dir=str(tmp_path / "c")))
    assert {n: (s.source, s.resolution_s, s.text()) for n, s in src.items()} == {
        "algo-1": ("collector", 0.2, "stepscope collector at 0.2 s"),
        "algo-2": ("debugger-format", 1.0, "Debugger-format files at 1 s"),
    }

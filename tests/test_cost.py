"""What each finding costs: instance type from each source (DescribeTrainingJob,
resourceconfig.json, --instance-type), the price (table, --price-per-hour, none known), the
run against the profiled window, the ordering by cost and ``--fail-on-cost``.

The bundled sample's findings (2 ranks on one node, a 13.000461 s window) lose, by their
rules' own counts: DataLoaderStall rank 1 0.4335 GPUs (43.35% of its step), rank 0 0.4304,
StragglerRank rank 1 0.3615 (one rank waits 36.15% of the median step): 1.2254 GPUs in all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analyzer.sources.local import LocalSource
from analyzer.sources.sagemaker_job import SageMakerJobSource
from rules.ruleset import load_ruleset
from stepscope.collectors.launcher import keep_resource_config
from stepscope.report import cost
from stepscope.report.analyze import Analysis, analyze
from stepscope.report.cost import Pricing
from tests.support.aws_fixtures import AwsEndpoint
from tests.support.aws_server import set_job_times
from tests.test_source_sagemaker_job import _job_name, create_job

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"
WINDOW_S = 13.000461
LOST = 0.4335 + 0.4304 + 0.3615  # GPUs' worth of time, from the findings' evidence


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analyze(str(SAMPLE), load_ruleset(None), cache_dir=str(tmp_path_factory.mktemp("c")))


def costed(a: Analysis, meta: Any, pricing: Pricing | None = None) -> Any:
    """The sample's findings priced for the job ``meta`` describes."""
    fs = a.report.findings
    return cost.compute(
        meta,
        fs,
        [cost.waste_of(f) for f in fs],
        pricing=pricing,
        window_s=a.report.job.time_span.seconds if a.report.job.time_span else None,
        nodes=a.report.job.nodes,
        ranks=a.report.job.ranks,
    )


def test_findings_are_ordered_by_cost(sample: Analysis) -> None:
    """The rules by what their findings lose together: DataLoaderStall 0.4304 (rank 0) +
    0.4335 (rank 1) = 0.8639 GPUs > StragglerRank 0.3615 (the others' wait); a rule's own
    findings in place order (the report's tables read rank 0, rank 1, ... rank 10)."""
    rep = sample.report
    assert rep.cost is not None
    assert [(f.rule, f.where) for f in rep.findings] == [
        ("DataLoaderStall", "rank 0"),
        ("DataLoaderStall", "rank 1"),
        ("StragglerRank", "rank 1 on algo-1"),
    ]
    assert [c.finding for c in rep.cost.findings] == [0, 1, 2]
    assert [c.gpus for c in rep.cost.findings] == [0.4304, 0.4335, 0.3615]
    by_rule: dict[str, float] = {}
    for f, c in zip(rep.findings, rep.cost.findings, strict=True):
        by_rule[f.rule] = by_rule.get(f.rule, 0.0) + c.gpu_hours
    assert list(by_rule.values()) == sorted(by_rule.values(), reverse=True)


def test_instance_type_flag_with_price_per_hour(sample: Analysis) -> None:
    """ml.g5.12xlarge: 4 GPUs (table), 1 instance (the data's one node), $7.09 an hour given.
    Lost: 1.2254 GPUs × 13.000461 s / 3600 = 0.0044252 GPU-h; × 7.09 / 4 = $0.0078437.
    Share: 1.2254 / 4 GPUs = 30.64%. No run length locally: the window only, said so."""
    c = costed(sample, sample.job.dataset.meta, Pricing("ml.g5.12xlarge", price_per_hour=7.09))
    assert (c.instance_type, c.instance_type_source) == ("ml.g5.12xlarge", "--instance-type")
    assert (c.instance_count, c.instance_count_source) == (1, "nodes in the data")
    assert (c.gpus_per_instance, c.gpus_source) == (4, "price table")
    assert (c.price_per_hour, c.price_source) == (7.09, "--price-per-hour")
    assert c.lost_gpu_hours == pytest.approx(LOST * WINDOW_S / 3600, abs=1e-4)
    assert c.lost_usd == pytest.approx(LOST * WINDOW_S / 3600 * 7.09 / 4, abs=1e-4)
    assert c.recoverable_pct == pytest.approx(100 * LOST / 4, abs=0.01)
    assert not c.extrapolated and c.label.startswith("over the profiled window (13.0 s) only")


def test_unknown_instance_type_gets_gpu_hours_only(sample: Analysis) -> None:
    """No price for ml.zz.large: GPU-hours (0.0044252) and the reason, no dollars; GPUs per
    instance from the data (2 ranks on 1 node)."""
    c = costed(sample, sample.job.dataset.meta, Pricing("ml.zz.large"))
    assert c.lost_usd is None and all(f.usd is None for f in c.findings)
    assert c.lost_gpu_hours == pytest.approx(LOST * WINDOW_S / 3600, abs=1e-4)
    assert c.note == "no price known for ml.zz.large in us-east-1; --price-per-hour sets one"
    assert (c.gpus_per_instance, c.gpus_source) == (2, "ranks per node in the data")
    assert "no price known for ml.zz.large" in cost.headline(c)


def test_resourceconfig_json_in_a_local_folder(sample: Analysis, tmp_path: Path) -> None:
    """``stepscope run`` keeps SageMaker's resourceconfig.json beside its output; the local
    source reads the instance type and host count from it: ml.p4d.24xlarge × 2, 8 GPUs each.
    With $32 an hour: 1.2254 × 13.000461 / 3600 × 32 / 8 = $0.0177; share 1.2254 / 16."""
    config = tmp_path / "resourceconfig.json"
    config.write_text(
        json.dumps(
            {
                "current_host": "algo-1",
                "current_instance_type": "ml.p4d.24xlarge",
                "hosts": ["algo-1", "algo-2"],
            }
        )
    )
    out = tmp_path / "out"
    out.mkdir()
    keep_resource_config(out, config)
    keep_resource_config(out, tmp_path / "missing.json")  # off SageMaker: nothing, no error
    meta = LocalSource(out).metadata()
    assert (meta.instance_type, meta.instance_count) == ("ml.p4d.24xlarge", 2)
    c = costed(sample, meta, Pricing(price_per_hour=32.0))
    assert c.instance_type_source == c.instance_count_source == "resourceconfig.json"
    assert c.gpus_per_instance == 8
    assert c.lost_usd == pytest.approx(LOST * WINDOW_S / 3600 * 32 / 8, abs=1e-4)
    assert c.recoverable_pct == pytest.approx(100 * LOST / 16, abs=0.01)
    (out / "resourceconfig.json").write_text("{not json")
    assert LocalSource(out).metadata().instance_type is None  # damaged: no type, no failure


def test_sagemaker_job_extrapolates_to_the_run(sample: Analysis, aws_endpoint: AwsEndpoint) -> None:
    """DescribeTrainingJob: ml.p4d.24xlarge × 2 (16 GPUs), trained for one hour. At $10 an
    hour: lost 1.2254 GPUs × 1 h = 1.2254 GPU-h × 10 / 8 = $1.5318; the run 2 × 1 h × 10 =
    $20; share 1.2254 / 16 = 7.66%."""
    name = _job_name()
    create_job(aws_endpoint, name, aws_endpoint.create_bucket())
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    set_job_times(name, start=start, end=start + timedelta(hours=1), region=aws_endpoint.region)
    meta = SageMakerJobSource(name, cloudwatch=False).metadata()
    c = costed(sample, meta, Pricing(price_per_hour=10.0))
    assert (c.instance_type, c.instance_count) == ("ml.p4d.24xlarge", 2)
    assert c.instance_type_source == "DescribeTrainingJob" and c.region == aws_endpoint.region
    assert c.run_s == 3600 and c.extrapolated
    assert c.label.startswith("extrapolated from the profiled window (13.0 s) to the run (3,600 s")
    assert c.lost_gpu_hours == pytest.approx(LOST, abs=1e-3)
    assert c.lost_usd == pytest.approx(LOST * 10 / 8, abs=1e-3)
    assert c.run_usd == pytest.approx(20.0)
    assert c.recoverable_pct == pytest.approx(100 * LOST / 16, abs=0.01)
    assert [f.usd for f in c.findings] == pytest.approx([0.538, 0.5419, 0.4519], abs=1e-3)
    # the flag wins over the job's own
    flagged = costed(sample, meta, Pricing("ml.g5.xlarge", 3, price_per_hour=1.0))
    assert (flagged.instance_type, flagged.instance_count) == ("ml.g5.xlarge", 3)
    assert flagged.gpus_per_instance == 1


def test_price_table_cites_every_figure() -> None:
    """Every price and GPU count names where it came from, and the table its date; the docs
    say the date."""
    table = cost.price_table()
    assert table["taken"] and table["pricing_page"].startswith("https://aws.amazon.com/")
    for itype, spec in table["gpus"].items():
        assert itype.startswith("ml.") and spec["gpus"] >= 1 and spec["source"].startswith("http")
    for region, prices in table["prices"].items():
        for itype, entry in prices.items():
            assert entry["usd_per_hour"] > 0 and entry["source"].startswith("http"), (region, itype)
    assert table["taken"] in (REPO / "docs" / "cli-report.md").read_text()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepscope", *args], capture_output=True, text=True, timeout=300
    )


def test_fail_on_cost_sets_the_exit_code(tmp_path: Path) -> None:
    """$100 an hour for 4 GPUs: the findings cost 0.0044252 × 100 / 4 = $0.11 over the
    window: over a $0.05 budget exits 1, under $1 exits 0; with no price it cannot judge: 2."""
    common = ["report", str(SAMPLE), "--fail-on", "never", "--cache", str(tmp_path / "c")]
    priced = ["--instance-type", "ml.g5.12xlarge", "--price-per-hour", "100"]
    over = run(*common, "--out", str(tmp_path / "a"), *priced, "--fail-on-cost", "0.05")
    assert over.returncode == 1, over.stderr
    assert "FAIL: the findings cost $0.111 over the run (--fail-on-cost 0.05)" in over.stderr
    doc = json.loads((tmp_path / "a" / "report.json").read_text())
    assert doc["cost"]["lost_usd"] == pytest.approx(0.1106, abs=1e-3)
    assert "costs" not in doc["findings"][0]  # the findings' rows are unchanged
    md = (tmp_path / "a" / "report.md").read_text()
    assert "cost over the run" in md and "Findings lose" in md
    under = run(*common, "--out", str(tmp_path / "b"), *priced, "--fail-on-cost", "1")
    assert under.returncode == 0, under.stderr
    unknown = run(*common, "--out", str(tmp_path / "c2"), "--instance-type", "ml.zz.large",
                  "--fail-on-cost", "1")  # fmt: skip
    assert unknown.returncode == 2
    assert (
        unknown.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "--fail-on-cost needs the findings' cost in dollars: "
            "no price known for ml.zz.large in us-east-1; --price-per-hour sets one"
        )
    )


def test_pricing_rejects_bad_values() -> None:
    with pytest.raises(Exception, match="--instance-count must be at least 1"):
        replace(Pricing(), instance_count=0)


def test_junit_lists_the_costliest_rule_first(sample: Analysis) -> None:
    """JUnit's test cases follow the report's order: the rules with findings, costliest
    first (DataLoaderStall before StragglerRank on the sample), then the rest."""
    import xml.etree.ElementTree as ET

    from stepscope.render import junit
    from stepscope.render.verdict import Verdict

    xml = junit.render(sample.report, Verdict.of(sample.report, "error"))
    names = [c.get("name") for c in ET.fromstring(xml).iter("testcase")]
    assert names[:2] == ["DataLoaderStall", "StragglerRank"], names
    assert len(names) == len(sample.report.rules)

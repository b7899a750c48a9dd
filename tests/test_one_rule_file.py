"""One rule file, two judges: the same threshold change moves both the RuleParameters
attached to the SageMaker job and the local report's verdict on the same data."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.ingest import ingest
from analyzer.job import Job
from analyzer.sources import open_source
from rules.engine import evaluate
from rules.ruleset import load_ruleset
from stepscope.attach.boto3_request import create_training_job_fields
from tests.support.synthetic import LowGPU, generate_system_metrics


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("job")
    # GPU 0 of algo-1 runs at ~50 % for the whole job: under p95 70, over p95 40.
    generate_system_metrics(
        root / "job",
        nodes=1,
        gpus=2,
        cpus=4,
        minutes=12,
        interval_s=0.5,
        seed=3,
        patterns=[LowGPU(node=1, gpu=0, start_s=0, end_s=720, level=50)],
    )
    return ingest(open_source(str(root / "job")), cache_dir=root / "cache").dataset


def _low_gpu_params(fields: dict) -> dict[str, str]:
    rule = next(
        r
        for r in fields["ProfilerRuleConfigurations"]
        if r["RuleConfigurationName"] == "LowGPUUtilization"
    )
    return rule["RuleParameters"]


def test_same_file_changes_attachment_and_verdict(dataset, tmp_path: Path) -> None:
    strict = load_ruleset()
    relaxed_file = tmp_path / "rules.toml"
    relaxed_file.write_text("[rules.LowGPUUtilization]\nthreshold_p95 = 40\n")
    relaxed = load_ruleset(relaxed_file)

    attached_strict = _low_gpu_params(
        create_training_job_fields(strict, "us-west-2", "s3://b/out", debugger=True)
    )
    attached_relaxed = _low_gpu_params(
        create_training_job_fields(relaxed, "us-west-2", "s3://b/out", debugger=True)
    )
    assert attached_strict["threshold_p95"] == "70" and attached_relaxed["threshold_p95"] == "40"

    fired_strict = {r.rule: r for r in evaluate(Job(dataset), strict)}["LowGPUUtilization"].findings
    fired_relaxed = {r.rule: r for r in evaluate(Job(dataset), relaxed)}[
        "LowGPUUtilization"
    ].findings
    assert [
        (f.evidence["node"], f.evidence["gpu"])
        for f in fired_strict
        if f.evidence["kind"] == "underused"
    ] == [("algo-1", "gpu0")]
    assert not [f for f in fired_relaxed if f.evidence["kind"] == "underused"]

"""SageMakerJobSource against a real local endpoint: a job created with CreateTrainingJob,
its output put under the S3 paths SageMaker would use."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

import pytest

from analyzer.errors import SourceError
from analyzer.sources import open_source
from analyzer.sources.base import Source
from analyzer.sources.s3 import NO_CREDENTIALS_MESSAGE
from analyzer.sources.sagemaker_job import SageMakerJobSource, job_output_prefixes
from tests.support.aws_fixtures import AwsEndpoint

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def _job_name() -> str:
    return f"stepscope-test-{secrets.token_hex(4)}"


def create_job(aws: AwsEndpoint, name: str, bucket: str, **overrides: Any) -> dict[str, Any]:
    """CreateTrainingJob through the endpoint, with the profiler/debugger fields the
    SageMaker Python SDK sends; ``overrides`` replace (or, when None, drop) fields."""
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "img:latest", "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {
            "InstanceType": "ml.p4d.24xlarge",
            "InstanceCount": 2,
            "VolumeSizeInGB": 50,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "ProfilerConfig": {
            "S3OutputPath": f"s3://{bucket}/profiler",
            "ProfilingIntervalInMilliseconds": 500,
        },
        "ProfilerRuleConfigurations": [
            {
                "RuleConfigurationName": "ProfilerReport",
                "RuleEvaluatorImage": "rules:latest",
                "RuleParameters": {"rule_to_invoke": "ProfilerReport"},
            },
            {
                "RuleConfigurationName": "LowGPUUtilization",
                "RuleEvaluatorImage": "rules:latest",
                "RuleParameters": {"rule_to_invoke": "LowGPUUtilization"},
            },
        ],
        "DebugHookConfig": {"S3OutputPath": f"s3://{bucket}/debug"},
        "DebugRuleConfigurations": [
            {"RuleConfigurationName": "LossNotDecreasing", "RuleEvaluatorImage": "rules:latest"},
        ],
        "TensorBoardOutputConfig": {"S3OutputPath": f"s3://{bucket}/tb"},
        "Environment": {"SM_DEBUG": "1"},
    }
    for key, value in overrides.items():
        if value is None:
            request.pop(key, None)
        else:
            request[key] = value
    aws.sagemaker.create_training_job(**request)
    return request


JOB_FILES = {
    # S3 key under the bucket (with {job}) -> logical key the source must give it
    "profiler/{job}/profiler-output/system/incremental/2020060300/1591160699.algo-1.json": (
        "profiler-output/system/incremental/2020060300/1591160699.algo-1.json"
    ),
    "profiler/{job}/profiler-output/framework/pytorch/trace.json": (
        "profiler-output/framework/pytorch/trace.json"
    ),
    (
        "profiler/{job}/rule-output/ProfilerReport/profiler-output/profiler-reports/"
        "LowGPUUtilization.json"
    ): "rule-output/ProfilerReport/profiler-output/profiler-reports/LowGPUUtilization.json",
    "debug/{job}/debug-output/index/000000000/000000000000_worker_0.json": (
        "debug-output/index/000000000/000000000000_worker_0.json"
    ),
    "tb/{job}/tensorboard-output/plugins/profiler/host_1.pt.trace.json.gz": (
        "tensorboard/plugins/profiler/host_1.pt.trace.json.gz"
    ),
}


@pytest.fixture
def job(aws_endpoint: AwsEndpoint) -> tuple[str, str]:
    """A job with output in every role, plus another job's output that must not show."""
    bucket = aws_endpoint.create_bucket()
    name = _job_name()
    create_job(aws_endpoint, name, bucket)
    for key in JOB_FILES:
        aws_endpoint.s3.put_object(Bucket=bucket, Key=key.format(job=name), Body=key.encode())
    aws_endpoint.s3.put_object(
        Bucket=bucket, Key=f"profiler/{name}-2/profiler-output/x.json", Body=b"{}"
    )
    return name, bucket


def test_server_round_trips_profiler_fields(aws_endpoint: AwsEndpoint) -> None:
    bucket = aws_endpoint.create_bucket()
    name = _job_name()
    request = create_job(aws_endpoint, name, bucket)
    d = aws_endpoint.sagemaker.describe_training_job(TrainingJobName=name)
    for field in (
        "ProfilerConfig",
        "ProfilerRuleConfigurations",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "TensorBoardOutputConfig",
        "Environment",
    ):
        assert d[field] == request[field], field
    assert d["ProfilingStatus"] == "Enabled"
    assert [s["RuleEvaluationStatus"] for s in d["ProfilerRuleEvaluationStatuses"]] == [
        "InProgress",
        "InProgress",
    ]
    assert d["DebugRuleEvaluationStatuses"][0]["RuleConfigurationName"] == "LossNotDecreasing"
    assert aws_endpoint.training_job_request(name) == request


def test_lists_every_role_with_logical_keys(
    aws_endpoint: AwsEndpoint, job: tuple[str, str]
) -> None:
    name, bucket = job
    src = SageMakerJobSource(name)
    assert isinstance(src, Source)
    assert src.identity == "job-" + hashlib.sha256(f"us-west-2{name}".encode()).hexdigest()[:16]
    objs = list(src.list_objects())
    assert sorted(o.key for o in objs) == sorted(JOB_FILES.values())
    by_key = {o.key: o for o in objs}
    for s3_key, logical in JOB_FILES.items():
        assert by_key[logical].location == f"s3://{bucket}/{s3_key.format(job=name)}"
    results = dict((o.key, data) for o, data in src.read_many(objs))
    for s3_key, logical in JOB_FILES.items():
        assert results[logical] == s3_key.encode()


def test_metadata(aws_endpoint: AwsEndpoint, job: tuple[str, str]) -> None:
    name, bucket = job
    meta = SageMakerJobSource(name).metadata()
    assert (meta.name, meta.source, meta.kind) == (name, name, "sagemaker-job")
    assert (meta.status, meta.secondary_status, meta.failure_reason) == (
        "Completed",
        "Completed",
        None,
    )
    assert (meta.instance_type, meta.instance_count) == ("ml.p4d.24xlarge", 2)
    for t in (meta.creation_time, meta.training_start_time, meta.training_end_time):
        assert t is not None and datetime.fromisoformat(t).tzinfo is not None
    assert meta.locations == {
        "profiler-output": f"s3://{bucket}/profiler/{name}/profiler-output/",
        "rule-output": f"s3://{bucket}/profiler/{name}/rule-output/",
        "debug-output": f"s3://{bucket}/debug/{name}/debug-output/",
        "tensorboard": f"s3://{bucket}/tb/{name}/tensorboard-output/",
    }
    assert [
        (r["RuleConfigurationName"], r["RuleEvaluationStatus"], r["kind"])
        for r in meta.rule_statuses
    ] == [
        ("ProfilerReport", "InProgress", "profiler"),
        ("LowGPUUtilization", "InProgress", "profiler"),
        ("LossNotDecreasing", "InProgress", "debug"),
    ]
    assert meta.extra["region"] == "us-west-2"
    assert meta.extra["profiling_interval_ms"] == 500

    aws_endpoint.set_rule_status(name, "LowGPUUtilization", "IssuesFound", details="GPU idle 80%")
    aws_endpoint.set_job_status(name, "Failed", secondary_status="Failed", failure_reason="OOM")
    meta = SageMakerJobSource(name).metadata()  # describe is cached per instance
    row = next(r for r in meta.rule_statuses if r["RuleConfigurationName"] == "LowGPUUtilization")
    assert (row["RuleEvaluationStatus"], row["StatusDetails"]) == ("IssuesFound", "GPU idle 80%")
    assert (meta.status, meta.secondary_status, meta.failure_reason) == ("Failed", "Failed", "OOM")
    meta.to_dict()  # JSON-friendly: no datetimes left
    assert all(isinstance(r["LastModifiedTime"], str) for r in meta.rule_statuses)


def test_profiler_paths_fall_back_to_output_path(aws_endpoint: AwsEndpoint) -> None:
    bucket = aws_endpoint.create_bucket()
    name = _job_name()
    create_job(
        aws_endpoint,
        name,
        bucket,
        ProfilerConfig=None,
        DebugHookConfig=None,
        TensorBoardOutputConfig=None,
        ProfilerRuleConfigurations=None,
        DebugRuleConfigurations=None,
    )
    aws_endpoint.s3.put_object(
        Bucket=bucket, Key=f"output/{name}/profiler-output/system/a.json", Body=b"{}"
    )
    src = SageMakerJobSource(name)
    assert [o.key for o in src.list_objects()] == ["profiler-output/system/a.json"]
    meta = src.metadata()
    assert meta.rule_statuses == []
    assert set(meta.locations) == {"profiler-output", "rule-output"}


def test_missing_roles_and_buckets_are_fine(aws_endpoint: AwsEndpoint) -> None:
    bucket = aws_endpoint.create_bucket()
    name = _job_name()
    create_job(
        aws_endpoint,
        name,
        bucket,
        TensorBoardOutputConfig={"S3OutputPath": "s3://stepscope-deleted-bucket/tb"},
    )
    aws_endpoint.s3.put_object(Bucket=bucket, Key=f"debug/{name}/debug-output/a.json", Body=b"{}")
    assert [o.key for o in SageMakerJobSource(name).list_objects()] == ["debug-output/a.json"]


def test_job_without_output(aws_endpoint: AwsEndpoint) -> None:
    bucket = aws_endpoint.create_bucket()
    name = _job_name()
    create_job(aws_endpoint, name, bucket)
    with pytest.raises(SourceError) as exc:
        list(SageMakerJobSource(name).list_objects())
    text = str(exc.value)
    assert text.startswith(f"job {name} has no profiler, debugger or TensorBoard output yet")
    assert "\n" not in text


def test_unknown_job(aws_endpoint: AwsEndpoint) -> None:
    src = SageMakerJobSource("no-such-job", region="us-west-2")
    with pytest.raises(SourceError) as exc:
        src.metadata()
    assert str(exc.value) == "no SageMaker training job named 'no-such-job' in region us-west-2"
    with pytest.raises(SourceError, match="no SageMaker training job named"):
        list(src.list_objects())


def test_no_region(aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(SourceError) as exc:
        SageMakerJobSource("some-job")
    assert "no AWS region set" in str(exc.value) and "--region" in str(exc.value)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the AWS CLI's variable counts too
    assert SageMakerJobSource("some-job").region == "eu-west-1"


def test_no_credentials(aws_env: Any) -> None:
    src = SageMakerJobSource("some-job", region="us-west-2")
    with pytest.raises(SourceError) as exc:
        src.metadata()
    assert str(exc.value) == NO_CREDENTIALS_MESSAGE


def test_unknown_profile(aws_env: Any) -> None:
    with pytest.raises(SourceError, match="AWS profile 'nope' not found"):
        SageMakerJobSource("some-job", profile="nope", region="us-west-2")


def test_open_source_dispatches_job_name(aws_endpoint: AwsEndpoint, job: tuple[str, str]) -> None:
    name, _ = job
    src = open_source(name, region="us-west-2")
    assert isinstance(src, SageMakerJobSource)
    assert len(list(src.list_objects())) == len(JOB_FILES)


def test_job_output_prefixes_joins_cleanly() -> None:
    d = {
        "OutputDataConfig": {"S3OutputPath": "s3://b/out/"},
        "DebugHookConfig": {"S3OutputPath": "s3://b/dbg"},
        "TensorBoardOutputConfig": {"S3OutputPath": "s3://b/tb"},
    }
    assert job_output_prefixes("j", d) == {
        "profiler-output": "s3://b/out/j/profiler-output/",
        "rule-output": "s3://b/out/j/rule-output/",
        "debug-output": "s3://b/dbg/j/debug-output/",
        "tensorboard": "s3://b/tb/j/tensorboard-output/",
    }

"""SageMaker's CloudWatch instance metrics, over moto's real HTTP server.

A training job is created with CreateTrainingJob and given real start/end times; its
instance metrics are put into CloudWatch with PutMetricData under SageMaker's namespace and
``Host`` dimension, as SageMaker publishes them (GPU and CPU utilization summed over the
node's GPUs / cores). The job name then goes through the same path a user's does: the job
source lists and reads the metrics with GetMetricData, ingest parses them into
``system_metrics``, the rules judge them. Throttling and access denied come from a fault
proxy in front of the server, as AWS sends them.
"""

from __future__ import annotations

import logging
import math
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from analyzer.errors import SourceError
from analyzer.ingest import ingest
from analyzer.ingest.cloudwatch_metrics import parse_cloudwatch_metrics
from analyzer.job import Job
from analyzer.sources.base import JobMetadata, SourceObject
from analyzer.sources.cloudwatch import (
    DOC_FORMAT,
    NAMESPACE,
    CloudWatchMetrics,
    instance_shape,
    period_for,
)
from analyzer.sources.s3 import NO_CREDENTIALS_MESSAGE
from analyzer.sources.sagemaker_job import SageMakerJobSource
from rules.base import iso
from rules.engine import evaluate
from rules.ruleset import load_ruleset
from tests.support.aws_fixtures import AwsEndpoint
from tests.support.aws_server import set_job_times
from tests.support.fault_proxy import Fault, FaultProxy
from tests.test_source_sagemaker_job import create_job

GET_METRIC_DATA = "GraniteServiceVersion20100801.GetMetricData"
MINUTES = 60
LOW = (20, 40)  # algo-2's GPUs are at 30 % in these minutes [start, end)
#: the first job's start: a whole hour, two hours back (inside CloudWatch's 15 days of
#: one-minute data); each job gets its own hour, 3 h before the last one's, so no two share
#: a GetMetricData time range on the session's server, and no job crosses a UTC midnight
#: (one object per host)
BASE = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
_slots = iter(range(10_000))


@dataclass(frozen=True)
class TrainingJob:
    name: str
    start: datetime
    bucket: str

    def at(self, minute: float) -> str | None:
        return iso((self.start + timedelta(minutes=minute)).timestamp())

    @property
    def day(self) -> str:
        return f"{self.start:%Y-%m-%d}"


def _job(
    aws: AwsEndpoint,
    *,
    instance_type: str = "ml.g5.12xlarge",
    count: int = 2,
    minutes: int | None = MINUTES,
    with_output: bool = False,
) -> TrainingJob:
    """A training job with real times; no profiler output unless ``with_output``."""
    name = f"stepscope-cw-{secrets.token_hex(4)}"
    start = BASE - timedelta(hours=3 * next(_slots))
    bucket = aws.create_bucket()
    drop: dict[str, Any] = (
        {}
        if with_output
        else {
            "ProfilerConfig": None,
            "ProfilerRuleConfigurations": None,
            "DebugHookConfig": None,
            "DebugRuleConfigurations": None,
            "TensorBoardOutputConfig": None,
        }
    )
    create_job(
        aws,
        name,
        bucket,
        ResourceConfig={
            "InstanceType": instance_type,
            "InstanceCount": count,
            "VolumeSizeInGB": 50,
        },
        **drop,
    )
    end = None if minutes is None else start + timedelta(minutes=minutes)
    set_job_times(name, start=start, end=end, region=aws.region)
    return TrainingJob(name, start, bucket)


def _put(
    aws: AwsEndpoint,
    job: TrainingJob,
    host: str,
    minutes: Iterable[int],
    values: dict[str, Callable[[int], float]],
) -> None:
    """One datapoint a minute per metric, under SageMaker's namespace and Host dimension."""
    data = [
        {
            "MetricName": metric,
            "Dimensions": [{"Name": "Host", "Value": f"{job.name}/{host}"}],
            "Timestamp": job.start + timedelta(minutes=m),
            "Value": fn(m),
            "Unit": "Percent",
        }
        for m in minutes
        for metric, fn in values.items()
    ]
    cw = aws.client("cloudwatch")
    for i in range(0, len(data), 1000):
        cw.put_metric_data(Namespace=NAMESPACE, MetricData=data[i : i + 1000])


GPUS, VCPUS = 4, 48  # ml.g5.12xlarge


def healthy() -> dict[str, Callable[[int], float]]:
    """CloudWatch's sums for a busy ml.g5.12xlarge: 85 % of 4 GPUs, 30 % of 48 cores."""
    return {
        "GPUUtilization": lambda m: GPUS * (85.0 + m % 3),
        "GPUMemoryUtilization": lambda m: GPUS * 60.0,
        "CPUUtilization": lambda m: VCPUS * 30.0,
        "MemoryUtilization": lambda m: 40.0,
        "DiskUtilization": lambda m: 20.0,
    }


def _low_gpu_job(aws: AwsEndpoint, **kw: Any) -> TrainingJob:
    job = _job(aws, **kw)
    _put(aws, job, "algo-1", range(MINUTES), healthy())
    values = healthy()
    values["GPUUtilization"] = lambda m: GPUS * (30.0 if LOW[0] <= m < LOW[1] else 85.0 + m % 3)
    _put(aws, job, "algo-2", range(MINUTES), values)
    return job


# --------------------------------------------------------------------------- the proof


def _assert_low_gpu_on_algo2(job: TrainingJob, findings: list[dict[str, Any]]) -> None:
    low = [f for f in findings if f["rule"] == "LowGPUUtilization"]
    assert [(f["evidence"]["node"], f["evidence"]["kind"]) for f in low] == [
        ("algo-2", "underused")
    ]
    ev = low[0]["evidence"]
    assert ev["gpu"] == "gpu-mean"
    # scaled to one-minute datapoints: window 500 x 0.5 s -> 5, patience 1000 x 0.5 s -> 9
    assert (ev["metrics_source"], ev["resolution_s"], ev["scaled_params"]) == (
        "cloudwatch",
        60.0,
        {"window": 5, "patience": 9},
    )
    # every 5-minute window inside the low stretch, and only those: exactly the known window
    assert (ev["window_start"], ev["window_end"]) == (job.at(LOW[0]), job.at(LOW[1]))
    assert ev["worst_p95"] == 30.0  # 120 % over 4 GPUs
    assert (ev["worst_window_start"], ev["worst_window_end"]) == (
        job.at(LOW[0]),
        job.at(LOW[0] + 5),
    )


def test_low_gpu_window_on_one_node_fires_for_that_node_and_window(
    aws_endpoint: AwsEndpoint, tmp_path: Path
) -> None:
    job = _low_gpu_job(aws_endpoint)
    result = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c")
    s = result.summary
    assert s["skipped"] == [] and s["warnings"] == []
    assert s["node_names"] == ["algo-1", "algo-2"]
    assert s["files_read"] == 2  # one object per host (and UTC day)
    assert s["tables"]["system_metrics"] == 2 * MINUTES * 5
    results = evaluate(Job(result.dataset, s), load_ruleset(None))
    _assert_low_gpu_on_algo2(job, [f.to_dict() for r in results for f in r.findings])
    by_rule = {r.rule: r for r in results}
    # a per-node series has no GPU pairs and no I/O wait: those rules say so, and do not pass
    assert by_rule["LoadBalancing"].skipped_reason is not None
    assert by_rule["IOBottleneck"].skipped_reason is not None
    assert "I/OWaitPercentage" in by_rule["IOBottleneck"].skipped_reason
    assert (
        by_rule["CPUBottleneck"].findings == [] and by_rule["CPUBottleneck"].skipped_reason is None
    )


def test_report_command_on_the_job_name(aws_endpoint: AwsEndpoint, tmp_path: Path) -> None:
    """``stepscope report JOB`` as a user runs it: the environment points at the server."""
    job = _low_gpu_job(aws_endpoint)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepscope",
            "report",
            job.name,
            "--out",
            str(tmp_path / "out"),
            "--format",
            "json",
            "--fail-on",
            "warning",
            "--cache",
            str(tmp_path / "c"),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr  # a warning fired
    report = orjson.loads((tmp_path / "out" / "report.json").read_bytes())
    _assert_low_gpu_on_algo2(job, report["findings"])
    assert all(f["evidence"].get("metrics_source") == "cloudwatch" for f in report["findings"])


def test_cpu_rules_judge_each_node(aws_endpoint: AwsEndpoint, tmp_path: Path) -> None:
    job = _job(aws_endpoint, minutes=30)
    _put(aws_endpoint, job, "algo-1", range(30), healthy())
    starved = healthy() | {
        "GPUUtilization": lambda m: GPUS * 2.0,
        "CPUUtilization": lambda m: VCPUS * 96.0,
    }
    _put(aws_endpoint, job, "algo-2", range(30), starved)
    result = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c")
    found = [
        f
        for r in evaluate(Job(result.dataset, result.summary), load_ruleset(None))
        for f in r.findings
    ]
    cpu = [f for f in found if f.rule == "CPUBottleneck"]
    assert [f.evidence["node"] for f in cpu] == ["algo-2"]
    assert cpu[0].evidence["snapshots"] == 30 and cpu[0].evidence["bottleneck_snapshots"] == 30
    assert (cpu[0].evidence["metrics_source"], cpu[0].evidence["scaled_params"]) == (
        "cloudwatch",
        {"patience": 9},
    )
    assert {f.evidence["node"] for f in found} == {"algo-2"}  # nothing on the healthy node


# --------------------------------------------------------------------------- the rows


def test_rows_are_per_node_shares_marked_with_source_and_resolution(
    aws_endpoint: AwsEndpoint, tmp_path: Path
) -> None:
    job = _job(aws_endpoint, count=1, minutes=10)
    _put(aws_endpoint, job, "algo-1", range(10), healthy())
    sm = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c").dataset.table(
        "system_metrics"
    )
    rows = sm.to_pylist()
    assert len(rows) == 50
    assert {(r["type"], r["device"], r["dimension"]) for r in rows} == {
        ("gpu", "gpu-mean", "GPUUtilization"),
        ("gpu", "gpu-mean", "GPUMemoryUtilization"),
        ("cpu", "cpu-mean", "CPUUtilization"),
        ("memory", "MemoryUsedPercent", ""),
        ("disk", "DiskUtilization", ""),
    }
    assert {(r["source"], r["resolution_s"], r["node"]) for r in rows} == {
        ("cloudwatch", 60.0, "algo-1")
    }
    gpu = [r for r in rows if r["dimension"] == "GPUUtilization"]
    assert [r["value"] for r in gpu] == [85.0 + m % 3 for m in range(10)]  # the sum / 4 GPUs
    assert [r["timestamp"] for r in gpu] == [job.start + timedelta(minutes=m) for m in range(10)]
    assert {r["value"] for r in rows if r["dimension"] == "CPUUtilization"} == {30.0}  # / 48 vCPUs
    assert {r["value"] for r in rows if r["device"] == "MemoryUsedPercent"} == {40.0}
    ts = sm.column("timestamp").cast(pa.int64()).to_numpy()
    assert (ts[1:] >= ts[:-1]).all()  # time order within the node


def test_unknown_gpu_count_leaves_the_summed_gpu_metrics_out(
    aws_endpoint: AwsEndpoint, tmp_path: Path
) -> None:
    job = _job(aws_endpoint, instance_type="ml.p9.48xlarge", count=1, minutes=5)
    _put(aws_endpoint, job, "algo-1", range(5), healthy())
    result = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c")
    dims = set(
        pc.unique(
            result.dataset.table("system_metrics").column("dimension").cast(pa.string())
        ).to_pylist()
    )
    assert dims == {"CPUUtilization", ""}  # CPU: 192 vCPUs from the size name; GPUs: unknown
    warned = [w["warning"] for w in result.summary["warnings"]]
    assert len(warned) == 2 and all("ml.p9.48xlarge" in w and "left out" in w for w in warned)
    assert {
        r["value"]
        for r in result.dataset.table("system_metrics").to_pylist()
        if r["dimension"] == "CPUUtilization"
    } == {7.5}


def test_instance_shapes() -> None:
    assert instance_shape("ml.p4d.24xlarge") == (8, 96)
    assert instance_shape("ml.g5.xlarge") == (1, 4)
    assert instance_shape("ml.g5.48xlarge") == (8, 192)
    assert instance_shape("ml.m5.large") == (0, 2)  # no GPU: CloudWatch publishes none
    assert instance_shape("ml.c5.18xlarge") == (0, 72)
    assert instance_shape("ml.p9.48xlarge") == (None, 192)
    assert instance_shape(None) == (None, None)


def test_period_follows_cloudwatch_retention() -> None:
    day = 86_400
    assert period_for(0, 14 * day) == 60
    assert period_for(0, 20 * day) == 300
    assert period_for(0, 100 * day) == 3_600


def test_parser_rejects_other_json_and_reports_damage() -> None:
    from analyzer.ingest.parsed import NotAProfilerFile, UnreadableFile

    with pytest.raises(NotAProfilerFile):
        parse_cloudwatch_metrics(b'{"traceEvents": []}', "cloudwatch/algo-1/2026-01-01.json")
    broken = orjson.dumps(
        {
            "format": DOC_FORMAT,
            "host": "algo-1",
            "period_s": 60,
            "metrics": {"GPUUtilization": {"timestamps": [1.0, 2.0], "values": [1.0]}},
            "gpus": 1,
        }
    )
    with pytest.raises(UnreadableFile, match="2 times, 1 values"):
        parse_cloudwatch_metrics(broken, "cloudwatch/algo-1/2026-01-01.json")


# --------------------------------------------------------------------------- the cache


def test_finished_job_is_read_once_and_late_datapoints_are_read_again(
    aws_endpoint: AwsEndpoint, tmp_path: Path
) -> None:
    job = _job(aws_endpoint, minutes=10)
    for host in ("algo-1", "algo-2"):
        _put(aws_endpoint, job, host, range(10), healthy())
    first = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c").summary
    assert first["files_read"] == 2
    again = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c").summary
    assert (again["files_read"], again["files_from_cache"], again["cache"]["reopened"]) == (
        0,
        2,
        True,
    )
    _put(aws_endpoint, job, "algo-2", [10], healthy())  # a datapoint CloudWatch got late
    late = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c").summary
    assert (late["files_read"], late["files_from_cache"]) == (1, 1)
    assert late["tables"]["system_metrics"] == first["tables"]["system_metrics"] + 5


def test_running_job_is_read_up_to_now(aws_endpoint: AwsEndpoint, tmp_path: Path) -> None:
    job = _job(aws_endpoint, count=1, minutes=None)  # InProgress: no end time yet
    _put(aws_endpoint, job, "algo-1", range(10), healthy())
    now = (job.start + timedelta(minutes=10)).timestamp()
    src = SageMakerJobSource(job.name, clock=lambda: now)
    assert src.metadata().status == "InProgress"
    first = ingest(src, cache_dir=tmp_path / "c").summary
    assert first["tables"]["system_metrics"] == 50
    _put(aws_endpoint, job, "algo-1", range(10, 15), healthy())
    later = (job.start + timedelta(minutes=15)).timestamp()
    s = ingest(SageMakerJobSource(job.name, clock=lambda: later), cache_dir=tmp_path / "c").summary
    assert (s["files_read"], s["tables"]["system_metrics"]) == (1, 75)


def test_switched_off(aws_endpoint: AwsEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    job = _low_gpu_job(aws_endpoint)
    monkeypatch.setenv("STEPSCOPE_CLOUDWATCH", "0")
    with pytest.raises(SourceError) as exc:
        list(SageMakerJobSource(job.name).list_objects())
    assert "CloudWatch" not in str(exc.value)


def test_job_without_any_metrics_is_one_error(aws_endpoint: AwsEndpoint) -> None:
    job = _job(aws_endpoint)
    with pytest.raises(SourceError) as exc:
        list(SageMakerJobSource(job.name).list_objects())
    text = str(exc.value)
    assert text.startswith(f"job {job.name} has no profiler, debugger or TensorBoard output yet")
    assert "and no CloudWatch instance metrics" in text and "\n" not in text


# --------------------------------------------------------------------------- both sources

LINE = (
    '{{"Type":"gpu","Name":"gpu0","Dimension":"GPUUtilization","Value":{v},"NodeId":"{node}","Timestamp":{ts}}}\n'
    '{{"Type":"cpu","Name":"cpu0","Dimension":"CPUUtilization","Value":20,"NodeId":"{node}","Timestamp":{ts}}}\n'
)


def _put_collector_files(aws: AwsEndpoint, job: TrainingJob, node: str, minutes: int) -> int:
    """The collector's (SageMaker Debugger's) files for ``node``: one GPU at 90 %, every 0.5 s."""
    rows = 0
    for m in range(minutes):
        epoch = int(job.start.timestamp()) + 60 * m
        body = "".join(LINE.format(v=90, node=node, ts=epoch + i * 0.5) for i in range(120))
        hour = datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%d%H")
        key = f"profiler/{job.name}/profiler-output/system/incremental/{hour}/{epoch}.{node}.json"
        aws.s3.put_object(Bucket=job.bucket, Key=key, Body=body.encode())
        rows += 240
    return rows


class _OnlyCloudWatch:
    """The job source without its S3 part: what the rules would judge from CloudWatch alone."""

    def __init__(self, src: SageMakerJobSource) -> None:
        self._src = src
        self.identity = src.identity + "-cw"

    def metadata(self) -> JobMetadata:
        return self._src.metadata()

    def list_objects(self) -> Iterator[SourceObject]:
        return (o for o in self._src.list_objects() if o.key.startswith("cloudwatch/"))

    def read(self, obj: SourceObject) -> bytes:
        return self._src.read(obj)

    def read_many(
        self, objs: Iterable[SourceObject]
    ) -> Iterator[tuple[SourceObject, bytes | Exception]]:
        return self._src.read_many(objs)


def test_collector_files_win_where_both_exist(aws_endpoint: AwsEndpoint, tmp_path: Path) -> None:
    """algo-1 has the collector's files (GPU busy) and CloudWatch data (GPU idle: it would
    fire); algo-2 has CloudWatch only. The files are used for algo-1, CloudWatch for algo-2."""
    job = _job(aws_endpoint, minutes=MINUTES, with_output=True)
    file_rows = _put_collector_files(aws_endpoint, job, "algo-1", 10)
    idle = healthy() | {"GPUUtilization": lambda m: GPUS * 3.0}
    _put(aws_endpoint, job, "algo-1", range(MINUTES), idle)
    _put(aws_endpoint, job, "algo-2", range(MINUTES), healthy())

    src = SageMakerJobSource(job.name)
    cw_only = ingest(_OnlyCloudWatch(src), cache_dir=tmp_path / "c")  # type: ignore[arg-type]
    alone = [
        f
        for r in evaluate(Job(cw_only.dataset), load_ruleset(None))
        for f in r.findings
        if f.rule == "LowGPUUtilization"
    ]
    assert [f.evidence["node"] for f in alone] == [
        "algo-1"
    ]  # CloudWatch alone would fire on algo-1

    both = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c")
    sm = both.dataset.table("system_metrics")
    origin = {(r["node"], r["source"]) for r in sm.select(["node", "source"]).to_pylist()}
    assert origin == {("algo-1", None), ("algo-2", "cloudwatch")}
    assert sm.num_rows == file_rows + MINUTES * 5
    results = {r.rule: r for r in evaluate(Job(both.dataset), load_ruleset(None))}
    assert results["LowGPUUtilization"].findings == []  # algo-1 judged on its files: busy
    assert results["LowGPUUtilization"].skipped_reason is None


# --------------------------------------------------------------------------- faults


def test_throttled_get_metric_data_is_retried(
    aws_server: AwsEndpoint, aws_fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    job = _low_gpu_job(aws_server)
    rule = aws_fault_proxy.add(
        Fault.json(GET_METRIC_DATA, 400, "Throttling", message="Rate exceeded", times=2)
    )
    result = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c")
    assert (rule.hits, rule.passed) == (2, 3)  # the probe's third try, and both reads, went through
    assert result.summary["skipped"] == []
    assert result.summary["tables"]["system_metrics"] == 2 * MINUTES * 5
    _assert_low_gpu_on_algo2(
        job,
        [
            f.to_dict()
            for r in evaluate(Job(result.dataset), load_ruleset(None))
            for f in r.findings
        ],
    )


def test_reads_throttled_forever_are_counted_skips_read_again_next_run(
    aws_server: AwsEndpoint,
    aws_fault_proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = _low_gpu_job(aws_server)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    rule = aws_fault_proxy.add(
        Fault.json(
            GET_METRIC_DATA,
            400,
            "Throttling",
            message="Rate exceeded",
            body=r'"Stat"\s*:\s*"Average"',
        )
    )
    with caplog.at_level(logging.WARNING, logger="stepscope.ingest"):
        s = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c").summary
    assert rule.hits == 4  # two objects, two attempts each
    assert sorted(sk["path"] for sk in s["skipped"]) == [
        f"cloudwatch://us-west-2{NAMESPACE}/{job.name}/algo-{n}/{job.day}" for n in (1, 2)
    ]
    for sk in s["skipped"]:
        assert sk["reason"].startswith(
            "CloudWatch kept throttling requests for the CloudWatch instance metrics"
        )
        assert "after 2 attempts" in sk["reason"] and "\n" not in sk["reason"]
    assert (
        len(
            [
                r
                for r in caplog.records
                if r.name == "stepscope.ingest" and "throttling" in r.getMessage()
            ]
        )
        == 2
    )
    aws_fault_proxy.clear()
    again = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c").summary
    assert again["skipped"] == [] and again["files_read"] == 2
    assert again["tables"]["system_metrics"] == 2 * MINUTES * 5


def test_access_denied_is_a_counted_skip_and_the_s3_data_is_still_ingested(
    aws_server: AwsEndpoint,
    aws_fault_proxy: FaultProxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = _job(aws_server, minutes=MINUTES, with_output=True)
    file_rows = _put_collector_files(aws_server, job, "algo-1", 3)
    _put(aws_server, job, "algo-2", range(MINUTES), healthy())
    rule = aws_fault_proxy.add(
        Fault.json(GET_METRIC_DATA, 403, "AccessDenied", message="not authorized")
    )
    with caplog.at_level(logging.WARNING, logger="stepscope.ingest"):
        s = ingest(SageMakerJobSource(job.name), cache_dir=tmp_path / "c").summary
    assert rule.hits == 1  # not retried, one call: the listing's
    assert len(s["skipped"]) == 1
    assert s["skipped"][0]["path"] == f"cloudwatch://us-west-2{NAMESPACE}/{job.name}"
    reason = s["skipped"][0]["reason"]
    assert reason.startswith(
        f"access denied to the CloudWatch instance metrics of job {job.name!r} in us-west-2"
    )
    assert "\n" not in reason
    assert s["tables"]["system_metrics"] == file_rows and s["node_names"] == ["algo-1"]
    assert (
        len(
            [
                r
                for r in caplog.records
                if r.name == "stepscope.ingest" and "access denied" in r.getMessage()
            ]
        )
        == 1
    )


def test_access_denied_reads_stop_asking(
    aws_server: AwsEndpoint, aws_fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    job = _job(aws_server, count=6, minutes=10)
    for n in range(1, 7):
        _put(aws_server, job, f"algo-{n}", range(10), healthy())
    rule = aws_fault_proxy.add(
        Fault.json(GET_METRIC_DATA, 403, "AccessDenied", body=r'"Stat"\s*:\s*"Average"')
    )
    src = SageMakerJobSource(job.name)
    src._cloudwatch()._threads = 1  # type: ignore[union-attr]  # in order: the first refusal stops the rest
    s = ingest(src, cache_dir=tmp_path / "c").summary
    assert rule.hits == 1
    assert len(s["skipped"]) == 6 and all(
        sk["reason"].startswith("access denied") for sk in s["skipped"]
    )


def test_no_credentials_is_one_line(aws_env: Path, aws_server: AwsEndpoint) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(  # type: ignore[call-overload]
        "cloudwatch",
        region_name="us-west-2",
        endpoint_url=aws_server.url,
        config=Config(retries={"max_attempts": 0}),
    )
    cw = CloudWatchMetrics(
        client,
        job_name="j",
        region="us-west-2",
        describe={
            "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1},
            "TrainingStartTime": BASE,
            "TrainingEndTime": BASE + timedelta(minutes=5),
        },
    )
    objs = list(cw.list_objects())
    assert len(objs) == 1 and cw.failure == NO_CREDENTIALS_MESSAGE
    with pytest.raises(SourceError, match=r"^no AWS credentials found"):
        cw.read(objs[0])


def test_pagination(aws_server: AwsEndpoint, aws_fault_proxy: FaultProxy) -> None:
    """Answers cut every 7 datapoints give the same document as one answer."""
    job = _low_gpu_job(aws_server)
    describe = aws_server.sagemaker.describe_training_job(TrainingJobName=job.name)
    docs = []
    for page in (None, 7):
        client = aws_server.client("cloudwatch")
        cw = CloudWatchMetrics(
            client, job_name=job.name, region="us-west-2", describe=describe, max_datapoints=page
        )
        objs = list(cw.list_objects())
        assert [o.key for o in objs] == [f"cloudwatch/algo-{n}/{job.day}.json" for n in (1, 2)]
        doc = orjson.loads(cw.read(objs[1]))
        doc.pop("read_at")
        docs.append(doc)
    assert docs[0] == docs[1]
    gpu = docs[0]["metrics"]["GPUUtilization"]
    assert len(gpu["values"]) == MINUTES and gpu["timestamps"] == sorted(gpu["timestamps"])
    # and through the proxy, the pages are separate requests
    client = _proxied_client(aws_fault_proxy)
    cw = CloudWatchMetrics(
        client, job_name=job.name, region="us-west-2", describe=describe, max_datapoints=7
    )
    aws_fault_proxy.clear()
    cw.read(next(iter(cw.list_objects())))
    calls = [x for x in aws_fault_proxy.seen if x.target == GET_METRIC_DATA]
    assert len(calls) == math.ceil(2 * 5 / 7) + math.ceil(
        5 * MINUTES / 7
    )  # probe pages + read pages
    assert {x.status for x in calls} == {200}


def _proxied_client(proxy: FaultProxy) -> Any:
    import boto3

    return boto3.session.Session().client(  # type: ignore[call-overload]
        "cloudwatch",
        region_name="us-west-2",
        endpoint_url=proxy.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

"""Throttling and access denied, over real HTTP: a fault proxy in front of the moto server.

The code under test talks to the proxy exactly as it would to AWS; the proxy answers chosen
requests with the errors AWS sends (S3's XML ``SlowDown`` / ``AccessDenied``, SageMaker's
JSON ``ThrottlingException``), so botocore's retries and error parsing, the sources' error
translation, the ingest pipeline's skips and the CLI's one-line errors all run for real.
"""

from __future__ import annotations

import logging
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.errors import SourceError
from analyzer.ingest import ingest
from analyzer.sources import open_source
from analyzer.sources.sagemaker_job import SageMakerJobSource
from tests.support.aws_fixtures import AwsEndpoint
from tests.support.fault_proxy import Fault, FaultProxy
from tests.test_source_sagemaker_job import create_job

LINE = (
    '{{"Type":"gpu","Name":"gpu{g}","Dimension":"GPUUtilization","Value":{v},'
    '"NodeId":"{node}","Timestamp":{ts}}}\n'
)
N_FILES = 4
ROWS_PER_FILE = 8  # 4 samples x 2 GPUs


def _minute(minute: int, node: str = "algo-1") -> tuple[str, bytes]:
    """A SageMaker system-metrics file: its key under the job's profiler output, its bytes."""
    epoch = 1_700_000_000 + 60 * minute
    body = "".join(
        LINE.format(g=g, v=50 + g, node=node, ts=epoch + s * 0.5)
        for s in range(4)
        for g in range(2)
    )
    return f"profiler-output/system/incremental/2023111422/{epoch}.{node}.json", body.encode()


def _put_job(aws: AwsEndpoint, bucket: str, prefix: str) -> list[str]:
    """N_FILES minutes of metrics under ``s3://bucket/prefix/`` (straight to the server)."""
    keys = []
    for m in range(N_FILES):
        rel, body = _minute(m)
        aws.s3.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=body)
        keys.append(f"{prefix}/{rel}")
    return keys


@pytest.fixture
def s3_job(aws_server: AwsEndpoint) -> tuple[str, list[str]]:
    """(s3:// URL of a job's output, its objects as ``bucket/key``)."""
    bucket = aws_server.create_bucket()
    return f"s3://{bucket}/job", [f"{bucket}/{k}" for k in _put_job(aws_server, bucket, "job")]


def _list_rule(url: str, status: int, code: str, **kw: object) -> Fault:
    bucket = url[len("s3://") :].split("/", 1)[0]
    return Fault.s3("GET", rf"^/{re.escape(bucket)}/?\?(.*&)?list-type=2(&|$)", status, code, **kw)


def _get_rule(path: str, status: int, code: str, **kw: object) -> Fault:
    """GetObject of one object (``bucket/key``), path-style as botocore sends it here."""
    return Fault.s3("GET", rf"^/{re.escape(path)}(\?|$)", status, code, **kw)


def _stepscope(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it; the environment (pointed at the proxy) is inherited."""
    return subprocess.run(
        [sys.executable, "-m", "stepscope", *args], capture_output=True, text=True, timeout=120
    )


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], start: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(start), lines[0]
    return lines[0]


# --------------------------------------------------------------------------- S3


def test_throttled_listing_is_retried_to_a_complete_ingest(
    aws_fault_proxy: FaultProxy, s3_job: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, _ = s3_job
    rule = aws_fault_proxy.add(_list_rule(url, 503, "SlowDown", times=2))
    s = ingest(open_source(url), cache_dir=tmp_path / "c").summary
    assert (rule.hits, rule.passed) == (2, 1)  # two throttled tries, then the real answer
    lists = [seen.status for seen in aws_fault_proxy.seen if "list-type=2" in seen.path]
    assert lists == [503, 503, 200]
    assert s["skipped"] == [] and s["files_read"] == s["files_ingested"] == N_FILES
    assert s["tables"]["system_metrics"] == N_FILES * ROWS_PER_FILE


@pytest.mark.parametrize(("attempts", "said"), [(2, "after 2 attempts:"), (1, "after 1 attempt:")])
def test_object_throttled_forever_is_a_counted_logged_skip(
    attempts: int,
    said: str,
    aws_fault_proxy: FaultProxy,
    s3_job: tuple[str, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, paths = s3_job
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", str(attempts))  # the source honours it: tries in all
    rule = aws_fault_proxy.add(_get_rule(paths[1], 503, "SlowDown"))
    with caplog.at_level(logging.WARNING, logger="stepscope.ingest"):
        s = ingest(open_source(url), cache_dir=tmp_path / "c").summary
    assert rule.hits == attempts
    bad = f"s3://{paths[1]}"
    assert [sk["path"] for sk in s["skipped"]] == [bad]
    reason = s["skipped"][0]["reason"]
    assert "\n" not in reason and "throttling" in reason and "SlowDown" in reason, reason
    assert said in reason
    assert s["files_ingested"] == N_FILES - 1
    assert s["tables"]["system_metrics"] == (N_FILES - 1) * ROWS_PER_FILE
    assert any(bad in r.getMessage() and "throttling" in r.getMessage() for r in caplog.records)


def test_object_access_denied_is_a_counted_skip(
    aws_fault_proxy: FaultProxy, s3_job: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, paths = s3_job
    rule = aws_fault_proxy.add(_get_rule(paths[2], 403, "AccessDenied", message="Access Denied"))
    s = ingest(open_source(url), cache_dir=tmp_path / "c").summary
    assert rule.hits == 1  # 403 is not retried
    assert [sk["path"] for sk in s["skipped"]] == [f"s3://{paths[2]}"]
    reason = s["skipped"][0]["reason"]
    assert reason.startswith(f"access denied to s3://{paths[2]}") and "\n" not in reason
    assert s["files_ingested"] == N_FILES - 1
    assert s["tables"]["system_metrics"] == (N_FILES - 1) * ROWS_PER_FILE


def test_transient_read_failure_is_read_again_on_the_next_run(
    aws_fault_proxy: FaultProxy,
    s3_job: tuple[str, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed fetch is not a verdict on the object (unlike damaged content, which stays a
    cached skip): once the throttling has passed, the next run reads it and keeps its rows."""
    url, paths = s3_job
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    aws_fault_proxy.add(_get_rule(paths[0], 503, "SlowDown"))
    first = ingest(open_source(url), cache_dir=tmp_path / "c").summary
    assert len(first["skipped"]) == 1
    aws_fault_proxy.clear()  # the throttling is over: "wait a while and retry"
    again = ingest(open_source(url), cache_dir=tmp_path / "c").summary
    assert again["skipped"] == [] and again["files_read"] == 1
    assert again["tables"]["system_metrics"] == N_FILES * ROWS_PER_FILE


def test_listing_access_denied_is_one_line_exit_2(
    aws_fault_proxy: FaultProxy, s3_job: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, _ = s3_job
    rule = aws_fault_proxy.add(_list_rule(url, 403, "AccessDenied", message="Access Denied"))
    proc = _stepscope("ingest", url, "--cache", str(tmp_path / "c"), "--json")
    line = _assert_one_line_error(proc, "stepscope: error: access denied")
    assert f"{url}/" in line
    assert rule.hits == 1


# --------------------------------------------------------------------------- SageMaker


@pytest.fixture
def sm_job(aws_server: AwsEndpoint) -> str:
    """A training job (created straight on the server) with metrics in its profiler output."""
    bucket = aws_server.create_bucket()
    name = f"stepscope-fault-{secrets.token_hex(4)}"
    create_job(aws_server, name, bucket)
    _put_job(aws_server, bucket, f"profiler/{name}")
    return name


def _describe_rule(**kw: object) -> Fault:
    return Fault.json(
        "SageMaker.DescribeTrainingJob", 400, "ThrottlingException", message="Rate exceeded", **kw
    )


def test_throttled_describe_is_retried_and_the_job_resolves(
    aws_fault_proxy: FaultProxy, sm_job: str, tmp_path: Path
) -> None:
    rule = aws_fault_proxy.add(_describe_rule(times=2))
    s = ingest(open_source(sm_job), cache_dir=tmp_path / "c").summary
    assert (rule.hits, rule.passed) == (2, 1)
    assert s["kind"] == "sagemaker-job" and s["job"]["status"] == "Completed"
    assert s["skipped"] == [] and s["tables"]["system_metrics"] == N_FILES * ROWS_PER_FILE


def test_describe_throttled_forever_is_one_line_exit_2(
    aws_fault_proxy: FaultProxy, sm_job: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    rule = aws_fault_proxy.add(_describe_rule())
    with pytest.raises(SourceError) as exc:
        SageMakerJobSource(sm_job).metadata()
    assert rule.hits == 2
    expected = (
        f"SageMaker kept throttling requests for SageMaker training job {sm_job!r} in us-west-2 "
        "(ThrottlingException) after 2 attempts"
    )
    assert str(exc.value).startswith(expected)

    proc = _stepscope("ingest", sm_job, "--cache", str(tmp_path / "c"), "--json")
    line = _assert_one_line_error(proc, "stepscope: error: SageMaker kept throttling")
    assert line == f"stepscope: error: {exc.value}"
    assert rule.hits == 4

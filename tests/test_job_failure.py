"""Why a SageMaker job failed (issue 22, part 3), over moto's real HTTP server.

Each case is a training job created with CreateTrainingJob, moved to Failed (or Stopped)
with its FailureReason, and given log streams in CloudWatch Logs as SageMaker writes them
(group ``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-N-<epoch>``), holding the tail a
real failure of that class prints. The job name then goes the user's way: the job source
lists the streams (DescribeLogStreams) and reads each tail (GetLogEvents from the end),
ingest parses it into ``job_logs``, and JobFailure names the class, host and detail.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from analyzer.analyses.failures import classify_line
from analyzer.ingest import ingest
from analyzer.job import Job
from analyzer.sources.job_logs import LOG_GROUP
from analyzer.sources.sagemaker_job import SageMakerJobSource
from rules.engine import evaluate
from rules.ruleset import load_ruleset
from tests.support.aws_fixtures import AwsEndpoint
from tests.test_source_sagemaker_job import create_job

NCCL_TIMEOUT = (
    "[rank5]:[E1207 10:41:07.123456 1234 ProcessGroupNCCL.cpp:632] [Rank 5] Watchdog caught "
    "collective operation timeout: WorkNCCL(SeqNum=1841, OpType=ALLREDUCE, NumelIn=262144, "
    "NumelOut=262144, Timeout(ms)=1800000) ran for 1800012 milliseconds before timing out."
)
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/opt/ml/code/train.py", line 212, in <module>',
    "    main()",
    '  File "/opt/ml/code/train.py", line 198, in main',
    "    batch = prepare(batch)",
    '  File "/opt/ml/code/data.py", line 41, in prepare',
    "    raise ValueError(f'bad shard {shard}')",
    "ValueError: bad shard 17",
]
CUDA_OOM = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 3 has a "
    "total capacity of 79.15 GiB of which 1.02 GiB is free."
)

#: case -> (log lines per host, status, failure reason, expected (kind, host, detail))
CASES: dict[str, tuple[dict[str, list[str]], str, str, tuple[str, str | None, str]]] = {
    "collective_timeout": (
        {"algo-1": ["epoch 3 step 1840", NCCL_TIMEOUT], "algo-2": ["epoch 3 step 1840"]},
        "Failed",
        "AlgorithmError: ExecuteUserScriptError: ... exit code 1",
        ("collective_timeout", "algo-1", "ALLREDUCE #1841 timed out on rank 5 after 1800 s"),
    ),
    "cuda_oom": (
        {"algo-1": ["step 1", CUDA_OOM]},
        "Failed",
        "AlgorithmError: ExecuteUserScriptError",
        ("cuda_oom", "algo-1", "CUDA out of memory allocating 2.00 GiB"),
    ),
    "nonfinite_loss": (
        {"algo-2": ["step 10 loss: 2.31", "step 11 loss: nan"]},
        "Failed",
        "AlgorithmError",
        ("nonfinite_loss", "algo-2", "the loss became nan"),
    ),
    "oom_killer": (
        {"algo-1": ["torch.distributed.elastic... exitcode  : -9 (pid: 412)"]},
        "Failed",
        "AlgorithmError",
        ("oom_killer", "algo-1", "the kernel's OOM killer or a SIGKILL ended a worker"),
    ),
    "user_exception": (
        {"algo-1": ["starting", *TRACEBACK]},
        "Failed",
        "AlgorithmError: ExecuteUserScriptError: ValueError",
        ("user_exception", "algo-1", "ValueError: bad shard 17"),
    ),
}


def _job(aws: AwsEndpoint, logs: dict[str, list[str]], status: str, reason: str, **kw: Any) -> str:
    name = f"failed-{secrets.token_hex(4)}"
    create_job(aws, name, aws.create_bucket())
    aws.set_job_status(name, status, failure_reason=reason, **kw)
    client = aws.client("logs")
    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
        client.create_log_group(logGroupName=LOG_GROUP)
    now_ms = int(time.time() * 1000)  # CloudWatch refuses events older than 14 days
    for i, (host, lines) in enumerate(sorted(logs.items())):
        stream = f"{name}/{host}-170000000{i}"
        client.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        client.put_log_events(
            logGroupName=LOG_GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": now_ms + n, "message": line} for n, line in enumerate(lines)],
        )
    return name


def _judge(name: str, tmp: Path) -> tuple[Job, Any]:
    source = SageMakerJobSource(name, region="us-west-2")
    result = ingest(source, cache_dir=tmp / "cache")
    job = Job(result.dataset, result.summary)
    return job, next(r for r in evaluate(job, load_ruleset()) if r.rule == "JobFailure")


@pytest.mark.parametrize("case", list(CASES))
def test_each_failure_class_from_the_log_tail(
    aws_endpoint: AwsEndpoint, tmp_path: Path, case: str
) -> None:
    logs, status, reason, (kind, host, detail) = CASES[case]
    job, result = _judge(_job(aws_endpoint, logs, status, reason), tmp_path)
    got = [(f.evidence["kind"], f.evidence["host"]) for f in result.findings]
    assert (kind, host) in got, result.findings
    (f,) = [f for f in result.findings if f.evidence["kind"] == kind]
    assert detail in f.title + f.message, f
    assert f.where == f"node {host}" and f.evidence["failure_reason"] == reason
    assert job.dataset.table("job_logs").num_rows == sum(len(v) for v in logs.values())


def test_the_exception_names_the_scripts_own_line(
    aws_endpoint: AwsEndpoint, tmp_path: Path
) -> None:
    logs, status, reason, _ = CASES["user_exception"]
    _, result = _judge(_job(aws_endpoint, logs, status, reason), tmp_path)
    (f,) = result.findings
    assert f.title == "ValueError at data.py:41"
    assert f.evidence["fields"]["file"] == "/opt/ml/code/data.py"
    assert f.evidence["fields"]["function"] == "prepare"


def test_status_classes_max_runtime_and_spot(aws_endpoint: AwsEndpoint, tmp_path: Path) -> None:
    name = _job(
        aws_endpoint,
        {"algo-1": ["step 1"]},
        "Stopped",
        "",
        secondary_status="MaxRuntimeExceeded",
    )
    _, result = _judge(name, tmp_path / "a")
    assert [f.evidence["kind"] for f in result.findings] == ["max_runtime"]
    assert result.findings[0].where == "job"
    name = _job(aws_endpoint, {"algo-1": ["step 1"]}, "Stopped", "", secondary_status="Interrupted")
    _, result = _judge(name, tmp_path / "b")
    assert [f.evidence["kind"] for f in result.findings] == ["spot_interruption"]


def test_a_healthy_completed_job_has_no_failure(aws_endpoint: AwsEndpoint, tmp_path: Path) -> None:
    name = _job(aws_endpoint, {"algo-1": ["step 1 loss: 2.3", "done"]}, "Completed", "")
    _, result = _judge(name, tmp_path)
    assert not result.findings and "no failure" in (result.skipped_reason or "")


def test_a_local_folder_is_not_judged(tmp_path: Path) -> None:
    from analyzer.sources import open_source

    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "x.json").write_text("{}")
    job = Job.open(open_source(str(tmp_path / "job")), cache_dir=str(tmp_path / "cache"))
    result = next(r for r in evaluate(job, load_ruleset()) if r.rule == "JobFailure")
    assert "not a SageMaker job name" in (result.skipped_reason or "")


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (NCCL_TIMEOUT, "collective_timeout"),
        (
            "[Rank 0]: Timed out waiting 1800000ms for recv operation to complete",
            "collective_timeout",
        ),
        (CUDA_OOM, "cuda_oom"),
        ("Loss is NaN, stopping training", "nonfinite_loss"),
        ("Out of memory: Killed process 4242 (python)", "oom_killer"),
        ("Signal 9 (SIGKILL) received by PID 412", "oom_killer"),
        ("step 3 loss: 0.93 lr: 1e-4", None),
    ],
)
def test_line_classes(line: str, kind: str | None) -> None:
    got = classify_line(line)
    assert (got[0] if got else None) == kind

"""A SageMaker training job, found by name: DescribeTrainingJob says where its output is.

The job's profiler, debugger, rule and TensorBoard output live under different S3 prefixes;
this source reads them as one tree whose top-level folders are the roles below, so ingest
sees the same layout it would see in a downloaded job folder. The instance metrics SageMaker
publishes to CloudWatch for every job are one more folder, ``cloudwatch/``
(``analyzer.sources.cloudwatch``; ``STEPSCOPE_CLOUDWATCH=0`` leaves them out).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from analyzer.errors import SourceError
from analyzer.sources.base import JobMetadata, SourceObject
from analyzer.sources.cloudwatch import NAMESPACE, CloudWatchMetrics
from analyzer.sources.cloudwatch import ROLE as CLOUDWATCH_ROLE
from analyzer.sources.job_logs import JobLogs
from analyzer.sources.s3 import (
    DEFAULT_THREADS,
    S3Reader,
    S3Source,
    aws_client,
    aws_error,
    aws_session,
)

__all__ = ["ROLES", "SageMakerJobSource", "job_output_prefixes"]

#: Logical-key prefixes, in listing order.
ROLES = ("profiler-output", "rule-output", "debug-output", "tensorboard")


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) + "/"


def job_output_prefixes(job_name: str, describe: Mapping[str, Any]) -> dict[str, str]:
    """Role -> s3:// prefix of each kind of output the job was configured to write.

    SageMaker writes profiler and rule output under ``<ProfilerConfig.S3OutputPath or
    OutputDataConfig.S3OutputPath>/<job>/``, debugger tensors under
    ``<DebugHookConfig.S3OutputPath>/<job>/debug-output/`` and TensorBoard output (where
    torch.profiler traces written to /opt/ml/output/tensorboard land) under
    ``<TensorBoardOutputConfig.S3OutputPath>/<job>/tensorboard-output/`` — the layout the
    SageMaker SDKs' ``latest_job_tensorboard_artifacts_path`` describes, which keeps jobs
    that share a TensorBoard path apart.
    """
    out: dict[str, str] = {}
    profiler_base = (describe.get("ProfilerConfig") or {}).get("S3OutputPath") or (
        describe.get("OutputDataConfig") or {}
    ).get("S3OutputPath")
    if profiler_base:
        out["profiler-output"] = _join(profiler_base, job_name, "profiler-output")
        out["rule-output"] = _join(profiler_base, job_name, "rule-output")
    debug_base = (describe.get("DebugHookConfig") or {}).get("S3OutputPath")
    if debug_base:
        out["debug-output"] = _join(debug_base, job_name, "debug-output")
    tensorboard = (describe.get("TensorBoardOutputConfig") or {}).get("S3OutputPath")
    if tensorboard:
        out["tensorboard"] = _join(tensorboard, job_name, "tensorboard-output")
    return out


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _rule_statuses(describe: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for field, kind in (
        ("ProfilerRuleEvaluationStatuses", "profiler"),
        ("DebugRuleEvaluationStatuses", "debug"),
    ):
        for st in describe.get(field) or []:
            rows.append(
                {
                    "RuleConfigurationName": st.get("RuleConfigurationName"),
                    "RuleEvaluationStatus": st.get("RuleEvaluationStatus"),
                    "StatusDetails": st.get("StatusDetails"),
                    "LastModifiedTime": _iso(st.get("LastModifiedTime")),
                    "RuleEvaluationJobArn": st.get("RuleEvaluationJobArn"),
                    "kind": kind,
                }
            )
    return rows


class SageMakerJobSource:
    """The output of one training job; the describe call is made once, on first use."""

    kind = "sagemaker-job"

    def __init__(
        self,
        job_name: str,
        *,
        profile: str | None = None,
        region: str | None = None,
        threads: int = DEFAULT_THREADS,
        max_attempts: int | None = None,
        cloudwatch: bool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``cloudwatch``: read the job's CloudWatch instance metrics too (default: yes,
        unless ``STEPSCOPE_CLOUDWATCH=0``); ``clock`` is how far a running job is read."""
        self.job_name = job_name
        self._session = aws_session(profile, region)
        # Same precedence as the AWS CLI: --region, AWS_REGION, AWS_DEFAULT_REGION, profile.
        resolved = region or os.environ.get("AWS_REGION") or self._session.region_name
        if not resolved:
            raise SourceError(
                f"no AWS region set to look up job {job_name!r}: pass --region or set "
                "AWS_REGION / AWS_DEFAULT_REGION (or region in the profile)"
            )
        self.region: str = resolved
        if region is None and self._session.region_name != resolved:
            self._session = aws_session(profile, resolved)
        self.identity = "job-" + hashlib.sha256((resolved + job_name).encode()).hexdigest()[:16]
        self._threads = threads
        self._max_attempts = max_attempts
        self._profile = profile
        self._describe: dict[str, Any] | None = None
        self._s3: S3Source | None = None
        if cloudwatch is None:
            cloudwatch = os.environ.get("STEPSCOPE_CLOUDWATCH", "1") != "0"
        self._cloudwatch_enabled = cloudwatch
        self._clock = clock
        self._cw: CloudWatchMetrics | None = None
        self._logs: JobLogs | None = None

    # -- the job

    def describe(self) -> dict[str, Any]:
        """DescribeTrainingJob's answer (cached: the paths cannot change for a job)."""
        if self._describe is None:
            client = aws_client(
                self._session, "sagemaker", threads=1, max_attempts=self._max_attempts
            )
            what = f"SageMaker training job {self.job_name!r} in {self.region}"
            try:
                resp = client.describe_training_job(TrainingJobName=self.job_name)
            except ClientError as exc:
                err = exc.response.get("Error", {}) or {}
                message = str(err.get("Message") or "").lower()
                if err.get("Code") in ("ValidationException", "ResourceNotFound") and (
                    "not found" in message or "could not find" in message
                ):
                    raise SourceError(
                        f"no SageMaker training job named {self.job_name!r} in region {self.region}"
                    ) from None
                raise aws_error(exc, what=what, service="SageMaker") from None
            except (BotoCoreError, SourceError) as exc:
                raise aws_error(exc, what=what, service="SageMaker") from None
            resp.pop("ResponseMetadata", None)
            self._describe = dict(resp)
        return self._describe

    @property
    def locations(self) -> dict[str, str]:
        return job_output_prefixes(self.job_name, self.describe())

    def metadata(self) -> JobMetadata:
        d = self.describe()
        resources = d.get("ResourceConfig") or {}
        extra: dict[str, Any] = {
            "region": self.region,
            "arn": d.get("TrainingJobArn"),
            "profiling_status": d.get("ProfilingStatus"),
            "last_modified_time": _iso(d.get("LastModifiedTime")),
            "training_time_s": d.get("TrainingTimeInSeconds"),
            "billable_time_s": d.get("BillableTimeInSeconds"),
            "instance_source": "DescribeTrainingJob" if resources.get("InstanceType") else None,
            "secondary_status_transitions": [
                {
                    "status": t.get("Status"),
                    "start": _iso(t.get("StartTime")),
                    "end": _iso(t.get("EndTime")),
                    "message": t.get("StatusMessage"),
                }
                for t in d.get("SecondaryStatusTransitions") or []
            ]
            or None,
        }
        interval = (d.get("ProfilerConfig") or {}).get("ProfilingIntervalInMilliseconds")
        if interval is not None:
            extra["profiling_interval_ms"] = interval
        cw = self._cloudwatch()
        window = cw.window() if cw is not None else None
        if window is not None:
            extra["cloudwatch"] = {
                "namespace": NAMESPACE,
                "hosts": f"{self.job_name}/algo-1..{window.hosts[-1]}",
            }
        count = resources.get("InstanceCount")
        return JobMetadata(
            name=self.job_name,
            source=self.job_name,
            kind=self.kind,
            status=d.get("TrainingJobStatus"),
            secondary_status=d.get("SecondaryStatus"),
            failure_reason=d.get("FailureReason"),
            instance_type=resources.get("InstanceType"),
            instance_count=int(count) if count is not None else None,
            creation_time=_iso(d.get("CreationTime")),
            training_start_time=_iso(d.get("TrainingStartTime")),
            training_end_time=_iso(d.get("TrainingEndTime")),
            rule_statuses=_rule_statuses(d),
            locations=self.locations,
            extra={k: v for k, v in extra.items() if v is not None},
        )

    # -- the objects

    def _no_output_message(self, prefixes: Mapping[str, str]) -> str:
        looked = ", ".join(prefixes.values()) or "nothing: no output paths configured"
        cloudwatch = ""
        if self._cw is not None:
            why = f" ({self._cw.failure})" if self._cw.failure else ""
            cloudwatch = f" and no CloudWatch instance metrics{why}"
        return (
            f"job {self.job_name} has no profiler, debugger or TensorBoard output yet "
            f"(looked under {looked}){cloudwatch}: "
            "wait for the job to write some, or check that profiling was enabled"
        )

    def _objects(self) -> S3Source:
        if self._s3 is None:
            prefixes = self.locations
            if not prefixes:
                raise SourceError(self._no_output_message(prefixes))
            self._s3 = S3Source.from_prefixes(
                prefixes,
                client=aws_client(
                    self._session, "s3", threads=self._threads, max_attempts=self._max_attempts
                ),
                threads=self._threads,
                source=self.job_name,
                name=self.job_name,
                identity=self.identity,
                empty_message=self._no_output_message(prefixes),
                missing_ok=True,
            )
        return self._s3

    def _cloudwatch(self) -> CloudWatchMetrics | None:
        """The job's CloudWatch objects (None when switched off); needs the describe."""
        if not self._cloudwatch_enabled:
            return None
        if self._cw is None:
            describe = self.describe()
            self._cw = CloudWatchMetrics(
                aws_client(self._session, "cloudwatch", threads=4, max_attempts=self._max_attempts),
                job_name=self.job_name,
                region=self.region,
                describe=describe,
                clock=self._clock,
            )
        return self._cw

    def _job_logs(self) -> JobLogs | None:
        """The job's CloudWatch log streams (None when CloudWatch is switched off)."""
        if not self._cloudwatch_enabled:
            return None
        if self._logs is None:
            self._logs = JobLogs(
                aws_client(self._session, "logs", threads=2, max_attempts=self._max_attempts),
                job_name=self.job_name,
                region=self.region,
            )
        return self._logs

    def list_objects(self) -> Iterator[SourceObject]:
        """The S3 output's objects, then the CloudWatch metrics and log streams; an error only
        when there is none of them (a CloudWatch part that cannot be read is one skipped
        object)."""
        prefixes = self.locations
        found = 0
        if prefixes:
            s3 = self._objects()
            for spec in s3.prefixes:
                for obj in s3._list_prefix(spec):
                    found += 1
                    yield obj
        cw = self._cloudwatch()
        if cw is not None:
            for obj in cw.list_objects():
                if cw.failure is None:
                    found += 1
                yield obj
        logs = self._job_logs()
        if logs is not None:
            for obj in logs.list_objects():
                if logs.failure is None:
                    found += 1
                yield obj
        if not found:
            raise SourceError(self._no_output_message(prefixes))

    @staticmethod
    def _is_cloudwatch(obj: SourceObject) -> bool:
        return obj.key.startswith(CLOUDWATCH_ROLE + "/")

    def read(self, obj: SourceObject) -> bytes:
        logs = self._job_logs()
        if logs is not None and logs.handles(obj):
            return logs.read(obj)
        cw = self._cloudwatch() if self._is_cloudwatch(obj) else None
        return cw.read(obj) if cw is not None else self._objects().read(obj)

    def worker_reader(self) -> S3Reader:
        """Dask workers read the job's S3 output themselves; its CloudWatch objects (an API,
        not objects) the client reads, as on the local engine (:meth:`S3Reader.handles`)."""
        reader = self._objects().worker_reader()
        return replace(reader, profile=self._profile, max_attempts=self._max_attempts)

    def read_many(
        self, objs: Iterable[SourceObject]
    ) -> Iterator[tuple[SourceObject, bytes | Exception]]:
        todo = list(objs)
        logs = self._job_logs()
        log_objs = [o for o in todo if logs is not None and logs.handles(o)]
        todo = [o for o in todo if not (logs is not None and logs.handles(o))]
        s3 = [o for o in todo if not self._is_cloudwatch(o)]
        cloudwatch = [o for o in todo if self._is_cloudwatch(o)]
        for o in log_objs:
            assert logs is not None
            try:
                yield o, logs.read(o)
            except Exception as exc:  # reported per object, by design
                yield o, exc
        if s3:
            yield from self._objects().read_many(s3)
        cw = self._cloudwatch() if cloudwatch else None
        if cw is not None:
            yield from cw.read_many(cloudwatch)

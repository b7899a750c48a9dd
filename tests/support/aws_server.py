"""A real local AWS endpoint (moto's server) for tests, with SageMaker made more faithful.

Tests talk to it over HTTP with ordinary boto3 clients, so request signing, endpoint
resolution (``AWS_ENDPOINT_URL``), pagination, retries and error parsing are all exercised;
nothing in boto3 is stubbed.

moto 5.x's ``FakeTrainingJob`` only keeps the CreateTrainingJob fields it has parameters
for, and drops ``ProfilerConfig``, ``ProfilerRuleConfigurations``, ``Environment``,
``RetryStrategy``... and never reports rule evaluation statuses. :func:`patch_sagemaker`
fixes that generically: every CreateTrainingJob request is kept as given, any request
field that DescribeTrainingJob's output shape also has (per botocore's service model) is
returned when moto does not return it itself, and ``*RuleEvaluationStatuses`` /
``ProfilingStatus`` are derived from the rule and profiler configuration the way SageMaker
does. The server runs in threads of the test process, so tests change job state directly
on the backend (:func:`set_rule_status`, :func:`set_job_status`, :func:`set_job_times`).

moto's CloudWatch answers GetMetricData in one page whatever its size; :func:`patch_cloudwatch`
makes it paginate as CloudWatch does (``MaxDatapoints`` per answer, ``NextToken``, a query
cut by the page reported ``PartialData``), so a client's pagination is exercised for real.
"""

from __future__ import annotations

import copy
import logging
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.server import ThreadedMotoServer

__all__ = [
    "AwsServer",
    "patch_cloudwatch",
    "patch_sagemaker",
    "set_job_status",
    "set_job_times",
    "set_rule_status",
    "training_job",
    "training_job_request",
]

DEFAULT_REGION = "us-west-2"

_RULE_FIELDS = {
    "ProfilerRuleConfigurations": "ProfilerRuleEvaluationStatuses",
    "DebugRuleConfigurations": "DebugRuleEvaluationStatuses",
}
_patch_lock = threading.Lock()
_patched = False
_cloudwatch_patched = False


def _describe_members() -> frozenset[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model("DescribeTrainingJob").output_shape
    assert shape is not None
    return frozenset(shape.members)


def _rule_statuses(job: FakeTrainingJob, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One status per configured rule, "InProgress", as SageMaker reports right after create."""
    now = utcnow()
    account, region = job.arn.split(":")[4], job.arn.split(":")[3]
    return [
        {
            "RuleConfigurationName": rule["RuleConfigurationName"],
            "RuleEvaluationJobArn": (
                f"arn:aws:sagemaker:{region}:{account}:processing-job/"
                f"{job.training_job_name[:26]}-{rule['RuleConfigurationName'][:26]}-{i:08x}"
            ).lower(),
            "RuleEvaluationStatus": "InProgress",
            "LastModifiedTime": now,
        }
        for i, rule in enumerate(configs or [])
    ]


def patch_sagemaker() -> None:
    """Make moto's training jobs keep and describe every request field (idempotent).

    Patches classes, so it applies to every moto backend in this process (the threaded
    server and ``mock_aws`` alike); it only adds fields moto would otherwise drop.
    """
    global _patched
    with _patch_lock:
        if _patched:
            return
        members = _describe_members()
        original_create = SageMakerResponse.create_training_job
        original_response = FakeTrainingJob.response_object
        original_describe = SageMakerModelBackend.describe_training_job

        def create_training_job(self: SageMakerResponse) -> Any:
            request = copy.deepcopy(dict(self.params))  # moto edits some dicts in place
            result = original_create(self)
            job: Any = self.sagemaker_backend.training_jobs[request["TrainingJobName"]]
            job.stepscope_request = request
            job.stepscope_fields = {k: v for k, v in request.items() if k in members}
            for config_field, status_field in _RULE_FIELDS.items():
                if request.get(config_field):
                    job.stepscope_fields[status_field] = _rule_statuses(job, request[config_field])
            profiler = request.get("ProfilerConfig")
            job.stepscope_fields["ProfilingStatus"] = (
                "Enabled" if profiler and not profiler.get("DisableProfiler") else "Disabled"
            )
            return result

        def response_object(self: FakeTrainingJob) -> dict[str, Any]:
            response = dict(original_response.fget(self))  # type: ignore[attr-defined]
            response.pop("StepscopeRequest", None)
            response.pop("StepscopeFields", None)
            for key, value in getattr(self, "stepscope_fields", {}).items():
                response.setdefault(key, copy.deepcopy(value))
            return response

        def describe_training_job(self: SageMakerModelBackend, training_job_name: str) -> Any:
            if training_job_name not in self.training_jobs:
                raise ValidationError(message="Requested resource not found.")  # AWS's words
            return original_describe(self, training_job_name)

        SageMakerResponse.create_training_job = create_training_job  # type: ignore[method-assign]
        FakeTrainingJob.response_object = property(response_object)  # type: ignore[method-assign,assignment]
        SageMakerModelBackend.describe_training_job = describe_training_job  # type: ignore[method-assign]
        _patched = True


def training_job(
    name: str, *, region: str = DEFAULT_REGION, account_id: str = DEFAULT_ACCOUNT_ID
) -> FakeTrainingJob:
    """The backend's job object (raises KeyError when there is none)."""
    return sagemaker_backends[account_id][region].training_jobs[name]


def training_job_request(
    name: str, *, region: str = DEFAULT_REGION, account_id: str = DEFAULT_ACCOUNT_ID
) -> dict[str, Any]:
    """The CreateTrainingJob request exactly as the server received it (parsed JSON)."""
    job: Any = training_job(name, region=region, account_id=account_id)
    return copy.deepcopy(job.stepscope_request)


def set_rule_status(
    job_name: str,
    rule_name: str,
    status: str,
    *,
    details: str | None = None,
    region: str = DEFAULT_REGION,
    account_id: str = DEFAULT_ACCOUNT_ID,
) -> None:
    """Set a rule's RuleEvaluationStatus (e.g. "IssuesFound", "NoIssuesFound", "Error")."""
    job = training_job(job_name, region=region, account_id=account_id)
    fields = getattr(job, "stepscope_fields", {})
    for status_field in _RULE_FIELDS.values():
        for row in fields.get(status_field, []):
            if row["RuleConfigurationName"] == rule_name:
                row["RuleEvaluationStatus"] = status
                row["LastModifiedTime"] = utcnow()
                if details is None:
                    row.pop("StatusDetails", None)
                else:
                    row["StatusDetails"] = details
                return
    raise KeyError(f"job {job_name!r} has no rule named {rule_name!r}")


def set_job_status(
    job_name: str,
    status: str | None = None,
    *,
    secondary_status: str | None = None,
    failure_reason: str | None = None,
    region: str = DEFAULT_REGION,
    account_id: str = DEFAULT_ACCOUNT_ID,
) -> None:
    """Move a job to another TrainingJobStatus / SecondaryStatus, with a FailureReason."""
    job: Any = training_job(job_name, region=region, account_id=account_id)
    if status is not None:
        job.training_job_status = status
    if secondary_status is not None:
        job.secondary_status = secondary_status
    if failure_reason is not None:
        job.failure_reason = failure_reason
    job.last_modified_time = utcnow()


def set_job_times(
    job_name: str,
    *,
    start: datetime,
    end: datetime | None,
    status: str | None = None,
    region: str = DEFAULT_REGION,
    account_id: str = DEFAULT_ACCOUNT_ID,
) -> None:
    """Give a job its TrainingStartTime / TrainingEndTime (moto stamps both "now" at create);
    ``end=None`` is a job still running (status InProgress unless given). Times are UTC."""
    job: Any = training_job(job_name, region=region, account_id=account_id)

    def naive(t: datetime) -> datetime:  # moto keeps naive UTC datetimes
        return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t

    job.creation_time = naive(start) - timedelta(minutes=5)
    job.training_start_time = naive(start)
    job.training_end_time = None if end is None else naive(end)
    job.last_modified_time = naive(end or start)
    job.training_job_status = status or ("Completed" if end is not None else "InProgress")
    job.secondary_status = job.training_job_status if end is not None else "Training"


def patch_cloudwatch() -> None:
    """Make moto's GetMetricData paginate like CloudWatch (idempotent): at most
    ``MaxDatapoints`` (default 100,800) datapoints an answer, in query order, the rest behind
    ``NextToken``; a query whose datapoints go on in a later page is ``PartialData``."""
    global _cloudwatch_patched
    with _patch_lock:
        if _cloudwatch_patched:
            return
        from moto.cloudwatch.responses import CloudWatchResponse
        from moto.core.responses import ActionResult

        original = CloudWatchResponse.get_metric_data

        def get_metric_data(self: CloudWatchResponse) -> Any:
            answer = original(self)
            params = self._get_params()
            limit = int(params.get("MaxDatapoints") or 100_800)
            offset = int(params.get("NextToken") or 0)
            results: list[dict[str, Any]] = answer.result["MetricDataResults"]  # type: ignore[attr-defined,index]
            flat = [(i, j) for i, r in enumerate(results) for j in range(len(r["values"]))]
            page = flat[offset : offset + limit]
            shown: dict[int, list[int]] = {}
            for i, j in page:
                shown.setdefault(i, []).append(j)
            if offset == 0:  # queries without any datapoint answer on the first page
                for i, r in enumerate(results):
                    if not r["values"]:
                        shown.setdefault(i, [])
            out = []
            for i in sorted(shown):
                r, idx = results[i], shown[i]
                more = bool(idx) and idx[-1] < len(r["values"]) - 1
                out.append(
                    {
                        **r,
                        "values": [r["values"][j] for j in idx],
                        "timestamps": [r["timestamps"][j] for j in idx],
                        "status_code": "PartialData" if more else "Complete",
                    }
                )
            body: dict[str, Any] = {"MetricDataResults": out}
            if offset + limit < len(flat):
                body["NextToken"] = str(offset + limit)
            return ActionResult(body)

        CloudWatchResponse.get_metric_data = get_metric_data  # type: ignore[method-assign]
        _cloudwatch_patched = True


class AwsServer:
    """moto's threaded server on a free loopback port, SageMaker and CloudWatch patched."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        patch_sagemaker()
        patch_cloudwatch()
        self._server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
        self.url = ""

    def start(self) -> AwsServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request log lines
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every bucket, object and job (moto's reset API)."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def __enter__(self) -> AwsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

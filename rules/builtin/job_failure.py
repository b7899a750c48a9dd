"""JobFailure — stepscope rule: why the SageMaker job failed or stopped (status and logs)."""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING, Any, ClassVar

from rules.base import Finding, Rule
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

#: what to do about each class of failure
ADVICE = {
    "collective_timeout": "a rank never reached the collective: run under `stepscope run` "
    "(its stall watchdog and Flight Recorder name the rank and the line; CollectiveHang)",
    "cuda_oom": "a smaller batch or sequence, activation checkpointing, FSDP/ZeRO sharding, "
    "or `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` against fragmentation",
    "nonfinite_loss": "a lower learning rate, gradient clipping, loss scaling for fp16, and "
    "the data of that step (the training-health rules: `stepscope run --health`)",
    "oom_killer": "host memory: fewer DataLoader workers or a smaller prefetch, no dataset "
    "held in each worker's memory, or a larger instance",
    "spot_interruption": "checkpoint often and set CheckpointConfig so the job resumes",
    "max_runtime": "raise StoppingCondition.MaxRuntimeInSeconds or checkpoint and resume",
    "user_exception": "the exception and the line it was raised at, in the script",
    "failed": "SageMaker's FailureReason",
}


class JobFailureParams(RuleParams):
    pass


class JobFailure(Rule):
    id: ClassVar[str] = "JobFailure"
    title: ClassVar[str] = "Why the job failed or stopped"
    checks: ClassVar[str] = (
        "For a SageMaker job name: DescribeTrainingJob's status, FailureReason and secondary "
        "status transitions, and the tail of each host's CloudWatch log stream, classified: "
        "collective timeout (sequence number, op, rank), CUDA out of memory (the size), "
        "NaN/Inf loss, the kernel's OOM killer, spot interruption, MaxRuntime reached, and "
        "the script's own exception (its type, message, file and line). For any job run "
        "under `stepscope run`: each rank's uncaught exception from its exit record, the "
        "earliest first, ranks that raised only because a peer died folded into it."
    )
    why: ClassVar[str] = (
        "A failed job's reason sits in CloudWatch Logs, across one stream per host, far "
        "from the profile; the FailureReason alone often says only that a worker exited."
    )
    recommendation: ClassVar[str] = (
        "Follow the class named: each finding says what usually fixes it."
    )
    severity: ClassVar[str] = "error"
    params_model: ClassVar[type[RuleParams]] = JobFailureParams
    leads: ClassVar[bool] = True

    def evaluate(self, job: Job, params: JobFailureParams) -> list[Finding] | str:
        meta = job.dataset.meta
        failures = job.job_failures()  # the exit records' exceptions among them
        if failures.empty and (
            meta.kind != "sagemaker-job" and job.dataset.table("job_logs").num_rows == 0
        ):
            return (
                "not a SageMaker job name (its status and CloudWatch logs are read from one) "
                "and no rank's exit record holds an exception"
            )
        if failures.empty:
            status = meta.status or "unknown"
            return f"no failure in the job's status ({status}) or in its log tails"
        # ranks that died because another did are the cause's evidence, not findings of
        # their own (unless no cause is known)
        lost = failures[failures["kind"] == "peer_lost"]
        causes = failures[failures["kind"] != "peer_lost"]
        if causes.empty:
            causes, lost = failures, lost.iloc[:0]
        then = [str(d) for d in lost["detail"]]
        return [self._finding(r, meta, then) for r in causes.itertuples(index=False)]

    def _finding(self, row: Any, meta: Any, then: list[str] | None = None) -> Finding:
        fields = dict(row.fields or {})
        where = f"node {row.host}" if isinstance(row.host, str) and row.host else "job"
        if row.kind == "user_exception" and row.source == "exit_record":
            at = f"{PurePath(str(fields.get('file', '?'))).name}:{fields.get('lineno', '?')}"
            where = f"rank {fields['rank']}" + (f" ({row.host})" if row.host else "")
            title = f"Rank {fields['rank']} raised {fields.get('type', 'an exception')} at {at}"
            code = f": `{str(fields['code']).strip()}`" if fields.get("code") else ""
            message = (
                f"{row.detail}, at {fields.get('file')}:{fields.get('lineno')} in "
                f"{fields.get('function')}{code} (its exit record, written by stepscope run)"
            )
        elif row.kind == "user_exception":
            at = f"{PurePath(fields.get('file', '?')).name}:{fields.get('lineno', '?')}"
            title = f"{fields.get('type', 'An exception')} at {at}"
            message = (
                f"{row.detail}, raised at {fields.get('file')}:{fields.get('lineno')} in "
                f"{fields.get('function')} (the first traceback in {row.host}'s log)"
            )
        else:
            title = str(row.detail)[0].upper() + str(row.detail)[1:]
            message = f"{row.detail}: `{row.line}`" if row.line else str(row.detail)
        if then and row.kind == "user_exception":
            message += f"; then {', '.join(then)}"
        message += f"; {ADVICE.get(row.kind, '')}" if row.kind in ADVICE else ""
        return self.finding(
            title=title,
            message=message,
            evidence={
                "kind": row.kind,
                "host": row.host,
                "line": row.line,
                "source": row.source,
                "fields": fields,
                "job_status": meta.status,
                "secondary_status": meta.secondary_status,
                "failure_reason": meta.failure_reason,
                "followed_by": then or [],
            },
            where=where,
        )

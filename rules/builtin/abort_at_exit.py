"""AbortAtExit — stepscope rule: a rank that finished training, then died while Python exited."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rules.base import Finding, Rule
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

#: PyTorch's issue for this class of abort (a thread releasing a work item that holds a
#: Python object while the interpreter finalizes)
TEARDOWN_ABORT_ISSUE = "https://github.com/pytorch/pytorch/issues/190489"


class AbortAtExitParams(RuleParams):
    pass


class AbortAtExit(Rule):
    id: ClassVar[str] = "AbortAtExit"
    title: ClassVar[str] = "A rank died at exit, after its training ended"
    checks: ClassVar[str] = (
        "Per rank, from `stepscope run`'s exit records: the script's code ended (its "
        "record is written at the normal interpreter exit), and then faulthandler "
        "caught a fatal signal during interpreter finalization. A SIGABRT there is "
        "PyTorch's teardown abort at exit (`terminate called without an active "
        "exception`, pytorch/pytorch#190489), not a failure of the training."
    )
    why: ClassVar[str] = (
        "The process's exit status is non-zero, so torchrun reports "
        "the rank failed and SageMaker marks the job Failed, although "
        "every step, checkpoint and output before the exit is complete."
    )
    recommendation: ClassVar[str] = (
        "Outputs written before the exit are complete; do not rerun the training for it. The abort "
        "is a gloo worker thread releasing the last collective's work item while Python finalizes: "
        "`stepscope run` waits for those threads before finalization (docs/collect.md, 'The exit "
        "abort'); a launcher of your own can end the script after `dist.destroy_process_group()` "
        "with `sys.stdout.flush(); os._exit(0)`, which skips finalization."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = AbortAtExitParams

    def evaluate(self, job: Job, params: AbortAtExitParams) -> list[Finding] | str:
        exits = job.process_exits()
        if exits.empty:
            return "no exit records in this job (`stepscope run` writes them, in exits/)"
        findings: list[Finding] = []
        for row in exits.itertuples(index=False):
            if not row.script_ended or not isinstance(row.fatal, str):
                continue
            if isinstance(row.exception, str):
                continue  # the script raised: a failed training (JobFailure), not its teardown
            place = f"rank {int(row.rank)} ({row.node})"
            steps = (
                ""
                if row.optimizer_steps is None
                else f" ({int(row.optimizer_steps)} optimizer steps seen)"
            )
            evidence: dict[str, object] = {
                "rank": int(row.rank),
                "node": row.node,
                "signal": row.signal,
                "fatal": row.fatal,
                "optimizer_steps": row.optimizer_steps,
                "no_python_frame": row.no_python_frame,
            }
            if row.signal == "SIGABRT":
                evidence["known_issue"] = TEARDOWN_ABORT_ISSUE
                findings.append(
                    self.finding(
                        title=f"Rank {int(row.rank)} aborted at exit, after its training ended",
                        message=(
                            f"{place} died of SIGABRT during interpreter exit, "
                            f"after its script had ended{steps}: PyTorch's teardown "
                            f"abort at exit ({TEARDOWN_ABORT_ISSUE}), not a failure "
                            "of the training; its non-zero exit status comes from it"
                        ),
                        evidence=evidence,
                        where=place,
                    )
                )
            else:
                what = row.signal or row.fatal
                findings.append(
                    self.finding(
                        title=(
                            f"Rank {int(row.rank)} crashed at exit "
                            f"({what}), after its training ended"
                        ),
                        message=(
                            f"{place} died of {what} during interpreter exit, "
                            f"after its script had ended{steps}; the training "
                            f"itself finished (faulthandler: {row.fatal!r})"
                        ),
                        evidence=evidence,
                        where=place,
                    )
                )
        return findings

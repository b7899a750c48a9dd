"""ExposedCommunication — stepscope rule: collectives that computation does not hide, per rank."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, Waste
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class ExposedCommunicationParams(RuleParams):
    threshold_pct: float = Field(
        25.0,
        ge=0,
        le=100,
        description=(
            "Exposed (non-overlapped) communication as % of GPU busy time above which it fires."
        ),
    )


class ExposedCommunication(Rule):
    id: ClassVar[str] = "ExposedCommunication"
    title: ClassVar[str] = "Communication not overlapped by computation"
    checks: ClassVar[str] = (
        "Per rank: communication kernel time not overlapped by any computation "
        "kernel, as a share of the GPU's busy time, above `threshold_pct` %."
    )
    why: ClassVar[str] = "Exposed collectives stall the GPU every step; hidden ones are free."
    recommendation: ClassVar[str] = (
        "Overlap gradient all-reduce with backward (DDP bucket_cap_mb, "
        "FSDP prefetch), use gradient accumulation to communicate less "
        "often, or compress gradients; check inter-node bandwidth (EFA)."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = ExposedCommunicationParams
    page: ClassVar[str] = "communication"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "exposed_comm_ms",
            "{} ms of communication not overlapped by computation",
            then=("exposed_share_pct", "{}% of GPU busy time", 0),
        ),
    }

    waste_counts: ClassVar[str] = (
        "The communication no computation overlaps, as a share of the rank's GPU busy time "
        "(`exposed_share_pct`), as that much of one GPU: an upper bound where the GPU also "
        "idles, since busy time is less than the window."
    )

    @classmethod
    def waste(cls, finding: Finding) -> Waste | None:
        share = finding.evidence.get("exposed_share_pct")
        if share is None:
            return None
        return Waste(
            float(share) / 100,
            f"rank {finding.evidence.get('rank')}'s GPU waits on communication "
            f"{float(share):g}% of its busy time",
        )

    def evaluate(self, job: Job, params: ExposedCommunicationParams) -> list[Finding] | str:
        if not job.has_kineto_events:
            return "no PyTorch profiler traces in this job"
        summary = job.communication_summary()
        with_comm = summary[summary["comm_time_ns"].fillna(0) > 0]
        if with_comm.empty:
            return "no GPU communication kernels in the traces"
        findings: list[Finding] = []
        for r in with_comm.itertuples(index=False):
            busy = float(r.gpu_busy_ns)
            share = float(r.exposed_comm_ns) / busy * 100 if busy > 0 else 0.0
            if share <= params.threshold_pct:
                continue
            findings.append(
                self.finding(
                    title=(
                        f"Rank {int(r.rank)}: {r.exposed_comm_ns / 1e6:.0f} ms "
                        f"of exposed communication ({share:.0f}% of GPU time)"
                    ),
                    message=(
                        f"{r.exposed_comm_ns / 1e6:.1f} ms of {r.comm_time_ns / 1e6:.1f} ms of "
                        f"communication is not overlapped by computation ({share:.1f}% of "
                        f"{busy / 1e6:.1f} ms GPU busy time > {params.threshold_pct}%; "
                        f"overlap {r.comm_comp_overlap_pct:.1f}%)"
                    ),
                    evidence={
                        "rank": int(r.rank),
                        "exposed_comm_ms": round(float(r.exposed_comm_ns) / 1e6, 3),
                        "comm_ms": round(float(r.comm_time_ns) / 1e6, 3),
                        "gpu_busy_ms": round(busy / 1e6, 3),
                        "exposed_share_pct": round(share, 2),
                        "comm_comp_overlap_pct": round(float(r.comm_comp_overlap_pct), 2),
                    },
                    where=f"rank {int(r.rank)}",
                )
            )
        return findings

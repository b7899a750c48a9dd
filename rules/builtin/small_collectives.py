"""SmallCollectives — stepscope rule: many small collectives per step, where fewer, larger
ones (buckets, fused parameters) would cost less latency."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class SmallCollectivesParams(RuleParams):
    min_calls_per_step: float = Field(
        64, ge=1, description="Calls of one op in one group per step from which it judges."
    )
    max_mean_bytes: float = Field(
        1_048_576, gt=0, description="Mean message size (bytes) below which calls are small."
    )
    min_share_pct: float = Field(
        5.0,
        ge=0,
        le=100,
        description="Their exposed time, as % of the step, from which it fires.",
    )


class SmallCollectives(Rule):
    id: ClassVar[str] = "SmallCollectives"
    title: ClassVar[str] = "Many small collectives per step"
    checks: ClassVar[str] = (
        "Per rank, process group and op: at least `min_calls_per_step` calls per step with a "
        "mean message below `max_mean_bytes` bytes, whose exposed time is "
        "`min_share_pct` % of the step or more."
    )
    why: ClassVar[str] = (
        "Each collective pays a fixed latency (a launch, a handshake, a few microseconds to "
        "milliseconds across nodes): hundreds of small ones cost more than a few large ones "
        "moving the same bytes."
    )
    recommendation: ClassVar[str] = (
        "Bucket or fuse: DDP bucket_cap_mb (larger buckets), DeepSpeed reduce_bucket_size "
        "and allgather_bucket_size, larger FSDP units (a coarser wrap policy), "
        "torch._foreach / fused optimizers instead of per-parameter collectives; for tensor "
        "parallelism, sequence parallelism or fusing the layer's collectives."
    )
    severity: ClassVar[str] = "info"
    params_model: ClassVar[type[RuleParams]] = SmallCollectivesParams
    page: ClassVar[str] = "communication"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "calls_per_step",
            "{} small collectives per step",
            digits=0,
            then=("exposed_ms_per_step", "{} ms exposed", 1),
        ),
    }

    def evaluate(self, job: Job, params: SmallCollectivesParams) -> list[Finding] | str:
        if not job.has_kineto_events:
            return "no PyTorch profiler traces in this job"
        summary = job.group_summary()
        if summary.empty:
            return "no collective calls in the traces"
        from analyzer.analyses.communication import P2P_OPS

        coll = summary[~summary["op"].isin(P2P_OPS)]
        sized = coll[coll["mean_bytes"].notna() & coll["calls_per_step"].notna()]
        if sized.empty:
            return "no collective call with a known message size in a profiled step"
        findings: list[Finding] = []
        for r in sized.itertuples(index=False):
            if (
                r.calls_per_step < params.min_calls_per_step
                or r.mean_bytes >= params.max_mean_bytes
                or not r.share_pct >= params.min_share_pct
            ):
                continue
            findings.append(
                self.finding(
                    title=(
                        f"Rank {int(r.rank)}: {r.calls_per_step:.0f} {r.op} calls per step of "
                        f"{r.mean_bytes / 1024:.0f} KiB on average (group {r.group})"
                    ),
                    message=(
                        f"{r.calls_per_step:.0f} {r.op} calls per step in group {r.group} "
                        f"({r.dimension}), {r.mean_bytes / 1024:.1f} KiB each on average "
                        f"(< {params.max_mean_bytes / 1024:.0f} KiB); {r.exposed_ms_per_step:.1f} "
                        f"ms per step exposed ({r.share_pct:.1f}% of the step ≥ "
                        f"{params.min_share_pct}%)"
                    ),
                    evidence={
                        "rank": int(r.rank),
                        "group": str(r.group),
                        "dimension": str(r.dimension),
                        "op": str(r.op),
                        "calls_per_step": round(float(r.calls_per_step), 2),
                        "mean_bytes": round(float(r.mean_bytes), 1),
                        "exposed_ms_per_step": round(float(r.exposed_ms_per_step), 3),
                        "share_pct": round(float(r.share_pct), 2),
                        "busbw_gbps": (
                            None if r.busbw_gbps != r.busbw_gbps else round(float(r.busbw_gbps), 3)
                        ),
                    },
                    where=f"rank {int(r.rank)}, group {r.group}",
                )
            )
        return findings

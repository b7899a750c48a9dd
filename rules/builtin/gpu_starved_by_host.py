"""GPUStarvedByHost — stepscope rule: the GPU waits for the CPU to launch its work, per rank."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, Waste
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class GPUStarvedByHostParams(RuleParams):
    threshold_pct: float = Field(
        30.0,
        ge=0,
        le=100,
        description="Host-wait idle time as % of the busiest stream's span above which it fires.",
    )
    min_events: int = Field(
        100, ge=1, description="Kernels and copies a stream needs before it is judged."
    )


class GPUStarvedByHost(Rule):
    id: ClassVar[str] = "GPUStarvedByHost"
    title: ClassVar[str] = "The GPU waits for the CPU to launch its work"
    checks: ClassVar[str] = (
        "Per rank, on its busiest CUDA stream (most GPU busy time, at least "
        "`min_events` kernels and copies): idle gaps in which the next kernel had not "
        "been launched yet when the previous one ended (HTA's *host wait*), as a "
        "share of the stream's span from first to last event, above `threshold_pct` %."
    )
    why: ClassVar[str] = (
        "A GPU that idles until the CPU enqueues its next kernel runs at the speed of the Python "
        "training loop, not at its own: a faster GPU or more GPUs would not make the job faster."
    )
    recommendation: ClassVar[str] = (
        "Cut per-step host work: torch.compile or CUDA graphs for launch-bound models, fewer and "
        "larger kernels (fused optimizers, bigger batches), no host synchronisation inside the "
        "step (.item(), .cpu(), printing tensors), data preprocessing in DataLoader workers. "
        "Profiler overhead adds host time too: confirm with a lighter profiling schedule."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = GPUStarvedByHostParams
    page: ClassVar[str] = "kernels"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "host_wait_ms",
            "{} ms of GPU idle time before kernels the CPU had not launched",
            then=("host_wait_share_pct", "{}% of the stream's time", 0),
        ),
    }

    waste_counts: ClassVar[str] = (
        "The GPU's idle time waiting for the host to launch work, as a share of the stream's "
        "span (`host_wait_share_pct`), as that much of the rank's GPU."
    )

    @classmethod
    def waste(cls, finding: Finding) -> Waste | None:
        share = finding.evidence.get("host_wait_share_pct")
        if share is None:
            return None
        return Waste(
            float(share) / 100,
            f"rank {finding.evidence.get('rank')}'s GPU waits for the host "
            f"{float(share):g}% of the stream's span",
        )

    def evaluate(self, job: Job, params: GPUStarvedByHostParams) -> list[Finding] | str:
        if not job.has_kineto_events:
            return "no PyTorch profiler traces in this job"
        streams = job.stream_idle_summary()
        streams = streams[streams["events"] >= params.min_events]
        if streams.empty:
            return (
                f"no CUDA stream with at least {params.min_events} kernels and copies in the traces"
            )
        launches = job.kernel_launch_summary().set_index("rank")
        findings: list[Finding] = []
        busiest = streams.loc[streams.groupby("rank")["busy_ns"].idxmax()].sort_values("rank")
        for r in busiest.itertuples(index=False):
            span = float(r.span_ns)
            share = float(r.host_wait_ns) / span * 100 if span > 0 else 0.0
            if share <= params.threshold_pct:
                continue
            rank, stream = int(r.rank), int(r.stream)
            launch = launches.loc[rank] if rank in launches.index else None
            findings.append(
                self.finding(
                    title=(
                        f"Rank {rank}: the GPU waits {r.host_wait_ns / 1e6:.0f} "
                        f"ms for the CPU ({share:.0f}% of the time)"
                    ),
                    message=(
                        f"{r.host_wait_ns / 1e6:.1f} ms of {span / 1e6:.1f} ms idle "
                        "before kernels the CPU had not launched yet "
                        f"({share:.1f}% > {params.threshold_pct}%); the stream "
                        f"was busy {r.busy_ns / span * 100:.1f}% of the time"
                    ),
                    evidence={
                        "rank": rank,
                        "stream": stream,
                        "events": int(r.events),
                        "span_ms": round(span / 1e6, 3),
                        "busy_ms": round(float(r.busy_ns) / 1e6, 3),
                        "host_wait_ms": round(float(r.host_wait_ns) / 1e6, 3),
                        "kernel_wait_ms": round(float(r.kernel_wait_ns) / 1e6, 3),
                        "other_idle_ms": round(float(r.other_ns) / 1e6, 3),
                        "host_wait_share_pct": round(share, 2),
                        # kernels the GPU finished faster than the CPU launched them (HTA):
                        # launch-bound work
                        "short_kernels": None if launch is None else int(launch["short_kernels"]),
                        "kernels_launched": None if launch is None else int(launch["kernels"]),
                    },
                    where=f"rank {rank}, stream {stream}",
                )
            )
        return findings

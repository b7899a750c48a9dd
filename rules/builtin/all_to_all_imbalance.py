"""AllToAllImbalance — stepscope rule: expert-parallel all-to-all that some ranks spend far
longer in than others (uneven expert load or a slow link)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class AllToAllImbalanceParams(RuleParams):
    ratio: float = Field(
        1.5,
        gt=1,
        description=(
            "A rank's all-to-all bytes (or, without sizes, time) per step this many times the "
            "group's median or more fires."
        ),
    )
    min_ranks: int = Field(2, ge=2, description="Ranks of the group with all-to-all calls.")


class AllToAllImbalance(Rule):
    id: ClassVar[str] = "AllToAllImbalance"
    title: ClassVar[str] = "Expert-parallel all-to-all imbalance"
    checks: ClassVar[str] = (
        "Per process group with all-to-all calls: each rank's all-to-all message bytes per "
        "step (the tokens it sends to the experts; its time where the trace has no sizes) "
        "against the group's median; fires for a rank at `ratio` times the median or more."
    )
    why: ClassVar[str] = (
        "A mixture-of-experts layer waits for its busiest expert: tokens routed unevenly make "
        "every rank of the group wait for the one that sends or receives the most."
    )
    recommendation: ClassVar[str] = (
        "Balance the routing (auxiliary load-balancing loss, router z-loss), cap the "
        "expert capacity (capacity_factor), or drop tokens beyond it; check the rank's "
        "links when its sizes are even but its time is not."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = AllToAllImbalanceParams
    page: ClassVar[str] = "communication"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure("ratio", "{}× the group's median all-to-all", digits=2),
    }

    def evaluate(self, job: Job, params: AllToAllImbalanceParams) -> list[Finding] | str:
        if not job.has_kineto_events:
            return "no PyTorch profiler traces in this job"
        summary = job.group_summary()
        a2a = summary[summary["op"] == "alltoall"] if not summary.empty else summary
        if a2a.empty:
            return "no all-to-all calls in the traces"
        findings: list[Finding] = []
        judged = 0
        for group, sub in a2a.groupby("group", sort=True):
            if sub["rank"].nunique() < params.min_ranks:
                continue
            judged += 1
            bytes_per_step = sub["mean_bytes"] * sub["calls_per_step"]
            if bytes_per_step.notna().all() and (bytes_per_step > 0).all():
                value, unit, what = bytes_per_step, "MB", "bytes"
                shown = value / 1e6
            else:
                value, unit, what = sub["time_ms_per_step"], "ms", "time"
                shown = value
            median = float(value.median())
            if not median > 0:
                continue
            for r, v, s in zip(sub.itertuples(index=False), value, shown, strict=True):
                ratio = float(v) / median
                if ratio < params.ratio:
                    continue
                findings.append(
                    self.finding(
                        title=(
                            f"Rank {int(r.rank)}: {ratio:.1f}× the all-to-all {what} of its "
                            f"expert group {group}"
                        ),
                        message=(
                            f"{float(s):.2f} {unit} of all-to-all per step against the group's "
                            f"median {float(median / (1e6 if unit == 'MB' else 1)):.2f} {unit} "
                            f"({ratio:.2f}× ≥ {params.ratio}×; {r.calls_per_step:.1f} calls "
                            f"per step, {r.exposed_ms_per_step:.1f} ms of them exposed)"
                        ),
                        evidence={
                            "rank": int(r.rank),
                            "group": str(group),
                            "measure": what,
                            "value_per_step": round(float(s), 4),
                            "unit": unit,
                            "group_median": round(float(median / (1e6 if unit == "MB" else 1)), 4),
                            "ratio": round(ratio, 3),
                            "calls_per_step": round(float(r.calls_per_step), 2),
                            "time_ms_per_step": round(float(r.time_ms_per_step), 3),
                            "exposed_ms_per_step": round(float(r.exposed_ms_per_step), 3),
                        },
                        where=f"rank {int(r.rank)}, expert group {group}",
                    )
                )
        if not judged:
            return f"needs all-to-all calls on {params.min_ranks} ranks of one group"
        return findings

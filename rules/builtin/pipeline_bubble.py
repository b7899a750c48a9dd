"""PipelineBubble — stepscope rule: pipeline stages idle for longer than their schedule
needs, and the stage that sets the pace."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, Waste
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class PipelineBubbleParams(RuleParams):
    threshold_points: float = Field(
        10.0,
        ge=0,
        le=100,
        description=(
            "A stage's bubble (% of the step it computes nothing) this many points above the "
            "schedule's ideal (p-1)/(m+p-1) fires."
        ),
    )
    min_steps: int = Field(2, ge=1, description="Profiled steps needed per stage.")


class PipelineBubble(Rule):
    id: ClassVar[str] = "PipelineBubble"
    title: ClassVar[str] = "Pipeline bubbles above the schedule's ideal"
    checks: ClassVar[str] = (
        "Per stage of a pipeline group (send/recv between stages, or a group named so): the "
        "share of the step in which the stage computes nothing, against the ideal bubble of "
        "GPipe and 1F1B, (p-1)/(m+p-1) for p stages and m micro-batches; fires when it is "
        "`threshold_points` points or more above it, and names the stage with the most "
        "computation per step, which sets the pipeline's pace."
    )
    why: ClassVar[str] = (
        "Every stage waits for the slowest one: time a stage idles beyond the schedule's "
        "fill and drain is paid on every GPU of the pipeline, every step."
    )
    recommendation: ClassVar[str] = (
        "Balance the stages (move layers off the slowest stage, split_spec / the layer "
        "split), use more micro-batches per step (the ideal bubble falls as m grows), or an "
        "interleaved schedule (ScheduleInterleaved1F1B, Megatron's virtual pipeline "
        "stages); check the slowest stage's data loading and host work."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = PipelineBubbleParams
    page: ClassVar[str] = "communication"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "excess_points",
            "{} points of bubble above the schedule's ideal",
            then=("bubble_ms_per_step", "{} ms per step", 1),
        ),
    }

    waste_counts: ClassVar[str] = (
        "The stage's bubble above the schedule's ideal (`excess_points`, points of the step), "
        "as that much of the stage's GPU: the ideal bubble is the schedule's price, not waste."
    )

    @classmethod
    def waste(cls, finding: Finding) -> Waste | None:
        excess = finding.evidence.get("excess_points")
        if excess is None or float(excess) <= 0:
            return None
        return Waste(
            float(excess) / 100,
            f"rank {finding.evidence.get('rank')} idles {float(excess):g} points of its step "
            "beyond the schedule's ideal bubble",
        )

    def evaluate(self, job: Job, params: PipelineBubbleParams) -> list[Finding] | str:
        if not job.has_kineto_events:
            return "no PyTorch profiler traces in this job"
        stages = job.pipeline_bubbles()
        if stages.empty:
            return "no pipeline group (send/recv between stages) with profiled steps"
        stages = stages[stages["steps"] >= params.min_steps]
        if stages.empty:
            return f"needs {params.min_steps} profiled steps per pipeline stage"
        findings: list[Finding] = []
        for group, sub in stages.groupby("group", sort=True):
            pace = sub[sub["slowest"]].iloc[0]
            others = sub[~sub["slowest"]]
            others_ms = float(others["compute_ms"].median()) if len(others) else float("nan")
            for r in sub.itertuples(index=False):
                if not r.excess_points >= params.threshold_points:
                    continue
                stage = "?" if r.stage != r.stage or r.stage is None else int(r.stage)
                pace_txt = (
                    f"stage {int(pace['stage'])} (rank {int(pace['rank'])}) sets the pace: it "
                    f"computes {pace['compute_ms']:.1f} ms per step, the other stages "
                    f"{others_ms:.1f} ms (median)"
                )
                findings.append(
                    self.finding(
                        title=(
                            f"Pipeline stage {stage} (rank {int(r.rank)}) idles "
                            f"{r.bubble_pct:.0f}% of the step (ideal {r.ideal_pct:.0f}%)"
                        ),
                        message=(
                            f"{r.bubble_ms:.1f} ms of its {r.step_ms:.1f} ms step computes "
                            f"nothing ({r.bubble_pct:.1f}%, {r.excess_points:.1f} points above "
                            f"the ideal {r.ideal_pct:.1f}% for {int(r.stages)} stages and "
                            f"{r.microbatches:g} micro-batches, > {params.threshold_points}); "
                            f"{pace_txt}"
                        ),
                        evidence={
                            "rank": int(r.rank),
                            "group": str(group),
                            "stage": None if stage == "?" else stage,
                            "stages": int(r.stages),
                            "microbatches": float(r.microbatches),
                            "microbatch_source": str(r.microbatch_source),
                            "steps": int(r.steps),
                            "step_ms": round(float(r.step_ms), 3),
                            "compute_ms": round(float(r.compute_ms), 3),
                            "bubble_ms_per_step": round(float(r.bubble_ms), 3),
                            "bubble_pct": round(float(r.bubble_pct), 2),
                            "ideal_pct": round(float(r.ideal_pct), 2),
                            "excess_points": round(float(r.excess_points), 2),
                            "slowest_stage": int(pace["stage"]),
                            "slowest_rank": int(pace["rank"]),
                            "slowest_compute_ms": round(float(pace["compute_ms"]), 3),
                        },
                        where=f"rank {int(r.rank)}, pipeline stage {stage} of group {group}",
                    )
                )
        return findings

"""AllocatorMemoryGrowth — stepscope rule: tensors that outlive their training step, per rank and
device, from the PyTorch profiler's memory events."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

MIB = 1 << 20


def device_name(device: int) -> str:
    return "cpu" if device < 0 else f"gpu{device}"


class AllocatorMemoryGrowthParams(RuleParams):
    growth_mb: float = Field(
        64.0,
        ge=0,
        description=(
            "Growth (MiB) of allocated memory at step start, "
            "first to last profiled step, above which it fires."
        ),
    )
    min_steps: int = Field(
        3, ge=2, description="Profiled steps with memory events needed before judging."
    )


class AllocatorMemoryGrowth(Rule):
    id: ClassVar[str] = "AllocatorMemoryGrowth"
    title: ClassVar[str] = "Allocated memory grows step after step"
    checks: ClassVar[str] = (
        "Per rank and device, over the profiled steps (at least `min_steps`): "
        "the caching allocator's allocated bytes at the start of each step "
        "rose by more than `growth_mb` MiB from the first step to the last, "
        "and rose in at least two thirds of the step-to-step transitions."
    )
    why: ClassVar[str] = (
        "In steady-state training every step frees what it allocates; memory "
        "that is still allocated when the next step starts, more each time, "
        "ends in an out-of-memory crash hours in. Works from the traces "
        "alone, where SageMaker's GPUMemoryIncrease needs its system monitor."
    )
    recommendation: ClassVar[str] = (
        "Find what keeps tensors alive across steps: losses or outputs "
        "accumulated with their graph (use .item() or .detach()), lists of "
        "tensors kept for logging, growing caches; torch.cuda.memory_summary() "
        "and the profiler's memory timeline show which allocations stay."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = AllocatorMemoryGrowthParams
    page: ClassVar[str] = "steps"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "growth_per_step_mib",
            "+{} MiB allocated per step",
            then=("growth_mib", "+{} MiB over the profiled steps", 0),
        ),
    }

    def evaluate(self, job: Job, params: AllocatorMemoryGrowthParams) -> list[Finding] | str:
        if not job.has_kineto_events:
            return "no PyTorch profiler traces in this job"
        summary = job.allocator_memory_summary()
        if summary.empty:
            return "no profiler memory events in the traces (record with profile_memory=True)"
        judged = summary[summary["steps"] >= params.min_steps]
        if judged.empty:
            return f"no rank with memory events over {params.min_steps} profiled steps"
        findings: list[Finding] = []
        for r in judged.itertuples(index=False):
            growth = (r.last_step_bytes - r.first_step_bytes) / MIB
            transitions = int(r.steps) - 1
            if growth <= params.growth_mb or r.growing_steps * 3 < transitions * 2:
                continue
            rank, dev = int(r.rank), device_name(int(r.device))
            findings.append(
                self.finding(
                    title=(
                        f"Rank {rank}: {dev} memory grows {growth / transitions:.0f} MiB per step"
                    ),
                    message=(
                        f"+{growth:.0f} MiB allocated at step start over {int(r.steps)} steps "
                        f"(+{growth / transitions:.1f} MiB per step, "
                        f"{r.first_step_bytes / MIB:.0f} → "
                        f"{r.last_step_bytes / MIB:.0f} MiB; > {params.growth_mb:g} "
                        f"MiB, up in {int(r.growing_steps)} of {transitions} steps)"
                    ),
                    evidence={
                        "rank": rank,
                        "device": dev,
                        "steps": int(r.steps),
                        "first_step_mib": round(r.first_step_bytes / MIB, 3),
                        "last_step_mib": round(r.last_step_bytes / MIB, 3),
                        "growth_mib": round(growth, 3),
                        "growth_per_step_mib": round(float(r.growth_per_step_bytes) / MIB, 3),
                        "growing_steps": int(r.growing_steps),
                        "peak_allocated_mib": round(r.peak_allocated_bytes / MIB, 3),
                        "peak_reserved_mib": round(r.peak_reserved_bytes / MIB, 3),
                    },
                    where=f"rank {rank}, {dev}",
                )
            )
        return findings

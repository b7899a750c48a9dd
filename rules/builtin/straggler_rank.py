"""StragglerRank — stepscope rule: one rank's own work per step holds every other rank back."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class StragglerRankParams(RuleParams):
    threshold_pct: float = Field(
        15.0,
        ge=0,
        description=(
            "A rank whose median step (or compute) time exceeds "
            "the median of all ranks by this % is a straggler."
        ),
    )
    min_steps: int = Field(3, ge=1, description="Steps needed per rank before judging.")


class StragglerRank(Rule):
    id: ClassVar[str] = "StragglerRank"
    title: ClassVar[str] = "Straggler rank"
    checks: ClassVar[str] = (
        "Per rank: median time per step outside communication and data loading, against the "
        "median of the other ranks; fires above `threshold_pct` % (at least `min_steps` steps)."
    )
    why: ClassVar[str] = (
        "Synchronous training runs at the speed of its "
        "slowest rank: the others wait in the collective."
    )
    recommendation: ClassVar[str] = (
        "Look at what only this rank does (logging, checkpointing, evaluation, uneven shards or "
        "sequence lengths) and at its host (thermal throttling, noisy neighbours, a slower GPU)."
    )
    severity: ClassVar[str] = "error"
    params_model: ClassVar[type[RuleParams]] = StragglerRankParams
    page: ClassVar[str] = "communication"
    marks: ClassVar[str | None] = "straggler"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "excess_ms",
            "+{} ms of own work per step over the other ranks",
            then=("excess_pct", "+{}%", 0),
        ),
    }

    def evaluate(self, job: Job, params: StragglerRankParams) -> list[Finding] | str:
        per = job.rank_busy()
        per = per[per["steps"] >= params.min_steps]
        if len(per) < 2:
            return "needs profiled steps on at least two ranks"
        from analyzer.analyses.steps import busy_vs_others

        res = busy_vs_others(per)
        findings: list[Finding] = []
        for r in res[res["excess_pct"] > params.threshold_pct].itertuples(index=False):
            waiting = res[res["rank"] != r.rank].sort_values("comm_ms", ascending=False)
            others = "the other rank waits" if len(waiting) == 1 else "the others wait"
            findings.append(
                self.finding(
                    title=f"Rank {r.rank} is a straggler (+{r.excess_ms:.1f} ms per step)",
                    message=(
                        f"+{r.excess_ms:.1f} ms of its own work per step; {others} for it in "
                        f"collectives ({r.busy_ms:.1f} ms vs {r.others_busy_ms:.1f} ms on "
                        f"the other ranks, +{r.excess_pct:.0f}% > {params.threshold_pct}%)"
                    ),
                    evidence={
                        "rank": int(r.rank),
                        "steps": int(r.steps),
                        "busy_ms": round(float(r.busy_ms), 3),
                        "others_busy_ms": round(float(r.others_busy_ms), 3),
                        "excess_ms": round(float(r.excess_ms), 3),
                        "excess_pct": round(float(r.excess_pct), 2),
                        "waiting_ranks": [
                            {"rank": int(w.rank), "comm_ms_per_step": round(float(w.comm_ms), 3)}
                            for w in waiting.head(8).itertuples(index=False)
                        ],
                    },
                    where=f"rank {r.rank}",
                )
            )
        return findings

"""StragglerRank — stepscope rule: one rank's own work per step holds every other rank back."""

from __future__ import annotations

from typing import ClassVar

from analyzer.analyses import steps as steps_analyses
from analyzer.job import Job
from rules import params as p
from rules.base import Finding


class StragglerRank:
    id: ClassVar[str] = "StragglerRank"
    title: ClassVar[str] = "Straggler rank"
    checks: ClassVar[str] = (
        "Per rank: median time per step outside communication and data loading, against the median of "
        "the other ranks; fires above `threshold_pct` % (at least `min_steps` steps)."
    )
    why: ClassVar[str] = "Synchronous training runs at the speed of its slowest rank: the others wait in the collective."
    recommendation: ClassVar[str] = (
        "Look at what only this rank does (logging, checkpointing, evaluation, uneven shards or sequence "
        "lengths) and at its host (thermal throttling, noisy neighbours, a slower GPU)."
    )
    severity: ClassVar[str] = "error"
    params_model: ClassVar[type[p.RuleParams]] = p.StragglerRankParams

    def evaluate(self, job: Job, params: p.StragglerRankParams) -> list[Finding] | str:
        breakdown = job.rank_step_breakdown()
        res = steps_analyses.stragglers(breakdown, threshold_pct=params.threshold_pct, min_steps=params.min_steps)
        if res.empty:
            return "needs profiled steps on at least two ranks"
        findings: list[Finding] = []
        for r in res[res["straggler"]].itertuples(index=False):
            waiting = res[res["rank"] != r.rank].sort_values("comm_ms", ascending=False)
            findings.append(
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=f"Rank {r.rank} is a straggler (+{r.excess_ms:.1f} ms per step)",
                    message=(
                        f"rank {r.rank}: {r.busy_ms:.1f} ms of its own work per step vs {r.others_busy_ms:.1f} ms on the "
                        f"other ranks (+{r.excess_pct:.0f}% > {params.threshold_pct}%); the others wait for it in collectives"
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
                    recommendation=self.recommendation,
                    where=f"rank {r.rank}",
                )
            )
        return findings

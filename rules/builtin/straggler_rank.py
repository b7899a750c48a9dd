"""StragglerRank — stepscope rule: one rank's own work per step holds every other rank back."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, Waste
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class StragglerRankParams(RuleParams):
    threshold_pct: float = Field(
        15.0,
        ge=0,
        description=(
            "A rank the others wait for, per waiting rank and step (over all steps, beyond the "
            "least waited-for rank), this % of the median step or more is a straggler "
            "(without collectives matched across ranks: a rank whose own work per step "
            "exceeds the others' median by this %)."
        ),
    )
    min_steps: int = Field(3, ge=1, description="Steps needed per rank before judging.")


class StragglerRank(Rule):
    id: ClassVar[str] = "StragglerRank"
    title: ClassVar[str] = "Straggler rank"
    checks: ClassVar[str] = (
        "Collectives matched across ranks: per step, the rank the others waited for most "
        "(the culprit) and what it did more than them before the collective (data loader, "
        "host work, GPU compute, ...); fires for a rank that is the culprit in at least "
        "`min_steps` steps and whose imposed wait, per waiting rank and averaged over all "
        "steps, exceeds the least imposing rank's by `threshold_pct` % of the median step "
        "(so ranks that are last in turn by chance do not fire). Where no collective matches "
        "across ranks: the median time per step outside communication and data loading, "
        "against the other ranks' median (pipeline stages, whose work differs by design, "
        "are left to PipelineBubble)."
    )
    why: ClassVar[str] = (
        "Synchronous training runs at the speed of its "
        "slowest rank: the others wait in the collective."
    )
    recommendation: ClassVar[str] = (
        "Start from the cause named: a slow data loader on that rank (more workers, "
        "prefetching, its storage), host work only it does (logging, checkpointing, "
        "evaluation), uneven shards or sequence lengths (more GPU compute), and its host "
        "(thermal throttling, noisy neighbours, a slower GPU)."
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

    waste_counts: ClassVar[str] = (
        "The other ranks' wait for it, net of the least imposing rank's, as a share of the "
        "median step (`wait_share_pct`), times the ranks that wait (collectives matched "
        "across ranks; the fallback without them counts none: it has no step time)."
    )

    @classmethod
    def waste(cls, finding: Finding) -> Waste | None:
        ev = finding.evidence
        share, total, each = (
            ev.get("wait_share_pct"),
            ev.get("others_wait_ms_per_step"),
            ev.get("wait_ms_per_waiting_rank"),
        )
        if share is None or not total or not each:
            return None
        waiting = max(1, round(float(total) / float(each)))
        return Waste(
            float(share) / 100 * waiting,
            f"{waiting} rank{'s wait' if waiting > 1 else ' waits'} for rank {ev.get('rank')} "
            f"{float(share):g}% of the median step",
        )

    def evaluate(self, job: Job, params: StragglerRankParams) -> list[Finding] | str:
        culprits = job.culprit_summary()
        if not culprits.empty:
            return self._from_culprits(job, params)
        return self._from_own_work(job, params)

    def _from_culprits(self, job: Job, params: StragglerRankParams) -> list[Finding] | str:
        """The cross-rank verdict: who the others waited for, in which steps, and why."""
        from analyzer.analyses.cross_rank import CAUSE_LABELS, CAUSE_SHORT, CAUSES

        summary, steps, cross = job.culprit_summary(), job.step_culprits(), job.cross_rank()
        ranks = int(steps["ranks"].max())
        if len(steps) < params.min_steps:
            return (
                f"needs collectives matched across ranks in at least {params.min_steps} "
                f"profiled steps (has {len(steps)})"
            )
        step_ms = float(job.rank_step_breakdown()["step_ms"].median())
        findings: list[Finding] = []
        # the wait each rank imposes, averaged over all steps, net of the least imposing
        # rank's: in a balanced job every rank is sometimes last by chance (and a rank that
        # was never last imposes none)
        imposed = summary.set_index("rank")["others_wait_ns"] / summary["steps"].max()
        floor = float(imposed.min()) if len(imposed) >= ranks else 0.0
        for r in summary.itertuples(index=False):
            per_rank_ms = r.others_wait_ns_per_step / 1e6 / max(1, ranks - 1)
            net_ms = (float(imposed[r.rank]) - floor) / 1e6 / max(1, ranks - 1)
            share = 100.0 * net_ms / step_ms if step_ms and step_ms > 0 else 0.0
            if r.steps_last < params.min_steps or share < params.threshold_pct:
                continue
            mine = steps[steps["culprit"] == r.rank]
            late = cross.calls[
                (cross.calls["rank"] == r.rank) & (cross.calls["last_rank"] == r.rank)
            ]
            groups = sorted({str(g) for g in late["group"]})
            nodes = {str(n) for n in late["node"].dropna()}
            where = f"rank {r.rank}" + (f" on {next(iter(nodes))}" if len(nodes) == 1 else "")
            excess = {c: float(getattr(r, f"excess_{c}_ns")) / 1e6 for c in CAUSES}
            excess_ms = sum(excess.values()) / r.steps_last
            cause = CAUSE_LABELS.get(str(r.cause), "no recorded difference")
            share_txt = f" ({r.cause_share_pct:.0f} %)" if r.cause == r.cause else ""
            wait_ms = r.others_wait_ns_per_step / 1e6
            of_step = (
                f"over all {r.steps} steps {net_ms:.1f} ms each, {share:.0f}% of the "
                f"{step_ms:.1f} ms median step > {params.threshold_pct}%"
            )
            if ranks > 2:
                waiting = (
                    f"the other {ranks - 1} ranks wait {wait_ms:.1f} ms per such step in total, "
                    f"{per_rank_ms:.1f} ms each ({of_step})"
                )
                them = "them"
            else:
                waiting, them = (
                    f"the other rank waits {wait_ms:.1f} ms per such step ({of_step})",
                    "it",
                )
            findings.append(
                self.finding(
                    title=(
                        f"Rank {r.rank} holds the others back in {r.steps_last} of {r.steps} "
                        f"steps ({CAUSE_SHORT.get(str(r.cause), 'cause not recorded')})"
                    ),
                    message=(
                        f"arrives last at the step's collectives in {r.steps_last} of "
                        f"{r.steps} steps; {waiting}; before those collectives it spends "
                        f"{excess_ms:.1f} ms more than {them}, in {cause}{share_txt}"
                    ),
                    evidence={
                        "rank": int(r.rank),
                        "method": "collectives matched across ranks",
                        "steps_last": int(r.steps_last),
                        "steps": int(r.steps),
                        "last_in_steps": [int(s) for s in mine["step"].head(32)],
                        "others_wait_ms_per_step": round(wait_ms, 3),
                        "wait_ms_per_waiting_rank": round(per_rank_ms, 3),
                        "net_wait_ms_per_rank_and_step": round(net_ms, 3),
                        "wait_share_pct": round(share, 2),
                        "median_step_ms": round(float(step_ms), 3),
                        "excess_ms": round(excess_ms, 3),
                        "cause": None if r.cause != r.cause else str(r.cause),
                        "cause_share_pct": (
                            None if r.cause != r.cause else round(float(r.cause_share_pct), 1)
                        ),
                        "excess_ms_by_cause": {
                            c: round(v / r.steps_last, 3)
                            for c, v in excess.items()
                            if round(v / r.steps_last, 3) > 0
                        },
                        "process_groups": groups,
                        "clock_skew_ms": round(cross.skew_ns / 1e6, 3),
                    },
                    where=where,
                )
            )
        return findings

    def _from_own_work(self, job: Job, params: StragglerRankParams) -> list[Finding] | str:
        """Without matched collectives: a rank's own work per step against the others'."""
        per = job.rank_busy()
        per = per[per["steps"] >= params.min_steps]
        # pipeline stages do different work by design: PipelineBubble names the slow one
        stages = job.pipeline_bubbles()
        if not stages.empty and len(per) >= 2:
            per = per[~per["rank"].isin(stages["rank"])]
            if len(per) < 2:
                return (
                    "the ranks are pipeline stages, whose work differs by design "
                    "(PipelineBubble judges them)"
                )
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

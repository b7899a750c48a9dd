"""ExposedShardedCommunication — stepscope rule: FSDP / ZeRO communication that computation
does not hide (parameter all-gathers not prefetched, the gradient reduction tail)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, Waste
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class ExposedShardedCommunicationParams(RuleParams):
    threshold_pct: float = Field(
        10.0,
        ge=0,
        le=100,
        description=(
            "Exposed communication of a sharding (FSDP / ZeRO) group, as % of the rank's "
            "step time, above which it fires."
        ),
    )


class ExposedShardedCommunication(Rule):
    id: ClassVar[str] = "ExposedShardedCommunication"
    title: ClassVar[str] = "FSDP / ZeRO communication not hidden by computation"
    checks: ClassVar[str] = (
        "Per rank of a process group classified as FSDP / ZeRO sharding (docs/analyses.md, "
        "parallelism): the time its collectives (parameter all-gathers, gradient "
        "reduce-scatters) run while the rank computes nothing, per step, as a share of the "
        "step, above `threshold_pct` %. The evidence splits the all-gathers' exposed time "
        "into forward and backward, names the unit that waits most (FSDP2's marks), and "
        "gives the reduction tail after the last backward computation."
    )
    why: ClassVar[str] = (
        "Sharded training gathers every layer's parameters before it runs; an all-gather "
        "not issued ahead of time stalls the step for its whole length, every step."
    )
    recommendation: ClassVar[str] = (
        "Prefetch the next unit's all-gather: FSDP2 set_modules_to_forward_prefetch / "
        "set_modules_to_backward_prefetch (FSDP1 forward_prefetch=True, backward_prefetch="
        "BACKWARD_PRE, limit_all_gathers); keep parameters gathered where memory allows "
        "(reshard_after_forward=False, ZeRO-2 instead of ZeRO-3); larger units (wrap policy); "
        "DeepSpeed: overlap_comm=true, stage3_prefetch_bucket_size and reduce_bucket_size."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = ExposedShardedCommunicationParams
    page: ClassVar[str] = "communication"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "exposed_ms_per_step",
            "{} ms per step of sharding communication not hidden",
            then=("share_pct", "{}% of the step", 0),
        ),
    }

    waste_counts: ClassVar[str] = (
        "The group's exposed communication as a share of the step (`share_pct`), as that much "
        "of the rank's GPU."
    )

    @classmethod
    def waste(cls, finding: Finding) -> Waste | None:
        share = finding.evidence.get("share_pct")
        if share is None:
            return None
        return Waste(
            float(share) / 100,
            f"rank {finding.evidence.get('rank')} waits on group "
            f"{finding.evidence.get('group')}'s communication {float(share):g}% of the step",
        )

    def evaluate(self, job: Job, params: ExposedShardedCommunicationParams) -> list[Finding] | str:
        if not job.has_kineto_events:
            return "no PyTorch profiler traces in this job"
        groups = job.process_groups()
        if groups.empty:
            return "no collective calls in the traces"
        sharded = groups[groups["dimension"] == "fsdp"]
        if sharded.empty:
            dims = ", ".join(sorted(set(groups["dimension"])))
            return f"no FSDP / ZeRO sharding group in this job (its groups: {dims})"
        summary = job.group_summary()
        summary = summary[summary["group"].isin(sharded["group"])]
        if summary["group_share_pct"].isna().all():
            return "no profiled steps on the ranks of the sharding groups"
        units = job.fsdp_exposure().set_index(["rank", "group"])
        desc = sharded.set_index("group")["desc"].to_dict()
        findings: list[Finding] = []
        for (rank, group), sub in summary.groupby(["rank", "group"], sort=True):
            exposed = float(sub["group_exposed_ms_per_step"].iloc[0])
            share = float(sub["group_share_pct"].iloc[0])
            if not share > params.threshold_pct:
                continue
            by_op = {str(r.op): round(float(r.exposed_ms_per_step), 3) for r in sub.itertuples()}
            label = f"group {group}" + (f" ({desc[group]})" if desc.get(group) else "")
            evidence: dict[str, object] = {
                "rank": int(rank),
                "group": str(group),
                "group_desc": desc.get(group),
                "exposed_ms_per_step": round(exposed, 3),
                "share_pct": round(share, 2),
                "comm_ms_per_step": round(float(sub["group_time_ms_per_step"].iloc[0]), 3),
                "exposed_ms_per_step_by_op": by_op,
            }
            detail = ""
            if (rank, group) in units.index:
                u = units.loc[(rank, group)]
                evidence |= {
                    "all_gather_exposed_forward_ms": round(float(u["forward_exposed_ms"]), 3),
                    "all_gather_exposed_backward_ms": round(float(u["backward_exposed_ms"]), 3),
                    "worst_unit": int(u["worst_unit"]),
                    "worst_unit_exposed_ms": round(float(u["worst_unit_exposed_ms"]), 3),
                    "reduction_tail_ms": (
                        None if u["tail_ms"] != u["tail_ms"] else round(float(u["tail_ms"]), 3)
                    ),
                }
                detail = (
                    f"; all-gathers wait {u['forward_exposed_ms']:.1f} ms in the forward and "
                    f"{u['backward_exposed_ms']:.1f} ms in the backward, unit "
                    f"{int(u['worst_unit'])} the most ({u['worst_unit_exposed_ms']:.1f} ms)"
                )
                if u["tail_ms"] == u["tail_ms"] and u["tail_ms"] > 0.05:
                    detail += (
                        f"; the gradient reduction runs {u['tail_ms']:.1f} ms past the backward"
                    )
            findings.append(
                self.finding(
                    title=(
                        f"Rank {int(rank)}: {exposed:.1f} ms per step of FSDP / ZeRO "
                        f"communication not hidden ({share:.0f}% of the step)"
                    ),
                    message=(
                        f"{label}: {exposed:.1f} ms per step of its collectives run while the "
                        f"rank computes nothing ({share:.1f}% of the step > "
                        f"{params.threshold_pct}%){detail}"
                    ),
                    evidence=evidence,
                    where=f"rank {int(rank)}, {label}",
                )
            )
        return findings

"""DataLoaderStall — stepscope rule: the training loop waits for its next batch, per rank."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from rules.base import Finding, GroupFigure, Rule, Waste
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job


class DataLoaderStallParams(RuleParams):
    threshold_pct: float = Field(
        20.0,
        ge=0,
        le=100,
        description=(
            "Share of step time (%) spent waiting for the next batch above which a rank stalls."
        ),
    )
    min_steps: int = Field(3, ge=1, description="Steps needed before judging a rank.")


class DataLoaderStall(Rule):
    id: ClassVar[str] = "DataLoaderStall"
    title: ClassVar[str] = "Training loop waits for data"
    checks: ClassVar[str] = (
        "Per rank: mean share of step time spent in the data-loader's `__next__` (or stepscope's "
        "`stepscope:data_loading` label), above `threshold_pct` % over at least `min_steps` steps."
    )
    why: ClassVar[str] = "Every millisecond the loop waits for a batch the accelerator sits idle."
    recommendation: ClassVar[str] = (
        "Raise DataLoader num_workers, set pin_memory=True and persistent_workers=True, prefetch "
        "(prefetch_factor), and move decoding/augmentation out of __getitem__ or onto the GPU."
    )
    severity: ClassVar[str] = "error"
    params_model: ClassVar[type[RuleParams]] = DataLoaderStallParams
    page: ClassVar[str] = "steps"
    group_figures: ClassVar[dict[str | None, GroupFigure]] = {
        None: GroupFigure(
            "mean_wait_ms",
            "{} ms per step waiting for the next batch",
            then=("share_pct", "{}% of the step", 0),
        ),
    }

    waste_counts: ClassVar[str] = (
        "The rank's share of step time spent waiting for the next batch (`share_pct`), as that "
        "much of one GPU: its GPU idles while it waits."
    )

    @classmethod
    def waste(cls, finding: Finding) -> Waste | None:
        share = finding.evidence.get("share_pct")
        if share is None:
            return None
        rank = finding.evidence.get("rank")
        return Waste(
            float(share) / 100, f"rank {rank} waits for data {float(share):g}% of its step time"
        )

    def evaluate(self, job: Job, params: DataLoaderStallParams) -> list[Finding] | str:
        waits = job.dataloader_waits()
        if waits.empty:
            return "no profiled steps with data-loader events in this job"
        findings: list[Finding] = []
        for rank, g in waits.groupby("rank", sort=True):
            if len(g) < params.min_steps:
                continue
            share = float(g["wait_ms"].sum() / g["step_ms"].sum() * 100)
            if share <= params.threshold_pct:
                continue
            findings.append(
                self.finding(
                    title=(
                        f"Rank {int(rank)} waits for data "
                        f"{g['wait_ms'].mean():.1f} ms per step ({share:.0f}%)"
                    ),
                    message=(
                        f"{g['wait_ms'].mean():.1f} ms of {g['step_ms'].mean():.1f} ms per step "
                        f"waiting for the next batch ({share:.1f}% > "
                        f"{params.threshold_pct}%) over {len(g)} steps"
                    ),
                    evidence={
                        "rank": int(rank),
                        "steps": len(g),
                        "share_pct": round(share, 2),
                        "mean_wait_ms": round(float(g["wait_ms"].mean()), 3),
                        "mean_step_ms": round(float(g["step_ms"].mean()), 3),
                        "worst_step": int(g.loc[g["share_pct"].idxmax(), "step"]),
                    },
                    where=f"rank {int(rank)}",
                )
            )
        return findings

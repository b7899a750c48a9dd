"""StepOutlier — SageMaker built-in rule, judged per rank."""

from __future__ import annotations

from typing import ClassVar

from analyzer.analyses import steps as steps_analyses
from rules import params as p
from rules.engine import Finding, RuleContext


class StepOutlier:
    id: ClassVar[str] = "StepOutlier"
    title: ClassVar[str] = "Step-time outliers"
    checks: ClassVar[str] = "Per rank: steps longer than mean + `stddev`·σ of that rank; fires above `n_outliers` outliers."
    why: ClassVar[str] = "Sudden slow steps point at checkpointing, garbage collection, evaluation or stragglers inside training."
    recommendation: ClassVar[str] = "Look at what runs during the slow steps (the trace of those steps); move periodic work off the step."
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[p.RuleParams]] = p.StepOutlierParams

    def evaluate(self, ctx: RuleContext, params: p.StepOutlierParams) -> list[Finding] | str:
        if ctx.steps.empty:
            return "no step annotations (ProfilerStep#N or framework steps) in this job"
        out = steps_analyses.step_outliers(ctx.steps, stddev=params.stddev, mode=params.mode)
        findings: list[Finding] = []
        for rank, g in out.groupby("rank", sort=True):
            if len(g) <= params.n_outliers:
                continue
            findings.append(
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=f"{len(g)} outlier steps on rank {int(rank)}",
                    message=(
                        f"rank {int(rank)}: {len(g)} steps above {g['threshold_ms'].iloc[0]:.1f} ms "
                        f"(mean + {params.stddev}σ), longest {g['dur_ms'].max():.1f} ms; tolerated {params.n_outliers}"
                    ),
                    evidence={
                        "rank": int(rank),
                        "outliers": len(g),
                        "threshold_ms": round(float(g["threshold_ms"].iloc[0]), 3),
                        "steps": [int(s) for s in g["step"].head(50)],
                        "max_ms": round(float(g["dur_ms"].max()), 3),
                    },
                    recommendation=self.recommendation,
                    where=f"rank {int(rank)}",
                )
            )
        return findings

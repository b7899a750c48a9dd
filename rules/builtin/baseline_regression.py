"""BaselineRegression — stepscope rule: a headline figure moved beyond its tolerance
against the baseline run (``stepscope report --baseline SOURCE``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from rules.base import Finding, Rule
from rules.params import RuleParams

if TYPE_CHECKING:
    from analyzer.job import Job

#: (headline key, label, how it regresses, the parameter holding its tolerance)
COMPARED = (
    ("step_time_mean_ms", "mean step time (ms)", "pct_up", "step_time_pct"),
    ("steps_per_s", "throughput (steps/s)", "pct_down", "throughput_pct"),
    ("gpu_util_p50", "GPU utilization p50 (%)", "points_down", "gpu_util_points"),
    ("dataloader_stall_pct", "data-loader stall share (%)", "points_up", "stall_points"),
    ("exposed_comm_pct", "exposed communication share (%)", "points_up", "exposed_comm_points"),
)


class BaselineRegressionParams(RuleParams):
    step_time_pct: float = Field(
        10.0, ge=0, description="Mean step time may grow by this % over the baseline."
    )
    throughput_pct: float = Field(
        10.0, ge=0, description="Throughput (steps/s) may drop by this % under the baseline."
    )
    gpu_util_points: float = Field(
        5.0, ge=0, description="Median GPU utilization may drop by this many points."
    )
    stall_points: float = Field(
        5.0, ge=0, description="Data-loader stall share may grow by this many points."
    )
    exposed_comm_points: float = Field(
        5.0, ge=0, description="Exposed communication share may grow by this many points."
    )


class BaselineRegression(Rule):
    id: ClassVar[str] = "BaselineRegression"
    title: ClassVar[str] = "Regression against the baseline run"
    checks: ClassVar[str] = (
        "Against the baseline run: mean step time up or throughput down by "
        "more than its % tolerance, GPU utilization p50 down or data-loader "
        "stall or exposed communication share up by more than its points."
    )
    why: ClassVar[str] = (
        "A change that makes training slower should fail CI before it reaches the expensive runs."
    )
    recommendation: ClassVar[str] = (
        "Compare the two runs' dashboards (Compare page) and look at what changed between them."
    )
    severity: ClassVar[str] = "warning"
    params_model: ClassVar[type[RuleParams]] = BaselineRegressionParams
    rule_file_note: ClassVar[str] = (
        "Judged only with `stepscope report --baseline "
        "SOURCE`: tolerated change against the baseline."
    )
    page: ClassVar[str] = "compare"
    #: judged only when the job has a baseline (``--baseline``): no row in the report otherwise
    needs_baseline: ClassVar[bool] = True

    def comparisons(self, job: Job, params: BaselineRegressionParams) -> list[dict[str, Any]]:
        """Metric by metric, the current and baseline figures, the change and the verdict."""
        if job.baseline is None:
            return []
        return self.compare_headlines(job.headline(), job.baseline.headline(), params)

    @staticmethod
    def compare_headlines(
        current: dict[str, Any], baseline: dict[str, Any], params: BaselineRegressionParams
    ) -> list[dict[str, Any]]:
        """:meth:`comparisons` on two headlines already computed (e.g. read from reports)."""
        from analyzer.analyses.summary import rounded

        out = []
        for key, label, kind, tol_name in COMPARED:
            tol = getattr(params, tol_name)
            b, c = baseline.get(key), current.get(key)
            if b is None or c is None:
                continue
            change_pct = (c - b) / b * 100 if b else None
            if kind == "pct_up":
                regressed = change_pct is not None and change_pct > tol
            elif kind == "pct_down":
                regressed = change_pct is not None and -change_pct > tol
            elif kind == "points_up":
                regressed = c - b > tol
            else:
                regressed = b - c > tol
            out.append(
                {
                    "metric": key,
                    "label": label,
                    "baseline": rounded(b),
                    "current": rounded(c),
                    "change_pct": rounded(change_pct),
                    "change_points": rounded(c - b),
                    "tolerance": tol,
                    "tolerance_kind": kind,
                    "regressed": bool(regressed),
                }
            )
        return out

    def evaluate(self, job: Job, params: BaselineRegressionParams) -> list[Finding] | str:
        if job.baseline is None:
            return "no baseline run given (--baseline SOURCE)"
        source = job.baseline.dataset.meta.source
        findings = []
        comparisons = self.comparisons(job, params)
        self.details["comparisons"] = comparisons  # the report's Compare table
        for c in comparisons:
            if not c["regressed"]:
                continue
            unit = "%" if c["tolerance_kind"].startswith("pct") else " points"
            # the absolute move first (ms, steps/s, points), the relative one after
            change = f"{c['change_points']:+g}" + ("" if unit == "%" else " points")
            if unit == "%" and c["change_pct"] is not None:
                change += f", {c['change_pct']:+.1f}%"
            findings.append(
                self.finding(
                    title=f"{c['label']} regressed against the baseline",
                    message=(
                        f"{c['label']}: {c['baseline']} → {c['current']} "
                        f"({change}; tolerance {c['tolerance']}{unit})"
                    ),
                    evidence={"baseline_source": source, **c},
                    where="job",
                )
            )
        return findings

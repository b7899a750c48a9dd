"""What each finding costs: the time its rule says it loses (``Rule.waste``), as GPU-hours and
dollars over the job's run.

Why here and not in the rules: a rule knows the time a finding loses per profiled second; what
a GPU-hour costs depends on the job (instance type and count, from DescribeTrainingJob,
``resourceconfig.json`` or ``--instance-type``), on the price table shipped beside this module
(``prices.json``, with the date its figures were taken) or ``--price-per-hour``, and on how
long the job ran. The profiled window is a sample of the run, so the lost time is extrapolated
from the window to the run, and every output says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from analyzer.errors import StepscopeError
from rules.base import Finding, Waste
from rules.registry import BY_ID
from stepscope.report import model as m

PRICES = Path(__file__).with_name("prices.json")
#: where a price is looked up when the job does not say its region
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Pricing:
    """What the caller says about the job's instances (``stepscope report`` flags); a None
    leaves it to the job's metadata."""

    instance_type: str | None = None
    instance_count: int | None = None
    price_per_hour: float | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if self.instance_count is not None and self.instance_count < 1:
            raise StepscopeError(f"--instance-count must be at least 1 (got {self.instance_count})")
        if self.price_per_hour is not None and not self.price_per_hour >= 0:
            raise StepscopeError(f"--price-per-hour must be 0 or more (got {self.price_per_hour})")


@lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    """The shipped price table (``prices.json``)."""
    doc: dict[str, Any] = json.loads(PRICES.read_text(encoding="utf-8"))
    return doc


def waste_of(finding: Finding) -> Waste | None:
    """The time ``finding`` loses, as its rule counts it (None: its rule counts none)."""
    rule = BY_ID.get(finding.rule)
    w = rule.waste(finding) if rule is not None else None
    return w if w is not None and w.gpus > 0 else None


def _run_seconds(meta: Any) -> tuple[float | None, str | None]:
    """How long the job ran: SageMaker's TrainingTimeInSeconds, else its training start to
    end; None when neither is known (a local folder)."""
    t = (meta.extra or {}).get("training_time_s")
    if isinstance(t, (int, float)) and t > 0:
        return float(t), "TrainingTimeInSeconds"
    try:
        if meta.training_start_time and meta.training_end_time:
            s = (
                datetime.fromisoformat(meta.training_end_time)
                - datetime.fromisoformat(meta.training_start_time)
            ).total_seconds()
            if s > 0:
                return s, "training start to end"
    except ValueError:
        pass
    return None, None


def compute(
    meta: Any,
    findings: list[Finding],
    wastes: list[Waste | None],
    *,
    pricing: Pricing | None,
    window_s: float | None,
    nodes: int,
    ranks: int,
    table: dict[str, Any] | None = None,
) -> m.Cost:
    """The cost of ``findings`` (in report order; ``wastes`` beside them) for the job that
    ``meta`` describes, with ``pricing``'s overrides; ``window_s``: the profiled window."""
    pricing = pricing or Pricing()
    table = table if table is not None else price_table()
    extra = meta.extra or {}
    from_job = extra.get("instance_source", "DescribeTrainingJob")
    itype, itype_source = pricing.instance_type, "--instance-type"
    if itype is None and meta.instance_type:
        itype, itype_source = meta.instance_type, from_job
    count, count_source = pricing.instance_count, "--instance-count"
    if count is None and meta.instance_count:
        count, count_source = int(meta.instance_count), from_job
    if count is None and nodes > 0:
        count, count_source = nodes, "nodes in the data"
    spec = (table.get("gpus") or {}).get(itype) if itype else None
    gpus_per: int | None = int(spec["gpus"]) if spec else None
    gpus_source = "price table" if spec else None
    if gpus_per is None and ranks > 0 and nodes > 0:
        gpus_per, gpus_source = max(1, round(ranks / nodes)), "ranks per node in the data"
    region = extra.get("region") or pricing.region
    notes: list[str] = []
    price = pricing.price_per_hour
    price_source: str | None = "--price-per-hour"
    if price is None:
        looked = region or DEFAULT_REGION
        entry = ((table.get("prices") or {}).get(looked) or {}).get(itype) if itype else None
        price = float(entry["usd_per_hour"]) if entry else None
        price_source = f"price table ({looked}, taken {table.get('taken')})"
        if price is None:
            price_source = None
            notes.append(
                f"no price known for {itype} in {looked}; --price-per-hour sets one"
                if itype
                else "no instance type known; --instance-type or --price-per-hour sets one"
            )
        elif region is None:
            notes.append(f"region unknown: {DEFAULT_REGION} prices")
    run_s, run_source = _run_seconds(meta)
    span = run_s if run_s is not None else window_s
    if run_s is not None and window_s:
        label = (
            f"extrapolated from the profiled window ({window_s:,.1f} s) "
            f"to the run ({run_s:,.0f} s, {run_source})"
        )
    else:
        label = (
            f"over the profiled window ({(window_s or 0):,.1f} s) only: the run's length is "
            "unknown (no TrainingTimeInSeconds or training start and end)"
        )
    hours = (span or 0.0) / 3600
    usd_per_gpu_hour = price / gpus_per if price is not None and gpus_per else None
    rows: list[m.FindingCost] = []
    for i, (f, w) in enumerate(zip(findings, wastes, strict=True)):
        if w is None:
            continue
        gh = w.gpus * hours
        rows.append(
            m.FindingCost(
                finding=i,
                rule=f.rule,
                gpus=round(w.gpus, 4),
                basis=w.basis,
                gpu_hours=round(gh, 4),
                usd=None if usd_per_gpu_hour is None else round(gh * usd_per_gpu_hour, 4),
            )
        )
    total_gpus = count * gpus_per if count and gpus_per else (ranks or None)
    lost = sum(w.gpus for w in wastes if w is not None)
    lost_gh = lost * hours
    run_gh = total_gpus * hours if total_gpus else None
    return m.Cost(
        instance_type=itype,
        instance_type_source=itype_source if itype else None,
        instance_count=count,
        instance_count_source=count_source if count else None,
        gpus_per_instance=gpus_per,
        gpus_source=gpus_source,
        region=region,
        price_per_hour=price,
        price_source=price_source,
        window_s=None if window_s is None else round(window_s, 3),
        run_s=None if run_s is None else round(run_s, 3),
        run_source=run_source,
        extrapolated=run_s is not None and bool(window_s),
        label=label,
        run_gpu_hours=None if run_gh is None else round(run_gh, 4),
        run_usd=None if price is None or not count else round(price * count * hours, 4),
        lost_gpu_hours=round(lost_gh, 4),
        lost_usd=None if usd_per_gpu_hour is None else round(lost_gh * usd_per_gpu_hour, 4),
        recoverable_pct=None if not total_gpus else round(min(100.0, 100.0 * lost / total_gpus), 2),
        note="; ".join(notes) or None,
        findings=rows,
    )


def headline(cost: m.Cost) -> str:
    """One line every output shows: what the findings lose, their share of the bill, how
    counted. ``"Findings lose 0.81 GPU-hours ($12.40), 23.5% of the run's $52.77 — ..."``"""
    money = "" if cost.lost_usd is None else f" (${num(cost.lost_usd)})"
    share = "" if cost.recoverable_pct is None else f", {cost.recoverable_pct:g}% of the run's"
    bill = (
        f" ${num(cost.run_usd)}"
        if cost.run_usd is not None
        else f" {num(cost.run_gpu_hours)} GPU-hours"
        if cost.run_gpu_hours is not None and share
        else ""
    )
    where = f" on {cost.instance_count} × {cost.instance_type}" if cost.instance_type else ""
    note = f" ({cost.note})" if cost.note else ""
    return (
        f"Findings lose {num(cost.lost_gpu_hours)} GPU-hours{money}{share}{bill}{where}"
        f" — {cost.label}{note}"
    )


def num(x: float) -> str:
    """``1,234.57``, ``0.0044``: two decimals, or three significant digits below one, so a
    short window's small figures do not all read 0.00."""
    return f"{x:,.2f}" if abs(x) >= 1 or x == 0 else f"{x:.3g}"


def cost_text(cost: m.Cost | None, indexes: list[int]) -> str:
    """``"0.42 GPU-h, $6.12"`` / ``"0.42 GPU-h"`` / ``""``: what findings ``indexes`` (one,
    or a group's) lose over the run, for a table cell."""
    if cost is None:
        return ""
    rows = [c for c in cost.findings if c.finding in set(indexes)]
    if not rows:
        return ""
    gh = sum(c.gpu_hours for c in rows)
    usd = None if any(c.usd is None for c in rows) else sum(c.usd or 0.0 for c in rows)
    return f"{num(gh)} GPU-h" + ("" if usd is None else f", ${num(usd)}")

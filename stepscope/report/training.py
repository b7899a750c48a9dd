"""The "Training health" section: per worker the loss over steps, gradient norms per layer
over steps, update ratios and activation statistics, and which chart shows each training
rule's finding.

Built from the Job's training methods (``analyzer.analyses.training``), judging nothing:
the verdicts are SageMaker Debugger's rules' findings. Long series are binned on steps
(mean per bin, as the other series are) so a browser never gets every recorded step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analyzer.analyses.summary import bin_groups
from analyzer.job import Job
from rules.base import Finding, RuleResult
from stepscope.report import model as m
from stepscope.report.grouping import place_key
from stepscope.report.rule_info import rule_chart, training_rule_ids

#: points per line (loss, update ratio, activation) and step bins of a heatmap
MAX_POINTS = 500
HEATMAP_BINS = 120
#: one line: what fills the section when the job has no training data
NO_DATA_NOTE = (
    "No training-health data: log losses (and gradient/weight/activation statistics) with a "
    "TensorBoard SummaryWriter, save SageMaker Debugger output (debug-output/), or run the "
    "script under "
    "`stepscope run --health`."
)
#: the section's charts, as the outputs title them
CHART_TITLES = {
    "loss": "Loss over steps",
    "gradient_norms": "Gradient norm per layer over steps",
    "update_ratios": "Update ratio ‖Δw‖/‖w‖ per layer",
    "activations": "Activation statistics (zero share and range per layer)",
}


def anchor(chart: str, worker: str) -> str:
    """The HTML id of one worker's chart: what a finding links to."""
    slug = "".join(c if c.isalnum() else "-" for c in worker.lower()).strip("-") or "job"
    return f"training-{chart.replace('_', '-')}-{slug}"


def section(job: Job, results: list[RuleResult], findings: list[Finding]) -> m.TrainingHealth:
    """The report.json summary: workers, steps covered, last loss, which rules judged what."""
    ids = set(training_rule_ids())
    verdicts = [
        m.TrainingRuleVerdict(
            rule=r.rule,
            status="error"
            if r.error
            else "skipped"
            if r.skipped_reason
            else "fired"
            if r.fired
            else "passed",
            findings=[i for i, f in enumerate(findings) if f.rule == r.rule],
            chart=rule_chart(r.rule),
        )
        for r in results
        if r.rule in ids
    ]
    if not job.has_training_data():
        return m.TrainingHealth(workers=[], rules=verdicts, note=NO_DATA_NOTE)
    return m.TrainingHealth(workers=workers(job), rules=verdicts, note=None)


def workers(job: Job) -> list[m.TrainingWorker]:
    scalars, tensors = job.training_scalars(), job.training_tensors()
    steps = pd.concat(
        [d[["worker_label", "step"]] for d in (scalars, tensors) if not d.empty], ignore_index=True
    )
    trend, losses = job.loss_trend(), job.loss_series()
    grads = job.gradient_norms()
    bad = job.nonfinite_steps()
    out = []
    for worker in _ordered(steps["worker_label"]):
        s = steps.loc[steps["worker_label"] == worker, "step"].astype(int)
        train = _last_loss(trend, losses, worker, "train")
        ev = _last_loss(trend, losses, worker, "eval")
        b = bad[bad["worker_label"] == worker] if not bad.empty else bad
        out.append(
            m.TrainingWorker(
                worker=worker,
                first_step=int(s.min()),
                last_step=int(s.max()),
                steps=int(s.nunique()),
                loss_tag=train[0],
                last_loss=train[1],
                last_loss_step=train[2],
                eval_loss_tag=ev[0],
                last_eval_loss=ev[1],
                gradient_layers=int(grads.loc[grads["worker_label"] == worker, "name"].nunique())
                if not grads.empty
                else 0,
                first_nonfinite_step=int(b["step"].min()) if len(b) else None,
            )
        )
    return out


def _ordered(labels: pd.Series) -> list[str]:
    """Worker labels in natural order (algo-2 rank 1 before algo-10 rank 0)."""
    return sorted({str(w) for w in labels}, key=place_key)


def _last_loss(
    trend: pd.DataFrame, losses: pd.DataFrame, worker: str, phase: str
) -> tuple[str | None, float | None, int | None]:
    """(tag, last finite value, its step) of the worker's loss of ``phase`` with the most points."""
    if trend.empty:
        return None, None, None
    rows = trend[(trend["worker_label"] == worker) & (trend["phase"] == phase)]
    if rows.empty:
        return None, None, None
    tag = str(rows.sort_values(["points", "tag"], ascending=[False, True]).iloc[0]["tag"])
    series = losses[(losses["worker_label"] == worker) & (losses["tag"] == tag)]
    finite = series[np.isfinite(series["value"].astype(float))]
    if finite.empty:
        return tag, None, None
    last = finite.iloc[-1]
    return tag, float(last["value"]), int(last["step"])


def charts(job: Job) -> m.TrainingCharts | None:
    """The section's series (never in report.json); None without training data."""
    if not job.has_training_data():
        return None
    losses = job.loss_series()
    grads = job.gradient_norms()
    ratios = job.update_ratios()
    acts = job.activation_stats()
    loss = _binned(
        losses.rename(columns={"worker_label": "worker"}),
        ["worker", "tag", "phase"],
        {"value": "value"},
    )
    upd = _binned(
        ratios.rename(columns={"worker_label": "worker"}), ["worker", "name"], {"ratio": "ratio"}
    )
    act = _binned(
        acts.rename(columns={"worker_label": "worker"}).assign(
            module=acts["module"].where(acts["module"].notna(), "")
        ),
        ["worker", "name", "module"],
        {"zero_fraction": "zero_fraction", "min": "min", "max": "max"},
    )
    if not act.empty:
        act["module"] = act["module"].map(lambda v: v or None)
    return m.TrainingCharts(
        loss=m.TrainingLoss.of(loss),
        gradient_norms=gradient_heatmaps(grads),
        update_ratios=m.UpdateRatioSeries.of(upd),
        activations=m.ActivationSeries.of(act),
        layers=m.LayerSummary.of(layer_summary(grads, ratios, acts)),
    )


def _binned(
    df: pd.DataFrame, keys: list[str], values: dict[str, str], max_points: int = MAX_POINTS
) -> pd.DataFrame:
    """Per group of ``keys``: the rows as they are when at most ``max_points``, else the
    mean of each value per step bin (a non-finite value counts as missing in its bin)."""
    cols = [*keys, "step", *values.values()]
    if df.empty:
        return pd.DataFrame(columns=cols)
    parts = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        g = g.sort_values("step")
        if len(g) <= max_points:
            parts.append(g[[*keys, "step", *values]].rename(columns=values))
            continue
        step = g["step"].to_numpy(dtype=float)
        group = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        binned: dict[str, Any] = {}
        for col, out in values.items():
            v = g[col].to_numpy(dtype=float)
            ok = np.isfinite(v)
            b = bin_groups(
                step[ok],
                v[ok],
                np.zeros(int(ok.sum()), dtype=np.int64),
                1,
                max_points,
                t_range=(float(step.min()), float(step.max())),
            )
            binned[out] = b.set_index("t")["mean"]
        frame = pd.DataFrame(binned).sort_index().rename_axis("step").reset_index()
        parts.append(frame.assign(**group)[cols])
    out = pd.concat(parts, ignore_index=True)[cols]
    out["step"] = out["step"].astype(float)
    return out


def gradient_heatmaps(grads: pd.DataFrame) -> list[m.LayerHeatmap]:
    """Per worker: layers × step bins of the gradient norm (layers in recording order)."""
    out: list[m.LayerHeatmap] = []
    if grads.empty:
        return out
    for worker in _ordered(grads["worker_label"]):
        g = grads[grads["worker_label"] == worker]
        layers = list(dict.fromkeys(g["name"].astype(str)))
        norm = g["norm"].to_numpy(dtype=float)
        step = g["step"].to_numpy(dtype=float)
        ok = np.isfinite(norm)
        lo, hi = float(step.min()), float(step.max())
        distinct = np.unique(step)
        bins = min(HEATMAP_BINS, len(distinct))
        index = {name: i for i, name in enumerate(layers)}
        rows = g["name"].astype(str).map(index).to_numpy(dtype=np.int64)
        if len(distinct) <= HEATMAP_BINS:  # every recorded step a column of its own
            col = np.searchsorted(distinct, step)
            centres = distinct
        else:
            width = max((hi - lo) / bins, 1e-9)
            col = np.clip(((step - lo) / width).astype(np.int64), 0, bins - 1)
            centres = lo + (np.arange(bins) + 0.5) * width
        total = np.zeros((len(layers), len(centres)))
        count = np.zeros((len(layers), len(centres)))
        np.add.at(total, (rows[ok], col[ok]), norm[ok])
        np.add.at(count, (rows[ok], col[ok]), 1)
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        used = np.flatnonzero(np.isin(np.arange(len(centres)), np.unique(col)))
        out.append(
            m.LayerHeatmap(
                worker=worker,
                rows=layers,
                steps=[float(centres[c]) for c in used],
                values=[
                    [None if v != v else float(v) for v in row] for row in mean[:, used].tolist()
                ],
            )
        )
    return out


def layer_summary(grads: pd.DataFrame, ratios: pd.DataFrame, acts: pd.DataFrame) -> pd.DataFrame:
    """Per worker, layer and measurement: points, step range, last / min / max finite value."""
    rows: list[dict[str, Any]] = []
    for measure, df, col in (
        ("gradient_norm", grads, "norm"),
        ("update_ratio", ratios, "ratio"),
        ("zero_fraction", acts, "zero_fraction"),
    ):
        if df.empty:
            continue
        for (worker, name), g in df.groupby(["worker_label", "name"], sort=False):
            g = g.sort_values("step")
            v = g[col].to_numpy(dtype=float)
            finite = v[np.isfinite(v)]
            module = (
                g["module"].dropna().iloc[0]
                if "module" in g and g["module"].notna().any()
                else None
            )
            rows.append(
                {
                    "worker": str(worker),
                    "layer": str(name),
                    "measure": measure,
                    "module": module,
                    "points": len(g),
                    "first_step": int(g["step"].min()),
                    "last_step": int(g["step"].max()),
                    "last": float(finite[-1]) if len(finite) else None,
                    "min": float(finite.min()) if len(finite) else None,
                    "max": float(finite.max()) if len(finite) else None,
                }
            )
    cols = [
        "worker",
        "layer",
        "measure",
        "module",
        "points",
        "first_step",
        "last_step",
        "last",
        "min",
        "max",
    ]
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        return df
    order = {"gradient_norm": 0, "update_ratio": 1, "zero_fraction": 2}
    position = {w: i for i, w in enumerate(_ordered(df["worker"]))}
    return (
        df.assign(_w=df["worker"].map(position), _m=df["measure"].map(order))
        .sort_values(["_w", "_m"], kind="mergesort")
        .drop(columns=["_w", "_m"])
        .reset_index(drop=True)
    )


def log_norms(z: np.ndarray) -> np.ndarray:
    """log10 of gradient norms for a heatmap's colour; a zero norm (a dead layer) sits one
    decade under the smallest positive one rather than vanishing into a gap like a NaN."""
    logz = np.full(z.shape, np.nan)
    np.log10(z, out=logz, where=z > 0)
    floor = (float(np.nanmin(logz)) - 1.0) if np.isfinite(logz).any() else -12.0
    return np.where(z == 0, floor, logz)

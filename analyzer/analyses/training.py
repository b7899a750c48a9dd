"""Training-health measurements: loss series and trends, per-layer gradient norms, update
ratios, activation statistics and the steps where something stopped being a number.

Pure functions over the ``training_scalars`` / ``training_tensors`` tables (from TensorBoard
event files, SageMaker Debugger tensors and stepscope's health hooks). Every row carries
its ``worker`` label -- the node and rank (or Debugger's worker name, or the TensorBoard
run) -- so each training process is measured on its own, never averaged with the others.
They measure and never judge: the thresholds of SageMaker Debugger's rules (loss not
decreasing, vanishing gradients, dead ReLUs...) are applied in ``rules/builtin``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from analyzer.ingest.dataset import JobDataset

#: tags that are a loss: any path component naming one (``loss``, ``train/loss``,
#: ``eval/loss``, ``CrossEntropyLoss_output_0``, ``val_loss``)
LOSS_TAG_RE = re.compile(r"loss", re.IGNORECASE)
#: tags of an evaluation / validation loss (the rest of the loss tags are training losses)
EVAL_TAG_RE = re.compile(
    r"(^|[/_.])(eval|evaluation|val|valid|validation|test)([/_.]|$)", re.IGNORECASE
)


def _frame(ds: JobDataset, table: str) -> pd.DataFrame:
    t: pa.Table = ds.table(table)
    if table == "training_tensors":
        has_nan, has_inf = _nonfinite_flags(t)
        t = t.append_column("has_nan", has_nan).append_column("has_inf", has_inf)
    df = t.to_pandas()
    for col in df.columns:
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype(object)
    if df.empty:
        return df.assign(worker_label=pd.Series(dtype=object))
    return df.assign(worker_label=worker_labels(df))


def worker_labels(df: pd.DataFrame) -> pd.Series:
    """One label per training process: ``<node> rank <R>`` (health hooks),
    ``<worker>`` (Debugger's worker name, or the TensorBoard run)."""
    labels = []
    for node, rank, worker in zip(df["node"], df["rank"], df["worker"], strict=True):
        if isinstance(worker, str) and worker:
            labels.append(worker)
        elif rank is not None and not (isinstance(rank, float) and math.isnan(rank)):
            labels.append(
                f"{node} rank {int(rank)}" if isinstance(node, str) else f"rank {int(rank)}"
            )
        else:
            labels.append(node if isinstance(node, str) else "job")
    return pd.Series(labels, index=df.index, dtype=object)


def training_scalars(ds: JobDataset) -> pd.DataFrame:
    """Every training scalar: worker_label, node, rank, worker, step, tag, value, source, run."""
    return _frame(ds, "training_scalars")


def training_tensors(ds: JobDataset) -> pd.DataFrame:
    """Every per-tensor statistic row: worker_label, step, name, role, module, the
    statistics (norm, mean, std, min, max, zero_fraction, value, nan_count, inf_count, numel),
    and has_nan / has_inf (a NaN or Inf count, or a recorded statistic that is NaN / Inf)."""
    return _frame(ds, "training_tensors")


def loss_series(scalars: pd.DataFrame) -> pd.DataFrame:
    """The loss scalars, one row per (worker_label, tag, step): phase ``eval`` for
    evaluation/validation tags, ``train`` otherwise; value may be NaN/Inf. When a worker
    has the same tag twice at a step (two event files of one run) the last one counts."""
    cols = ["worker_label", "tag", "phase", "step", "value"]
    if scalars.empty:
        return pd.DataFrame(columns=cols)
    df = scalars[scalars["tag"].map(lambda t: bool(LOSS_TAG_RE.search(str(t))))]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.assign(phase=df["tag"].map(lambda t: "eval" if EVAL_TAG_RE.search(str(t)) else "train"))
    df = df.sort_values(["worker_label", "tag", "step", "wall_time_ns"], na_position="first")
    df = df.drop_duplicates(["worker_label", "tag", "step"], keep="last")
    return df[cols].reset_index(drop=True)


def loss_trend(losses: pd.DataFrame) -> pd.DataFrame:
    """Per (worker_label, tag): phase, points, first_step, last_step, first_value,
    last_value, min_value and change_pct = (last - first) / |first| * 100 over the finite
    values (NaN when fewer than two)."""
    rows = []
    for (worker, tag), g in losses.groupby(["worker_label", "tag"], sort=True):
        finite = g[np.isfinite(g["value"].astype(float))]
        first = float(finite["value"].iloc[0]) if len(finite) else math.nan
        last = float(finite["value"].iloc[-1]) if len(finite) else math.nan
        change = (last - first) / abs(first) * 100 if len(finite) >= 2 and first != 0 else math.nan
        rows.append(
            {
                "worker_label": worker,
                "tag": tag,
                "phase": g["phase"].iloc[0],
                "points": len(g),
                "first_step": int(g["step"].iloc[0]),
                "last_step": int(g["step"].iloc[-1]),
                "first_value": first,
                "last_value": last,
                "min_value": float(finite["value"].min()) if len(finite) else math.nan,
                "change_pct": change,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "worker_label",
            "tag",
            "phase",
            "points",
            "first_step",
            "last_step",
            "first_value",
            "last_value",
            "min_value",
            "change_pct",
        ],
    )


def gradient_norms(tensors: pd.DataFrame) -> pd.DataFrame:
    """Per (worker_label, name, step) of the gradient rows: norm, numel and
    rms = norm / sqrt(numel), the root mean square of the gradient's elements (an upper
    bound of their mean absolute value); NaN where the norm or the size is not known (a row
    without a size takes the one the same parameter has at another step)."""
    cols = ["worker_label", "name", "step", "norm", "numel", "rms"]
    g = tensors[tensors["role"] == "gradient"] if not tensors.empty else tensors
    if g.empty:
        return pd.DataFrame(columns=cols)
    # a parameter's size does not change: a row without it (a TensorBoard norm scalar at a
    # step without a histogram) takes the size recorded at another step
    numel = g["numel"].astype(float)
    numel = numel.fillna(numel.groupby([g["worker_label"], g["name"]]).transform("max"))
    norm = g["norm"].astype(float)
    rms = norm / np.sqrt(numel.where(numel > 0))
    return (
        g.assign(norm=norm, numel=numel, rms=rms)[cols]
        .sort_values(["worker_label", "name", "step"])
        .reset_index(drop=True)
    )


def update_ratios(tensors: pd.DataFrame) -> pd.DataFrame:
    """Per (worker_label, name, step): ratio = ||w_after - w_before|| / ||w_before|| of one
    optimizer step, as the hooks and the TensorBoard layout record it."""
    cols = ["worker_label", "name", "step", "ratio"]
    u = tensors[tensors["role"] == "update_ratio"] if not tensors.empty else tensors
    if u.empty:
        return pd.DataFrame(columns=cols)
    return (
        u.assign(ratio=u["value"].astype(float))[cols]
        .sort_values(["worker_label", "name", "step"])
        .reset_index(drop=True)
    )


def activation_stats(tensors: pd.DataFrame) -> pd.DataFrame:
    """Per (worker_label, name, step) of the activation (module output) rows: module
    (class or layer name), zero_fraction, min, max, mean, numel."""
    cols = [
        "worker_label",
        "name",
        "module",
        "step",
        "zero_fraction",
        "min",
        "max",
        "mean",
        "numel",
    ]
    a = tensors[tensors["role"] == "activation"] if not tensors.empty else tensors
    if a.empty:
        return pd.DataFrame(columns=cols)
    return a[cols].sort_values(["worker_label", "name", "step"]).reset_index(drop=True)


def tensor_stats(tensors: pd.DataFrame, role: str | None = None) -> pd.DataFrame:
    """The per-tensor rows of one role (every role when None), sorted by worker, name, step."""
    df = tensors if role is None or tensors.empty else tensors[tensors["role"] == role]
    if df.empty:
        return df
    return df.sort_values(["worker_label", "role", "name", "step"]).reset_index(drop=True)


def tensor_label(role: object, name: object) -> str:
    """A tensor's name as SageMaker Debugger writes it: ``gradient/<param>`` for a
    gradient (the parameter's own name is the weight's), ``update_ratio/<param>`` for an
    update ratio, the name itself otherwise."""
    if role in ("gradient", "update_ratio"):
        return f"{role}/{name}"
    return str(name)


def nonfinite_steps(scalars: pd.DataFrame, tensors: pd.DataFrame) -> pd.DataFrame:
    """Every value that is no longer a number, one row each: worker_label, step, kind
    (``scalar`` / ``tensor``), name (the tag, or the tensor's name), role, tensor (the name as
    Debugger writes it, :func:`tensor_label`), nan (a NaN is there), inf (an Inf is there),
    pos_inf / neg_inf (a +Inf / -Inf is there; both False for an Inf of unknown sign: the
    hooks' records count Infs without their sign), count (NaN + Inf elements where counted,
    else null). A tensor counts when its NaN/Inf counts are positive or any recorded
    statistic is NaN/Inf (a statistic that was not recorded is null, not NaN: ``has_nan`` /
    ``has_inf`` tell them apart)."""
    cols = ["worker_label", "step", "kind", "name", "role", "tensor", "nan", "inf", "pos_inf",
            "neg_inf", "count"]  # fmt: skip
    rows: list[dict[str, object]] = []
    if not scalars.empty:
        v = scalars["value"].astype(float)
        for r in scalars[~np.isfinite(v)].itertuples(index=False):
            value = float(r.value)
            rows.append(
                {
                    "worker_label": r.worker_label,
                    "step": int(r.step),
                    "kind": "scalar",
                    "name": r.tag,
                    "role": None,
                    "tensor": str(r.tag),
                    "nan": bool(math.isnan(value)),
                    "inf": bool(math.isinf(value)),
                    "pos_inf": value == math.inf,
                    "neg_inf": value == -math.inf,
                    "count": 1,
                }
            )
    if not tensors.empty:
        bad = tensors[tensors["has_nan"] | tensors["has_inf"]]
        has_sign = "neg_inf_count" in bad.columns
        for r in bad.itertuples(index=False):
            infs = 0 if pd.isna(r.inf_count) else int(r.inf_count)
            n = (0 if pd.isna(r.nan_count) else int(r.nan_count)) + infs
            raw: Any = getattr(r, "neg_inf_count", None) if has_sign else None
            signed = raw is not None and not pd.isna(raw)
            neg = int(raw) if signed else 0
            rows.append(
                {
                    "worker_label": r.worker_label,
                    "step": int(r.step),
                    "kind": "tensor",
                    "name": r.name,
                    "role": r.role,
                    "tensor": tensor_label(r.role, r.name),
                    "nan": bool(r.has_nan),
                    "inf": bool(r.has_inf),
                    "pos_inf": bool(signed and infs - neg > 0),
                    "neg_inf": bool(signed and neg > 0),
                    "count": n or None,
                }
            )
    if not rows:
        return pd.DataFrame(columns=cols)
    return (
        pd.DataFrame(rows, columns=cols)
        .sort_values(["worker_label", "step", "kind", "name"])
        .reset_index(drop=True)
    )


def _nonfinite_flags(t: pa.Table) -> tuple[pa.Array, pa.Array]:
    """Per tensor row: has_nan, has_inf -- from the counts and from the recorded statistics,
    in Arrow, where a NaN (written) and a null (not recorded) are still different."""
    import pyarrow.compute as pc

    n = t.num_rows
    has_nan = pc.fill_null(pc.greater(t.column("nan_count"), 0), False)
    has_inf = pc.fill_null(pc.greater(t.column("inf_count"), 0), False)
    for col in ("norm", "mean", "std", "min", "max", "value"):
        c = t.column(col)
        has_nan = pc.or_(has_nan, pc.fill_null(pc.is_nan(c), False))
        has_inf = pc.or_(has_inf, pc.fill_null(pc.is_inf(c), False))
    if n == 0:
        return pa.array([], pa.bool_()), pa.array([], pa.bool_())
    return has_nan.combine_chunks(), has_inf.combine_chunks()

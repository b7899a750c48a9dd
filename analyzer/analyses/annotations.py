"""GPU time by the user's own labels: ``record_function`` ranges (``## forward ##``,
``Optimizer.step``, ``stepscope:data_loading``...) as the GPU saw them (HTA's
``get_gpu_user_annotation_breakdown``).

Definition, per rank and annotation name, over the ``gpu_user_annotation`` events Kineto
writes (each spans the GPU work launched inside one CPU ``record_function`` range): how
many, total, mean, min, max and standard deviation (0 for a single one, as HTA) of their
durations, and each name's share of the rank's annotated time (``pct``; nested labels
count in full each, so the shares may add up to more than 100). In the analysis scope
(``scope="hta"``) annotations that start after the rank's last ``ProfilerStep`` starts are
left out, as HTA's trimming leaves them out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from analyzer.analyses.gpu_kernels import (
    Rounding,
    Scope,
    _base_times,
    _col,
    _round_like_hta,
    _string_col,
    kineto_events_table,
    last_step_starts,
)

__all__ = ["ANNOTATION_COLUMNS", "gpu_annotation_breakdown"]

ANNOTATION_COLUMNS = [
    "rank",
    "name",
    "count",
    "total_ns",
    "mean_ns",
    "min_ns",
    "max_ns",
    "std_ns",
    "pct",
]


def gpu_annotation_breakdown(
    source: Any, *, scope: Scope = "hta", rounding: Rounding = "none"
) -> pd.DataFrame:
    """Per rank and GPU user annotation: count and duration statistics (see the module
    docstring), largest total first within each rank. Empty when the traces hold none."""
    table = kineto_events_table(source)
    empty = pd.DataFrame(
        {c: pd.Series(dtype=object if c == "name" else float) for c in ANNOTATION_COLUMNS}
    )
    if table.num_rows == 0:
        return empty
    is_ann = pc.fill_null(pc.equal(_string_col(table, "cat"), "gpu_user_annotation"), False)
    is_ann = pc.and_(is_ann, pc.is_valid(_col(table, "start_ns")))
    df = table.filter(is_ann).select(["rank", "name", "start_ns", "dur_ns"]).to_pandas()
    if df.empty:
        return empty
    df["name"] = df["name"].astype(str)
    df["start_ns"] = df["start_ns"].astype(np.int64)
    df["dur_ns"] = df["dur_ns"].fillna(0).astype(np.int64)
    if scope == "hta":
        last = last_step_starts(source)
        if last is not None:
            limit = df["rank"].map(last)
            df = df[~(df["start_ns"] >= limit)]  # ranks without steps (NaN) keep everything
    df = df.assign(end_ns=df["start_ns"] + df["dur_ns"])
    if rounding == "hta":
        _round_like_hta(df, _base_times(source))
    df["d"] = (df["end_ns"] - df["start_ns"]).astype(np.int64)
    out = (
        df.groupby(["rank", "name"], sort=False)["d"]
        .agg(count="size", total_ns="sum", mean_ns="mean", min_ns="min", max_ns="max", std_ns="std")
        .reset_index()
    )
    out["std_ns"] = out["std_ns"].fillna(0.0)
    rank_total = out.groupby("rank")["total_ns"].transform("sum")
    out["pct"] = (out["total_ns"] / rank_total.where(rank_total > 0) * 100).astype(float)
    out["rank"] = out["rank"].astype(np.int32)
    out = out.sort_values(
        ["rank", "total_ns", "name"], ascending=[True, False, True], ignore_index=True
    )
    return out[ANNOTATION_COLUMNS]

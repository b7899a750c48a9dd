"""One table formatter for every page: human column labels with units, one decimal policy,
blank cells as "–", all-empty columns dropped, ranks in numeric and nodes in natural order.

Why one module: the pages read typed report fields whose names (``mean_ns``,
``steps_per_s``) are an API, not a heading, and every per-page fix drifted (six decimals
here, three there, "None" cells). The values stay numbers (a pandas ``Styler`` only sets what
is displayed), so sorting a column in the browser still sorts by value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from analyzer.analyses.system import natural_key

BLANK = "–"
MIB = 2.0**20


@dataclass(frozen=True)
class Col:
    """How one column is shown: its heading, its unit, and the factor from the raw value."""

    label: str
    unit: str = ""
    scale: float = 1.0

    @property
    def heading(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


#: raw field name suffix -> (unit, factor): what a name without its own entry below shows
SUFFIXES: tuple[tuple[str, str, float], ...] = (
    ("_ns", "ms", 1e-6),
    ("_us", "µs", 1.0),
    ("_ms", "ms", 1.0),
    ("_pct", "%", 1.0),
    ("_gbps", "GB/s", 1.0),
    ("_bytes", "MiB", 1 / MIB),
    ("_mib", "MiB", 1.0),
    ("_per_s", "/s", 1.0),
)

#: the report fields the pages show, by name (labels a newcomer reads without the schema)
LABELS: dict[str, Col] = {
    # steps and ranks
    "steps": Col("steps"),
    "step_time_mean_ms": Col("mean step", "ms"),
    "step_time_median_ms": Col("median step", "ms"),
    "step_time_p95_ms": Col("p95 step", "ms"),
    "step_time_std_ms": Col("step std dev", "ms"),
    "steps_per_s": Col("throughput", "steps/s"),
    "dataloader_stall_pct": Col("data-loader stall", "%"),
    "exposed_comm_pct": Col("exposed communication", "%"),
    "busy_ms": Col("own work per step", "ms"),
    "others_busy_ms": Col("others' own work per step", "ms"),
    "excess_ms": Col("excess per step", "ms"),
    "excess_pct": Col("excess over the others", "%"),
    "comm_ms": Col("communication per step", "ms"),
    "dataloader_ms": Col("data loading per step", "ms"),
    # who the others waited for (collectives matched across ranks)
    "steps_last": Col("steps it came last"),
    "culprit": Col("the rank they waited for"),
    "others_wait_ms": Col("the others' wait, in total", "ms"),
    "calls_last": Col("collectives it came last at"),
    "ranks": Col("ranks"),
    "others_wait_ms_per_step": Col("others' wait per such step, in total", "ms"),
    "wait_ms_per_waiting_rank": Col("wait per waiting rank", "ms"),
    "cause": Col("what it did more"),
    "cause_share_pct": Col("share of its extra time", "%"),
    "process_groups": Col("process groups"),
    "clock_skew_ms": Col("clock skew between hosts", "ms"),
    # collectives
    "collective": Col("collective"),
    "calls": Col("calls"),
    "total_ns": Col("total", "ms", 1e-6),
    "mean_ns": Col("mean", "ms", 1e-6),
    "max_ns": Col("max", "ms", 1e-6),
    "sized_calls": Col("calls with a size"),
    "total_bytes": Col("total size", "MiB", 1 / MIB),
    "mean_bytes": Col("mean size", "MiB", 1 / MIB),
    "min_bytes": Col("min size", "MiB", 1 / MIB),
    "max_bytes": Col("max size", "MiB", 1 / MIB),
    "algbw_gbps": Col("algorithm bandwidth", "GB/s"),
    "busbw_gbps": Col("bus bandwidth", "GB/s"),
    # kernels
    "kernel_class": Col("kernel class"),
    "count": Col("calls"),
    "pct_of_class": Col("share of its class", "%"),
    "pct_of_gpu": Col("share of GPU time", "%"),
    # nodes
    "cpu_util_p50": Col("CPU p50", "%"),
    "cpu_util_p95": Col("CPU p95", "%"),
    "io_wait_p95": Col("I/O wait p95", "%"),
    "gpus": Col("GPUs"),
    "gpu_util_p50": Col("GPU p50, mean of GPUs", "%"),
    # the comparison with a baseline
    "label": Col("metric"),
    "change_pct": Col("change", "%"),
    "change_points": Col("change", "points"),
    "tolerance_kind": Col("tolerance kind"),
    # rules
    "findings": Col("findings"),
}


def column(name: str) -> Col:
    """How ``name`` is shown: its own entry, else the unit its suffix names."""
    if name in LABELS:
        return LABELS[name]
    for suffix, unit, scale in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return Col(name[: -len(suffix)].replace("_", " "), unit, scale)
    return Col(name.replace("_", " "))


def decimals(values: pd.Series) -> int:
    """The decimal policy: 1 digit, 2 when every value is under 10 (8.55 steps/s, 0.35 ms)."""
    finite = pd.to_numeric(values, errors="coerce").abs()
    finite = finite[np.isfinite(finite)]
    return 2 if len(finite) and float(finite.max()) < 10 else 1


def rank_order(df: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Rows by node (algo-2 before algo-10), then rank (2 before 10); ``group`` keeps its
    first-seen order ahead of both (e.g. this run's rows, then the baseline's)."""
    keys: list[pd.Series] = []
    if group is not None and group in df:
        first = {v: i for i, v in enumerate(dict.fromkeys(df[group].tolist()))}
        keys.append(df[group].map(first))
    if "node" in df:
        nodes = sorted({str(n) for n in df["node"].dropna()}, key=natural_key)
        pos = {n: i for i, n in enumerate(nodes)}
        keys.append(
            df["node"].map(
                lambda n: pos.get(str(n), len(pos)) if n is not None and n == n else len(pos)
            )
        )
    if "rank" in df:
        keys.append(pd.to_numeric(df["rank"], errors="coerce"))
    if not keys:
        return df
    order = pd.DataFrame({f"k{i}": k.to_numpy() for i, k in enumerate(keys)})
    idx = order.sort_values(list(order.columns), kind="mergesort", na_position="last").index
    return df.iloc[idx.to_numpy()]


def formatted(
    df: pd.DataFrame | Sequence[Mapping[str, Any]],
    *,
    labels: Mapping[str, Col | str] | None = None,
    sort: bool = True,
    group: str | None = None,
    keep: Sequence[str] = (),
) -> Styler:
    """``df`` ready to show: columns scaled and renamed, empty columns dropped (those in
    ``keep`` stay), rows in rank/node order, numbers with the decimal policy, blanks as "–".

    ``labels`` overrides the heading of a field on this table only (a ``Col``, or a string
    for a heading without unit).
    """
    frame = pd.DataFrame(df).reset_index(drop=True)
    if sort:
        frame = rank_order(frame, group).reset_index(drop=True)
    empty = [c for c in frame.columns if c not in keep and frame[c].isna().all()]
    frame = frame.drop(columns=empty)
    out: dict[str, pd.Series] = {}
    formats: dict[str, Any] = {}
    for name in frame.columns:
        given = (labels or {}).get(name)
        col = Col(given) if isinstance(given, str) else given or column(str(name))
        heading = col.heading if col.heading not in out else f"{col.heading} [{name}]"
        s = frame[name]
        nonblank = s.dropna()
        if len(nonblank) and (
            pd.api.types.is_bool_dtype(s)
            or nonblank.map(lambda v: isinstance(v, bool | np.bool_)).all()
        ):
            formats[heading] = _yes_no
        elif pd.api.types.is_integer_dtype(s) and col.scale == 1.0:
            formats[heading] = "{:,}"
        elif pd.api.types.is_numeric_dtype(s) or _numeric_object(s):
            s = pd.to_numeric(s, errors="coerce").astype(float) * col.scale
            counts = not col.unit and col.scale == 1.0 and bool((s.dropna() % 1 == 0).all())
            formats[heading] = "{:,.0f}" if counts else f"{{:,.{decimals(s)}f}}"
        out[heading] = s
    table = pd.DataFrame(out)
    return table.style.format(formats, na_rep=BLANK)


def _yes_no(v: Any) -> str:
    return BLANK if v is None or v != v else ("yes" if v else "no")


def _numeric_object(s: pd.Series) -> bool:
    vals = s.dropna()
    return bool(len(vals)) and bool(
        vals.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool)).all()
    )


def show(
    df: pd.DataFrame | Sequence[Mapping[str, Any]],
    *,
    labels: Mapping[str, Col | str] | None = None,
    sort: bool = True,
    group: str | None = None,
    keep: Sequence[str] = (),
    style: Any = None,
    key: str | None = None,
) -> None:
    """Show ``df`` with :func:`formatted` (``style``: a callable given the Styler, e.g. to
    shade regressed rows)."""
    styler = formatted(df, labels=labels, sort=sort, group=group, keep=keep)
    if style is not None:
        styler = style(styler)
    st.dataframe(styler, hide_index=True, width="stretch", key=key)

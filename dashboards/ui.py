"""What the pages share: the current job and filters, the page list, and plot helpers.

The entry script (``app.py``) loads the job and renders the filters, then hands both to
the page through :func:`context` (per session: Streamlit runs each session's script in
its own thread, with its own session state).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analyzer.analyses.system import natural_key
from dashboards.data import JobData
from dashboards.filters import NODES_KEY, RANKS_KEY, Filters
from stepscope.report.palette import RANK_COLORS, rank_color, rank_of_label
from stepscope.report.rule_info import rule_pages, window_colors

_CTX = "_stepscope_ctx"
HERE = Path(__file__).resolve().parent

#: (key, file under views/, title, icon, url path); the first one is the default page
PAGES: tuple[tuple[str, str, str, str, str], ...] = (
    ("overview", "views/overview.py", "Overview", ":material/dashboard:", "overview"),
    ("system", "views/system.py", "System", ":material/memory:", "system"),
    ("steps", "views/steps.py", "Steps and data loading", ":material/timeline:", "steps"),
    (
        "communication",
        "views/communication.py",
        "Communication",
        ":material/sync_alt:",
        "communication",
    ),
    ("kernels", "views/kernels.py", "Kernels", ":material/bolt:", "kernels"),
    ("training", "views/training.py", "Training health", ":material/monitor_heart:", "training"),
    ("compare", "views/compare.py", "Compare", ":material/compare_arrows:", "compare"),
)

#: which page holds the chart that shows a rule's finding (each rule class says)
RULE_PAGE = rule_pages()

SEVERITY_BADGE = {
    "error": ":red-badge[error]",
    "warning": ":orange-badge[warning]",
    "info": ":blue-badge[info]",
}


@dataclass
class Ctx:
    job: JobData
    filters: Filters
    pages: dict[str, Any] = field(default_factory=dict)


def make_pages() -> dict[str, Any]:
    return {
        key: st.Page(str(HERE / path), title=title, icon=icon, url_path=url, default=(i == 0))
        for i, (key, path, title, icon, url) in enumerate(PAGES)
    }


def set_context(ctx: Ctx) -> None:
    st.session_state[_CTX] = ctx


def context() -> Ctx:
    ctx = st.session_state.get(_CTX)
    if not isinstance(ctx, Ctx):
        st.error(
            "This page is part of the stepscope dashboard: "
            "start it with `stepscope dashboard SOURCE`."
        )
        st.stop()
    return ctx


def page_header(title: str, ctx: Ctx, note: str | None = None) -> None:
    st.title(title)
    st.caption(f"{ctx.job.name} · {ctx.filters.describe()}" + (f" · {note}" if note else ""))


def focus(nodes: Sequence[str] = (), ranks: Sequence[int] = ()) -> None:
    """Button callback: narrow the filters to what a finding is about."""
    st.session_state[NODES_KEY] = list(nodes)
    st.session_state[RANKS_KEY] = [int(r) for r in ranks]


# --------------------------------------------------------------------------- plotting


def times(epoch_s: Iterable[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Epoch seconds → datetime64[ms] (UTC): what plotly serialises fastest, no ns warnings."""
    return (
        np.round(np.asarray(epoch_s, dtype=float) * 1000).astype(np.int64).astype("datetime64[ms]")
    )


def layout(fig: go.Figure, *, title: str | None = None, height: int = 340, **kw: Any) -> go.Figure:
    # a horizontal legend above the plot wraps onto more rows with many traces: make room for
    # them under the title instead of letting the two overlap (about four entries a row)
    entries = sum(1 for tr in fig.data if tr.showlegend is not False)
    beside = (kw.get("legend") or {}).get("orientation") == "v"
    extra_rows = max(0, math.ceil(entries / 4) - 1) if entries > 1 and not beside else 0
    height += 22 * extra_rows
    opts: dict[str, Any] = {
        "title": title,
        "height": height,
        "margin": {"l": 60, "r": 20, "t": (70 if title else 20) + 22 * extra_rows, "b": 40},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        "hovermode": "x unified",
    }
    fig.update_layout(**(opts | kw))
    return fig


def add_series(
    fig: go.Figure, x: Any, df: pd.DataFrame, name: str, *, band: bool, color: str | None = None
) -> None:
    """A downsampled series: the mean as a line, min..max as a shaded band (when asked)."""
    line = {"width": 1.4} | ({"color": color} if color else {})
    if band and (df["max"] > df["min"]).any():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=df["max"],
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
                legendgroup=name,
                name=f"{name} max",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=df["min"],
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(120,120,120,0.18)",
                showlegend=False,
                hoverinfo="skip",
                legendgroup=name,
                name=f"{name} min",
            )
        )
    fig.add_trace(
        go.Scatter(x=x, y=df["mean"], mode="lines", name=name, line=line, legendgroup=name)
    )


#: one colour per kind of time, on every page (data loading is not red: red is for alarms)
PART_COLORS = {
    "compute": "#4c78a8",
    "communication": "#b279a2",
    "exposed communication": "#b279a2",
    "data loading": "#54a24b",
    "idle": "#bab0ac",
    "other": "#9ecae9",
    "memory": "#72b7b2",
}

#: lines per node or device: the rank palette's hues without its red (red is for alarms)
SERIES_COLORS = tuple(c for c in RANK_COLORS if c != "#e45756")

#: the shade of each rule's flagged windows (the rules' alarms; each rule class says)
WINDOW_COLORS = window_colors()


def shade(
    fig: go.Figure, windows: Iterable[tuple[Any, Any, str]], y: tuple[float, float] = (0.0, 105.0)
) -> int:
    """Shade (start, end, label) windows as filled traces named in the legend and on hover
    (labels printed on the plot overlap as soon as two windows do). Windows of one rule on
    one node are one legend entry naming its devices, their overlaps merged (four GPUs idle
    at once are one band, not four stacked ones). Returns how many legend entries."""
    groups: dict[tuple[str, str], tuple[list[str], list[tuple[pd.Timestamp, pd.Timestamp]]]] = {}
    for start, end, label in windows:
        if start is None or end is None:
            continue
        rule, _, rest = label.partition(" ")
        node, _, device = rest.partition(" ")
        devices, spans = groups.setdefault((rule, node), ([], []))
        if device and device not in devices:
            devices.append(device)
        spans.append((pd.Timestamp(start), pd.Timestamp(end)))
    for (rule, node), (devices, spans) in sorted(
        groups.items(), key=lambda kv: (kv[0][0], natural_key(kv[0][1]))
    ):
        name = " ".join(p for p in (rule, node) if p) + (
            f" ({', '.join(natural(devices))})" if devices else ""
        )
        xs: list[Any] = []
        ys: list[float | None] = []
        for start, end in _merged(spans):
            a, b = start.isoformat(), end.isoformat()
            xs += [a, a, b, b, a, None]
            ys += [y[0], y[1], y[1], y[0], y[0], None]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                fill="toself",
                fillcolor=WINDOW_COLORS.get(rule, "rgba(120,120,120,0.15)"),
                line={"width": 0},
                name=name,
                hoveron="fills",
                hoverinfo="name",
                legendrank=2000,
            )
        )
    return len(groups)


def _merged(
    spans: list[tuple[pd.Timestamp, pd.Timestamp]],
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    out: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _naive_utc(v: Any) -> str | None:
    """ISO time → naive UTC ISO (plotly.js cannot parse offsets like +00:00)."""
    if v is None:
        return None
    try:
        ts = pd.Timestamp(v)
    except (TypeError, ValueError):
        return None
    return (ts.tz_convert(None) if ts.tzinfo else ts).isoformat()


def finding_windows(
    job: JobData, rules: Iterable[str], nodes: Sequence[str]
) -> list[tuple[Any, Any, str]]:
    """Time windows named in findings' evidence (the rule already judged them low/busy)."""
    rules = set(rules)
    out: list[tuple[Any, Any, str]] = []
    for f in job.report.findings:
        if f.rule not in rules:
            continue
        ev = f.evidence
        node = ev.get("node")
        if nodes and node is not None and node not in nodes:
            continue
        label = f"{f.rule} {node or ''} {ev.get('gpu') or ''}".strip()
        wins = ev.get("windows") or []
        if wins:
            out.extend((_naive_utc(a), _naive_utc(b), label) for a, b in wins)
        elif ev.get("worst_window_start"):
            out.append(
                (
                    _naive_utc(ev["worst_window_start"]),
                    _naive_utc(ev.get("worst_window_end")),
                    label,
                )
            )
        elif ev.get("window_start"):
            out.append((_naive_utc(ev["window_start"]), _naive_utc(ev.get("window_end")), label))
    return out


def fmt_num(v: Any, unit: str = "", digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    return f"{v:,.{digits}f}{unit}"


def rank_axis(fig: go.Figure, labels: Iterable[str], axis: str = "x") -> None:
    """Category axis in the given order (rank 2 before rank 10, not the first trace's order)."""
    order = list(dict.fromkeys(labels))
    (fig.update_xaxes if axis == "x" else fig.update_yaxes)(
        categoryorder="array", categoryarray=order
    )


def count_axis(fig: go.Figure, top: int, axis: str = "y") -> None:
    """A count axis ticks whole numbers only (no "0.5 steps" on a chart of 16 steps)."""
    opts: dict[str, Any] = {"rangemode": "tozero", "tickformat": ",d"}
    if 0 < top <= 10:
        opts["dtick"] = 1
    (fig.update_yaxes if axis == "y" else fig.update_xaxes)(**opts)


def natural(values: Iterable[str]) -> list[str]:
    """Names in natural order: algo-2 before algo-10, gpu2 before gpu10."""
    return sorted(values, key=natural_key)


def plot(fig: go.Figure, key: str) -> None:
    for trace in (
        fig.data
    ):  # a "rank N" trace in rank N's colour, as in report.html (stepscope.report.palette)
        rank, marker = rank_of_label(getattr(trace, "name", None)), getattr(trace, "marker", None)
        if rank is not None and marker is not None and marker.color is None:
            marker.color = rank_color(rank)
            if isinstance(trace, go.Scatter) and trace.line.color is None:
                trace.line.color = rank_color(rank)
    st.plotly_chart(fig, key=key, config={"displaylogo": False, "responsive": True})


@st.cache_data(max_entries=64, show_spinner=False)
def system_series(
    job_key: str,
    dimension: str,
    nodes: tuple[str, ...],
    window: tuple[float, float] | None,
    per: str,
    max_points: int | None,
    _job: JobData,
) -> pd.DataFrame:
    """The job's binned series for these filters (``Job.system_series``), cached per job
    fingerprint and filters: zooming back to a window the session saw costs nothing."""
    return _job.job.system_series(
        dimension, nodes=nodes, window=window, per=per, max_points=max_points
    )


def dimensions(job: JobData) -> list[str]:
    """The system-metric dimensions the job recorded (GPUUtilization, CPUUtilization...)."""
    return sorted(str(d) for d in job.job.dimensions() if d)

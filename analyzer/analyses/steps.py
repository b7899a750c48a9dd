"""Step-level analyses: step durations, outliers, time to first step, data-loader waits.

Pure functions over the ``steps`` and ``kineto_events`` / ``framework_events`` tables.
Everything is per rank, so a slow rank is named rather than averaged away.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from analyzer.ingest.dataset import JobDataset

#: Names of the events during which the training loop waits for its next batch: PyTorch's
#: DataLoader iterator (Kineto), smprof's training helper label, and the SageMaker
#: framework-trace / TensorFlow data-iterator events.
DATALOADER_EVENT_RE = re.compile(
    r"^(enumerate\(DataLoader\)#.*__next__|smprof:data_loading|DataLoaderIter::GetNext|"
    r"dataset::GetNext|_next_data|DataLoader.*__next__)"
)


def step_durations(ds: JobDataset) -> pd.DataFrame:
    """One row per (rank, step): source, node, rank, step, mode, start_ns, dur_ns, dur_ms.

    Kineto ``ProfilerStep#N`` steps are preferred; SageMaker framework steps are used for
    ranks that have no Kineto trace.
    """
    df = ds.to_pandas("steps")
    if df.empty:
        return df.assign(dur_ms=pd.Series(dtype="float64"))
    for col in ("source", "node", "mode"):
        df[col] = df[col].astype(object)
    kineto_ranks = set(df.loc[df["source"] == "kineto", "rank"].dropna())
    df = df[(df["source"] == "kineto") | ~df["rank"].isin(kineto_ranks)].copy()
    df["dur_ms"] = df["dur_ns"] / 1e6
    return df.sort_values(["rank", "start_ns"], kind="stable").reset_index(drop=True)


def step_stats(steps: pd.DataFrame) -> pd.DataFrame:
    """Per rank: steps, mean/median/p95/std of step time (ms) and throughput (steps/s)."""
    if steps.empty:
        return pd.DataFrame(columns=["rank", "steps", "mean_ms", "median_ms", "p95_ms", "std_ms", "steps_per_s"])
    g = steps.groupby("rank")["dur_ms"]
    out = pd.DataFrame(
        {
            "steps": g.size(),
            "mean_ms": g.mean(),
            "median_ms": g.median(),
            "p95_ms": g.quantile(0.95),
            "std_ms": g.std(ddof=0),
        }
    )
    out["steps_per_s"] = 1000.0 / out["mean_ms"]
    return out.reset_index()


def step_outliers(steps: pd.DataFrame, *, stddev: float = 3, mode: str | None = None) -> pd.DataFrame:
    """Steps longer than mean + ``stddev`` x standard deviation of their rank (and mode).

    Definition (SageMaker's StepOutlier): per rank, the threshold is mean + stddev·σ of
    that rank's step durations; ``mode`` keeps only one training mode when set.
    Columns: rank, step, mode, start_ns, dur_ms, threshold_ms.
    """
    cols = ["rank", "step", "mode", "start_ns", "dur_ms", "threshold_ms"]
    if steps.empty:
        return pd.DataFrame(columns=cols)
    df = steps if mode is None else steps[steps["mode"].astype(str).str.upper() == mode.upper()]
    parts = []
    for _rank, g in df.groupby("rank"):
        if len(g) < 2:
            continue
        d = g["dur_ms"].to_numpy()
        thr = d.mean() + stddev * d.std()
        hit = g[d > thr]
        if len(hit):
            parts.append(hit.assign(threshold_ms=thr)[cols])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def time_to_first_step(ds: JobDataset, steps: pd.DataFrame) -> float | None:
    """Seconds from the job's start to its first step.

    The job start is SageMaker's TrainingStartTime when known, else the first system
    metric sample, else the first event of the traces.
    """
    if steps.empty:
        return None
    first_step_ns = int(steps["start_ns"].min())
    start_ns: int | None = None
    if ds.meta.training_start_time:
        start_ns = int(pd.Timestamp(ds.meta.training_start_time).value)
    if start_ns is None:
        span = ds.time_span()
        start_ns = span["start_ns"] if span else None
    if start_ns is None:
        return None
    return max(0.0, (first_step_ns - start_ns) / 1e9)


def dataloader_waits(ds: JobDataset, steps: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (rank, step): time the training loop waited for the next batch, and its share.

    Definition: the union of data-loader events (``DATALOADER_EVENT_RE``) of that rank,
    clipped to the step's window, divided by the step's duration.
    Columns: rank, step, step_ms, wait_ms, share_pct.
    """
    steps = step_durations(ds) if steps is None else steps
    cols = ["rank", "step", "step_ms", "wait_ms", "share_pct"]
    ev = ds.table("kineto_events")
    if steps.empty or ev.num_rows == 0:
        return pd.DataFrame(columns=cols)
    names = ev.column("name").combine_chunks()
    dict_names = names.dictionary.to_pylist()
    wanted = np.array([bool(DATALOADER_EVENT_RE.match(n or "")) for n in dict_names])
    idx = names.indices.to_numpy(zero_copy_only=False)
    mask = wanted[idx] if len(wanted) else np.zeros(len(idx), dtype=bool)
    dl = ev.filter(mask).select(["rank", "start_ns", "dur_ns"]).to_pandas()
    rows = []
    for rank, st in steps[steps["source"] == "kineto"].groupby("rank"):
        d = dl[dl["rank"] == rank]
        s0 = d["start_ns"].to_numpy()
        s1 = s0 + d["dur_ns"].fillna(0).to_numpy()
        for step, a, dur in zip(st["step"], st["start_ns"], st["dur_ns"], strict=True):
            b = a + dur
            wait = _union_clipped(s0, s1, a, b)
            rows.append((int(rank), int(step), dur / 1e6, wait / 1e6, 100.0 * wait / dur if dur else 0.0))
    return pd.DataFrame(rows, columns=cols)


def _union_clipped(s0: np.ndarray, s1: np.ndarray, a: int, b: int) -> int:
    """Length of the union of intervals [s0, s1) clipped to [a, b)."""
    lo = np.maximum(s0, a)
    hi = np.minimum(s1, b)
    keep = hi > lo
    if not keep.any():
        return 0
    lo, hi = lo[keep], hi[keep]
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    run_hi = np.maximum.accumulate(hi)
    starts_new = np.concatenate([[True], lo[1:] > run_hi[:-1]])
    group = np.cumsum(starts_new) - 1
    g_lo = lo[starts_new]
    g_hi = np.zeros(len(g_lo), dtype=run_hi.dtype)
    np.maximum.at(g_hi, group, hi)
    return int((g_hi - g_lo).sum())


def _event_mask(ev_names: Any, pattern_class: str) -> np.ndarray:
    from analyzer.analyses.kernel_classes import classify

    return (classify(ev_names)["kernel_class"] == pattern_class).to_numpy()


def rank_step_breakdown(ds: JobDataset, steps: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (rank, step): where the step's wall time went.

    Definition: ``comm_ms`` is the union of communication events of that rank (collective
    kernels and CPU collective ops, classified by ``kernel_classes``) clipped to the step;
    ``dataloader_ms`` the union of data-loader waits; ``busy_ms`` = step − comm −
    data-loader: the rank's own work. In synchronous training a slow rank shows a larger
    ``busy_ms`` while the others show a larger ``comm_ms`` (they wait for it in the
    collective).
    Columns: rank, step, step_ms, comm_ms, dataloader_ms, busy_ms.
    """
    steps = step_durations(ds) if steps is None else steps
    cols = ["rank", "step", "step_ms", "comm_ms", "dataloader_ms", "busy_ms"]
    ev = ds.table("kineto_events")
    ks = steps[steps["source"] == "kineto"] if not steps.empty else steps
    if ks.empty or ev.num_rows == 0:
        return pd.DataFrame(columns=cols)
    comm_mask = _event_mask(ev.column("name"), "COMMUNICATION")
    comm = ev.filter(pa.array(comm_mask)).select(["rank", "start_ns", "dur_ns"]).to_pandas()
    waits = dataloader_waits(ds, steps)
    wait_ms = {(int(r), int(s)): w for r, s, w in zip(waits["rank"], waits["step"], waits["wait_ms"], strict=True)}
    rows = []
    for rank, st in ks.groupby("rank"):
        c = comm[comm["rank"] == rank]
        s0 = c["start_ns"].to_numpy()
        s1 = s0 + c["dur_ns"].fillna(0).to_numpy()
        for step, a, dur in zip(st["step"], st["start_ns"], st["dur_ns"], strict=True):
            cm = _union_clipped(s0, s1, a, a + dur) / 1e6
            dl = wait_ms.get((int(rank), int(step)), 0.0)
            rows.append((int(rank), int(step), dur / 1e6, cm, dl, max(0.0, dur / 1e6 - cm - dl)))
    return pd.DataFrame(rows, columns=cols)


def stragglers(breakdown: pd.DataFrame, *, threshold_pct: float = 15.0, min_steps: int = 3) -> pd.DataFrame:
    """Ranks whose own work per step stands out, and how long the others wait for them.

    Definition: per rank, the median ``busy_ms`` over its steps (at least ``min_steps``).
    A rank is a straggler when its median exceeds the median of the *other* ranks by more
    than ``threshold_pct`` %. ``excess_ms`` is that difference: the time every other rank
    waits each step.
    Columns: rank, steps, busy_ms, others_busy_ms, excess_ms, excess_pct, comm_ms,
    straggler (bool).
    """
    cols = ["rank", "steps", "busy_ms", "others_busy_ms", "excess_ms", "excess_pct", "comm_ms", "straggler"]
    if breakdown.empty:
        return pd.DataFrame(columns=cols)
    per = breakdown.groupby("rank").agg(steps=("step", "size"), busy_ms=("busy_ms", "median"), comm_ms=("comm_ms", "median"))
    per = per[per["steps"] >= min_steps]
    if len(per) < 2:
        return pd.DataFrame(columns=cols)
    rows = []
    for rank, r in per.iterrows():
        others = float(per.drop(index=rank)["busy_ms"].median())
        excess = float(r["busy_ms"]) - others
        pct = excess / others * 100 if others > 0 else float("inf") if excess > 0 else 0.0
        rows.append((int(rank), int(r["steps"]), float(r["busy_ms"]), others, excess, pct, float(r["comm_ms"]), pct > threshold_pct))
    return pd.DataFrame(rows, columns=cols)

"""Step-level analyses: step durations and their statistics, time to first step,
data-loader waits and parallelism, where each rank's step time goes.

Pure functions over the ``steps`` and ``kineto_events`` / ``framework_events`` tables.
Everything is per rank, so a slow rank is named rather than averaged away. They measure
and never judge: the rules in ``rules/builtin`` apply thresholds, minimum step counts and
patience to these figures.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.analyses.intervals import covered_in_windows, merge_intervals
from analyzer.ingest.dataset import JobDataset

#: Names of the events during which the training loop waits for its next batch: PyTorch's
#: DataLoader iterator (Kineto), stepscope's training helper label, and the SageMaker
#: framework-trace / TensorFlow data-iterator events.
DATALOADER_EVENT_RE = re.compile(
    r"^(enumerate\(DataLoader\)#.*__next__|stepscope:data_loading|DataLoaderIter::GetNext|"
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
        return pd.DataFrame(
            columns=["rank", "steps", "mean_ms", "median_ms", "p95_ms", "std_ms", "steps_per_s"]
        )
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


def step_time_scans(
    steps: pd.DataFrame, *, mode: str | None, scan_interval_us: int, first_ns: int | None
) -> pd.DataFrame:
    """What StepOutlier compares, per rank and training mode: at every scan, the steps seen
    so far and the mean and standard deviation of their durations.

    Definition (smdebug's StepOutlier): steps are grouped by process (here: rank) and by
    step event name (``Step:ModeKeys.TRAIN``, ``...EVAL``: the mode), never pooled across
    modes. Every ``scan_interval_us`` from ``first_ns`` (the job's start; the first step when
    None) a scan sees the steps started by its end. A scan that saw no new step repeats the
    previous one, so each count of steps is measured once, at the first scan that reached
    it: the mean and population σ of those steps' durations. ``mode`` keeps one mode (smdebug
    documents that intent; its code keeps every mode anyway). The rule judges the counts over
    100 steps: the steps above mean + ``stddev`` x σ are outliers, more than ``n_outliers``
    of them fire.

    Columns: rank, node, mode, steps, max_ms, and in arrays: step, dur_ms (the group's steps
    in start order), seen (each count of steps a scan reached), scan_end (epoch ns, the
    first scan that saw that many), mean_ms, std_ms (over the first ``seen`` steps).
    """
    cols = [
        "rank",
        "node",
        "mode",
        "steps",
        "max_ms",
        "step",
        "dur_ms",
        "seen",
        "scan_end",
        "mean_ms",
        "std_ms",
    ]
    if steps.empty:
        return pd.DataFrame(columns=cols)
    df = steps if mode is None else steps[steps["mode"].astype(str).str.upper() == mode.upper()]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.assign(_mode=df["mode"].astype(object).where(df["mode"].notna(), None))
    first = int(df["start_ns"].min()) if first_ns is None else int(first_ns)
    scan_ns = int(scan_interval_us) * 1000
    rows = []
    for (rank, mode_key), g in df.groupby(["rank", "_mode"], sort=True, dropna=False):
        g = g.sort_values("start_ns", kind="stable")
        start = g["start_ns"].to_numpy(dtype=np.int64)
        d = g["dur_ms"].to_numpy(dtype=float)
        last = int(start[-1])
        n_scans = max(
            1, -(-(last - first) // scan_ns)
        )  # the last scan ends at or after the last step
        ends = first + scan_ns * np.arange(1, n_scans + 1, dtype=np.int64)
        # smdebug reads the events that overlap each scan window: a step is seen by the
        # first scan whose end is at or after its start.
        seen, first_scan = np.unique(np.searchsorted(start, ends, side="right"), return_index=True)
        some = seen > 0
        seen, first_scan = seen[some], first_scan[some]
        node = g["node"].dropna()
        rows.append(
            {
                "rank": None if pd.isna(rank) else int(rank),
                "node": node.iloc[0] if len(node) else None,
                "mode": None if pd.isna(mode_key) else str(mode_key),
                "steps": len(g),
                "max_ms": float(d.max()),
                "step": g["step"].to_numpy(),
                "dur_ms": d,
                "seen": seen,
                "scan_end": ends[first_scan],
                "mean_ms": np.array([d[:n].mean() for n in seen], dtype=float),
                "std_ms": np.array([d[:n].std() for n in seen], dtype=float),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def job_start_ns(ds: JobDataset) -> int | None:
    """The job's start: SageMaker's TrainingStartTime when known, else the earliest time
    any table holds (system metrics, framework or Kineto events)."""
    if ds.meta.training_start_time:
        return int(pd.Timestamp(ds.meta.training_start_time).value)
    span = ds.time_span()
    return int(span["start_ns"]) if span else None


def first_step_ns(ds: JobDataset) -> int | None:
    """Start of the job's first training step (epoch ns), or None without step annotations.

    SageMaker framework steps (``Step:ModeKeys.*``, recorded from the first step on) win;
    Kineto ``ProfilerStep#N`` annotations only cover the profiler's active window, so they
    are used only when the job has no framework steps.
    """
    df = ds.to_pandas("steps")
    if df.empty:
        return None
    fw = df[df["source"].astype(object) == "framework"]
    use = fw if not fw.empty else df
    return int(use["start_ns"].min())


#: SageMaker framework timelines that record training steps (``Step:ModeKeys.*``)
STEP_TIMELINES = ("pythontimeline", "model_timeline")


def last_step_timeline_event_ns(ds: JobDataset) -> int | None:
    """Start of the last event in the timelines that record steps (``STEP_TIMELINES``): how
    long the training loop is known to have run, steps or not. None without such events."""
    fe = ds.table("framework_events")
    if fe.num_rows == 0:
        return None
    df = fe.select(["trace_kind", "start_ns"]).to_pandas()
    starts = df.loc[df["trace_kind"].astype(object).isin(STEP_TIMELINES), "start_ns"].dropna()
    return int(starts.max()) if len(starts) else None


def time_to_first_step(ds: JobDataset, steps: pd.DataFrame) -> float | None:
    """Seconds from the job's start to its first step.

    The job start is SageMaker's TrainingStartTime when known, else the first system
    metric sample, else the first event of the traces.
    """
    if steps.empty:
        return None
    start_ns = job_start_ns(ds)
    if start_ns is None:
        return None
    return max(0.0, (int(steps["start_ns"].min()) - start_ns) / 1e9)


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
            rows.append(
                (int(rank), int(step), dur / 1e6, wait / 1e6, 100.0 * wait / dur if dur else 0.0)
            )
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


def rank_step_breakdown(
    ds: JobDataset, steps: pd.DataFrame | None = None, waits: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per (rank, step): where the step's wall time went.

    Definition: ``comm_ms`` is the union of communication events of that rank (collective
    kernels and CPU collective ops, classified by ``kernel_classes``) clipped to the step;
    ``dataloader_ms`` the union of data-loader waits; ``busy_ms`` = step − comm −
    data-loader: the rank's own work. In synchronous training a slow rank shows a larger
    ``busy_ms`` while the others show a larger ``comm_ms`` (they wait for it in the
    collective). ``idle_ms`` is the part of the step in which none of the rank's profiled
    events runs: the step minus the union, clipped to the step, of all its CPU ops,
    CUDA runtime/driver calls, GPU kernels, memory copies and sets (``IDLE_EVENT_CATS``,
    any thread or stream), communication events and data-loader waits; annotations that
    only wrap other work (``ProfilerStep#N``, other ``record_function`` ranges) do not
    count as running. Idle time lies outside communication and data loading, so it is a
    part of ``busy_ms`` (clipped to it where the two overlap: ``busy_ms`` subtracts their
    overlap twice): Python work no profiled event records (a ``time.sleep``, say), or a
    gap in which the rank did nothing. Compute = ``busy_ms`` − ``idle_ms``.
    Columns: rank, step, step_ms, comm_ms, dataloader_ms, busy_ms, idle_ms. ``waits``: the
    :func:`dataloader_waits` of the same steps, when the caller has them already.
    """
    steps = step_durations(ds) if steps is None else steps
    cols = ["rank", "step", "step_ms", "comm_ms", "dataloader_ms", "busy_ms", "idle_ms"]
    ev = ds.table("kineto_events")
    ks = steps[steps["source"] == "kineto"] if not steps.empty else steps
    if ks.empty or ev.num_rows == 0:
        return pd.DataFrame(columns=cols)
    comm_mask = _event_mask(ev.column("name"), "COMMUNICATION")
    comm = ev.filter(pa.array(comm_mask)).select(["rank", "start_ns", "dur_ns"]).to_pandas()
    waits = dataloader_waits(ds, steps) if waits is None else waits  # the map has them already
    wait_ms = {
        (int(r), int(s)): w
        for r, s, w in zip(waits["rank"], waits["step"], waits["wait_ms"], strict=True)
    }
    running = _running_events(ev, comm_mask)
    rows = []
    for rank, st in ks.groupby("rank"):
        c = comm[comm["rank"] == rank]
        s0 = c["start_ns"].to_numpy()
        s1 = s0 + c["dur_ns"].fillna(0).to_numpy()
        r = running[running["rank"] == rank]
        run_lo, run_hi = merge_intervals(r["start_ns"], r["start_ns"] + r["dur_ns"].fillna(0))
        for step, a, dur in zip(st["step"], st["start_ns"], st["dur_ns"], strict=True):
            cm = _union_clipped(s0, s1, a, a + dur) / 1e6
            dl = wait_ms.get((int(rank), int(step)), 0.0)
            busy = max(0.0, dur / 1e6 - cm - dl)
            idle = (dur - int(covered_in_windows(run_lo, run_hi, a, a + dur)[0])) / 1e6
            rows.append((int(rank), int(step), dur / 1e6, cm, dl, busy, min(max(0.0, idle), busy)))
    return pd.DataFrame(rows, columns=cols)


#: the Kineto categories of events during which a rank is doing something (not idle):
#: CPU ops, CUDA runtime/driver calls and GPU work; annotations only wrap these
IDLE_EVENT_CATS = ("cpu_op", "cuda_runtime", "cuda_driver", "kernel", "gpu_memcpy", "gpu_memset")
_STEP_ANNOTATION_RE = re.compile(r"^ProfilerStep\s*#")


def _running_events(ev: pa.Table, comm_mask: np.ndarray) -> pd.DataFrame:
    """The events that count as the rank running (``rank_step_breakdown``'s ``idle_ms``):
    the ``IDLE_EVENT_CATS``, communication and data-loader events, never a step annotation."""
    cats = set(IDLE_EVENT_CATS)
    in_cats = _matching(ev.column("cat"), lambda c: c in cats)
    waits = _matching(ev.column("name"), lambda n: bool(DATALOADER_EVENT_RE.match(n)))
    steps = _matching(ev.column("name"), lambda n: bool(_STEP_ANNOTATION_RE.match(n)))
    mask = (in_cats | comm_mask | waits) & ~steps
    return ev.filter(pa.array(mask)).select(["rank", "start_ns", "dur_ns"]).to_pandas()


def _matching(column: pa.ChunkedArray, test: Any) -> np.ndarray:
    """Mask of a string column's rows whose value passes ``test`` (tested once per distinct
    value: the columns are dictionary-encoded, with few distinct names per million rows)."""
    values = column.combine_chunks()
    if not isinstance(values, pa.DictionaryArray):
        values = pc.dictionary_encode(values)
    distinct = np.array(
        [v is not None and bool(test(v)) for v in values.dictionary.to_pylist()], dtype=bool
    )
    idx = values.indices.fill_null(0).to_numpy(zero_copy_only=False)
    out = distinct[idx] if len(distinct) else np.zeros(len(idx), dtype=bool)
    return (
        out & values.indices.is_valid().to_numpy(zero_copy_only=False) if values.null_count else out
    )


def rank_busy(breakdown: pd.DataFrame) -> pd.DataFrame:
    """Per rank, over its steps (:func:`rank_step_breakdown`): how many, and the median of its
    own work (``busy_ms``) and of its communication time (``comm_ms``) per step.

    Columns: rank, steps, busy_ms, comm_ms.
    """
    cols = ["rank", "steps", "busy_ms", "comm_ms"]
    if breakdown.empty:
        return pd.DataFrame(columns=cols)
    per = breakdown.groupby("rank").agg(
        steps=("step", "size"), busy_ms=("busy_ms", "median"), comm_ms=("comm_ms", "median")
    )
    return per.reset_index()[cols]


def busy_vs_others(per_rank: pd.DataFrame) -> pd.DataFrame:
    """Each rank of ``per_rank`` (:func:`rank_busy` rows: the ranks compared) against the
    others: the median ``busy_ms`` of the *other* ranks, and by how much its own exceeds it.

    Definition: ``excess_ms`` = busy_ms − others_busy_ms is the time every other rank waits
    for this one each step, in synchronous training; ``excess_pct`` is it in % of
    others_busy_ms. The StragglerRank rule compares the ranks with at least ``min_steps``
    steps and names those whose ``excess_pct`` is over ``threshold_pct``.
    Columns: rank, steps, busy_ms, others_busy_ms, excess_ms, excess_pct, comm_ms.
    """
    cols = ["rank", "steps", "busy_ms", "others_busy_ms", "excess_ms", "excess_pct", "comm_ms"]
    per = per_rank.set_index("rank")
    rows = []
    for rank, r in per.iterrows():
        others = float(per.drop(index=rank)["busy_ms"].median())
        excess = float(r["busy_ms"]) - others
        pct = excess / others * 100 if others > 0 else float("inf") if excess > 0 else 0.0
        rows.append(
            (
                int(rank),
                int(r["steps"]),
                float(r["busy_ms"]),
                others,
                excess,
                pct,
                float(r["comm_ms"]),
            )
        )
    return pd.DataFrame(rows, columns=cols)


#: smdebug's PyTorch data-loader event phases (``profiler_constants``): the Chrome-trace
#: process names of the framework timeline rows written by DataLoader workers and iterators.
PT_DATALOADER_PHASES = ("DataLoaderWorker", "DataLoaderIter")
#: smdebug restarts its list of per-second process counts once it holds more than this many.
DATALOADER_MAX_SECONDS = 1000


def dataloader_parallelism(ds: JobDataset, *, scan_interval_us: int) -> pd.DataFrame:
    """What Dataloader compares, per node at every scan: how many data-loading processes run
    in parallel, against the node's CPU cores.

    Definition (smdebug's Dataloader, per node instead of pooled): the node's cores are its
    distinct ``CPUUtilization`` devices. Data-loader events are the framework-timeline
    events of the PyTorch ``DataLoaderWorker`` and ``DataLoaderIter`` phases; each counts
    in the second (epoch) it starts, and a second's parallelism is the number of distinct
    processes with an event in it (smdebug reads the process from the event's ``args.pid``;
    stepscope from the trace file it was written to, one per process). At every scan
    (``scan_interval_us`` from the job's start) with data-loader events, the seconds of that
    scan join a running list, restarted once it holds more than 1000: ``seconds_seen`` is
    its length, ``median_processes`` its median truncated to an integer. The rule judges the
    scans with more than 10 entries (smdebug's patience): a median under ``min_threshold`` %
    of the cores is *too few*, over ``max_threshold`` % *too many*.

    Columns: node, cores, scan_end (epoch s), seconds_seen, median_processes, and per node:
    seconds (with data-loader events), window_start, window_end (epoch s: first and last
    second with data-loader events).
    """
    cols = [
        "node",
        "cores",
        "scan_end",
        "seconds_seen",
        "median_processes",
        "seconds",
        "window_start",
        "window_end",
    ]
    fe = ds.table("framework_events")
    sm = ds.table("system_metrics")
    if fe.num_rows == 0 or sm.num_rows == 0:
        return pd.DataFrame(columns=cols)
    ev = fe.select(["node", "os_pid", "process", "phase", "start_ns"]).to_pandas()
    ev = ev[
        ev["process"].astype(object).isin(PT_DATALOADER_PHASES)
        & (ev["phase"].astype(object) == "X")
    ]
    if ev.empty:
        return pd.DataFrame(columns=cols)
    cpu = sm.filter(pc.equal(sm.column("dimension").cast(pa.string()), "CPUUtilization"))
    cpu_df = cpu.select(["node", "device"]).to_pandas().astype(object)
    cores = cpu_df.groupby("node")["device"].nunique().to_dict()
    nodes = sorted(cores)
    ev = ev.assign(node=ev["node"].astype(object))
    if len(nodes) == 1:  # a trace without a host in its name belongs to the only node
        ev["node"] = ev["node"].fillna(nodes[0])
    start = job_start_ns(ds) or int(ev["start_ns"].min())
    scan_ns = int(scan_interval_us) * 1000
    ev["second"] = ev["start_ns"] // 1_000_000_000
    ev["scan"] = (ev["start_ns"] - start) // scan_ns
    rows = []
    for node, g in ev.groupby("node", sort=True):
        n_cores = int(cores.get(node, 0))
        if n_cores == 0:
            continue
        per_node = (int(g["second"].nunique()), float(g["second"].min()), float(g["second"].max()))
        per_sec = g.groupby(["scan", "second"])["os_pid"].nunique()  # a pid-less event counts 0
        running: list[int] = []
        for scan, counts in per_sec.groupby(level="scan", sort=True):
            if len(running) > DATALOADER_MAX_SECONDS:
                running = []
            running.extend(int(c) for c in counts.to_numpy())
            scan_end = (start + (int(scan) + 1) * scan_ns) / 1e9
            rows.append((node, n_cores, scan_end, len(running), int(np.median(running)), *per_node))
    return pd.DataFrame(rows, columns=cols)

"""System-metric analyses: what each node's GPUs, CPUs and storage did, sample by sample.

Pure functions over the system-metric frame (:func:`metric_frame`; ``Job.metric_frame``
memoises it, so the analyses of one job share one frame). Every result is *per node and
device*: SageMaker's own CPU and I/O bottleneck rules pool all nodes' samples, so one
stalled node among five is averaged away there; here each node is measured on its own.

They measure and never judge. Where a SageMaker Debugger built-in rule has a definition,
the function computes the figures that rule compares with its thresholds, at the moments
its container looks (every ``scan_interval_us`` on all samples seen so far); the rule in
``rules/builtin`` applies the thresholds and the patience.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.natural import natural_key

#: samples closer than this belong to one system snapshot (the profiler agent's threads
#: wake up at slightly different times); SageMaker's rules use the same 20 ms.
SNAPSHOT_WINDOW_S = 0.02
#: what the report counts as a low-utilization GPU sample (``gpu_summary``'s
#: ``low_share_pct``, the report's ``low_util_share_pct``): that figure's definition, not a
#: rule's threshold
LOW_UTIL_PCT = 10.0
#: the dimensions the rules read; ``Job.metric_frame`` cuts the frame of any of them from
#: one sorted frame of all four
MAIN_DIMENSIONS = ("CPUUtilization", "I/OWaitPercentage", "GPUUtilization", "GPUMemoryUtilization")


def metric_frame(system_metrics: pa.Table, dimensions: list[str]) -> pd.DataFrame:
    """Rows of the given dimensions as a frame: node, device, dimension, t (epoch s), value.

    Sorted by node, then time. Filtering and sorting happen in NumPy on integer codes and the
    string columns stay categorical: jobs have tens of millions of samples, and per-row Python
    strings would dominate every analysis. ``Job.metric_frame`` memoises it, so every analysis
    of a job reads the same frame; callers must not modify the returned frame.
    """
    cols = ["node", "device", "dimension", "t", "value"]
    if system_metrics.num_rows == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype="float64" if c in ("t", "value") else "category") for c in cols}
        )
    # Everything here is NumPy on integer codes: filtering and reordering 10^7 rows of
    # dictionary columns in Arrow costs seconds, gathering int32 codes costs milliseconds.
    dim_codes, dim_names = _codes(system_metrics.column("dimension"))
    wanted = np.array([name in dimensions for name in dim_names] + [False])  # [-1]: null
    rows = np.flatnonzero(wanted[dim_codes])
    node_codes, node_names = _codes(system_metrics.column("node"))
    rank_of = np.empty(len(node_names) + 1, dtype=np.int32)
    for r, i in enumerate(sorted(range(len(node_names)), key=lambda i: natural_key(node_names[i]))):
        rank_of[i] = r
    rank_of[-1] = len(node_names)  # missing node (code -1) sorts last
    ts = system_metrics.column("timestamp").cast(pa.int64()).to_numpy()[rows]
    order = _node_time_order(rank_of[node_codes[rows]], ts)
    if order is not None:
        rows, ts = rows[order], ts[order]
    device_codes, device_names = _codes(system_metrics.column("device"))
    value = system_metrics.column("value").to_numpy()[rows]
    node_codes, device_codes, dim_codes = node_codes[rows], device_codes[rows], dim_codes[rows]
    return pd.DataFrame(
        {
            "node": _categorical_from_codes(node_codes, node_names),
            "device": _categorical_from_codes(device_codes, device_names),
            "dimension": _categorical_from_codes(dim_codes, dim_names),
            "t": ts / 1e6,
            "value": value,
        }
    )


def _node_time_order(node_rank: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """Row order by node (natural order), then time; None when the rows already are.

    The merged table holds each node's files in key order, which is time order, so a
    stable sort on the node alone (radix, fast) is usually enough; the full two-key sort
    runs only when time goes backwards within a node.
    """
    if len(node_rank) < 2:
        return None
    by_node = np.argsort(node_rank, kind="stable")
    r, t = node_rank[by_node], ts[by_node]
    same_node = r[1:] == r[:-1]
    if np.any(same_node & (t[1:] < t[:-1])):
        by_node = np.lexsort((ts, node_rank))
    if np.array_equal(by_node, np.arange(len(by_node))):
        return None
    return by_node


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Dictionary (or string) column → int32 codes (-1 for null) and the category names."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    codes = (
        pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    )
    return codes, [str(c) for c in arr.dictionary.to_pylist()]


def _categorical_from_codes(codes: np.ndarray, names: list[str]) -> pd.Categorical:
    cat = pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype=object))
    # natural order (gpu2 before gpu10), so every per-device result lists devices the same way
    return cat.reorder_categories(sorted(names, key=natural_key))


def _q(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q)) if len(values) else float("nan")


def gpu_summary(frame: pd.DataFrame, *, low_util_pct: float) -> pd.DataFrame:
    """Per node and GPU: utilization and memory p5/p50/p95/mean, and the share of samples
    with utilization under ``low_util_pct`` %.

    ``frame``: the GPUUtilization and GPUMemoryUtilization samples (:func:`metric_frame`).
    Columns: node, gpu, samples, util_p5, util_p50, util_p95, util_mean, mem_p5, mem_p50,
    mem_p95, low_share_pct, start, end (epoch s).
    """
    df = frame
    rows = []
    for (node, gpu), g in df.groupby(["node", "device"], sort=True, observed=True):
        u = g.loc[g["dimension"] == "GPUUtilization", "value"].to_numpy()
        m = g.loc[g["dimension"] == "GPUMemoryUtilization", "value"].to_numpy()
        rows.append(
            {
                "node": node,
                "gpu": gpu,
                "samples": len(u),
                "util_p5": _q(u, 0.05),
                "util_p50": _q(u, 0.5),
                "util_p95": _q(u, 0.95),
                "util_mean": float(u.mean()) if len(u) else float("nan"),
                "mem_p5": _q(m, 0.05),
                "mem_p50": _q(m, 0.5),
                "mem_p95": _q(m, 0.95),
                "low_share_pct": float((u < low_util_pct).mean() * 100) if len(u) else float("nan"),
                "start": float(g["t"].min()),
                "end": float(g["t"].max()),
            }
        )
    cols = [
        "node",
        "gpu",
        "samples",
        "util_p5",
        "util_p50",
        "util_p95",
        "util_mean",
        "mem_p5",
        "mem_p50",
        "mem_p95",
        "low_share_pct",
        "start",
        "end",
    ]
    return pd.DataFrame(rows, columns=cols)


def heatmap(frame: pd.DataFrame, *, bins: int) -> pd.DataFrame:
    """Node x device x time-bin mean of one dimension's samples (``frame``), for heatmaps;
    at most ``bins`` bins.

    Columns: node, device, bin_start (epoch s), value.
    """
    df = frame
    if df.empty:
        return pd.DataFrame({"node": [], "device": [], "bin_start": [], "value": []})
    t0, t1 = df["t"].min(), df["t"].max()
    width = max((t1 - t0) / bins, 1e-9)
    # a new column on a copy: the frame is the job's memoised one, shared with every analysis
    df = df.assign(bin_start=t0 + np.floor((df["t"] - t0) / width).clip(upper=bins - 1) * width)
    out = (
        df.groupby(["node", "device", "bin_start"], sort=True, observed=True)["value"]
        .mean()
        .reset_index()
    )
    return out


@dataclass(frozen=True)
class ScanPlan:
    """When the rule container evaluates: every ``scan_interval_s`` after the first sample."""

    first: float
    scan_interval_s: float

    def scan_ends(self, last: float) -> np.ndarray:
        n = int(np.floor((last - self.first) / self.scan_interval_s)) + 1
        return self.first + self.scan_interval_s * np.arange(1, n + 1)


def _scan_plan(df: pd.DataFrame, scan_interval_us: int) -> ScanPlan:
    return ScanPlan(first=float(df["t"].min()), scan_interval_s=scan_interval_us / 1e6)


def gpu_utilization_scans(
    frame: pd.DataFrame, *, window: int, scan_interval_us: int
) -> pd.DataFrame:
    """What LowGPUUtilization compares, per node and GPU, at every scan.

    Definition (SageMaker's rule): every ``scan_interval_us`` from the first sample, for each
    GPU with samples so far: how many it has (``samples``), and the p95 and p5 of the last
    ``window`` of them. The rule judges the scans past its ``patience``: *underused* when p95
    is under ``threshold_p95``, *fluctuating* when p95 is over it while p5 is under
    ``threshold_p5``.

    ``frame``: the GPUUtilization samples (:func:`metric_frame`).
    Columns: node, gpu, scan_end (epoch s), samples, p95, p5, window_start (epoch s, the
    window's first sample).
    """
    df = frame
    cols = ["node", "gpu", "scan_end", "samples", "p95", "p5", "window_start"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    plan = _scan_plan(df, scan_interval_us)
    rows = []
    for (node, gpu), g in df.groupby(["node", "device"], sort=True, observed=True):
        t = g["t"].to_numpy()
        v = g["value"].to_numpy()
        ends = plan.scan_ends(float(t[-1]))
        counts = np.searchsorted(t, ends, side="left")
        for end, n in zip(ends, counts, strict=True):
            if n == 0:
                continue
            w = v[max(0, n - window) : n]
            p95, p5 = float(np.quantile(w, 0.95)), float(np.quantile(w, 0.05))
            rows.append((node, gpu, float(end), int(n), p95, p5, float(t[max(0, n - window)])))
    return pd.DataFrame(rows, columns=cols)


def snapshot_ids(t: np.ndarray, window_s: float = SNAPSHOT_WINDOW_S) -> np.ndarray:
    """Snapshot number of each (time-sorted) sample.

    A new snapshot starts when a sample is more than ``window_s`` after the *first* sample
    of the current snapshot (the rule's running timestamp). Gaps split snapshots in one
    vectorised pass; only the rare bursts longer than the window are walked sample by
    sample.
    """
    if len(t) == 0:
        return np.empty(0, dtype=np.int64)
    coarse = np.concatenate([[0], np.cumsum(np.diff(t) > window_s)])
    starts = np.flatnonzero(np.concatenate([[True], coarse[1:] != coarse[:-1]]))
    ends = np.concatenate([starts[1:], [len(t)]])
    spans = t[ends - 1] - t[starts]
    if not (spans > window_s).any():
        return coarse.astype(np.int64)
    out = np.empty(len(t), dtype=np.int64)
    sid = -1
    for a, b, span in zip(starts, ends, spans, strict=True):
        if span <= window_s:
            sid += 1
            out[a:b] = sid
            continue
        first = t[a]
        sid += 1
        for i in range(a, b):
            if t[i] - first > window_s:
                sid += 1
                first = t[i]
            out[i] = sid
    return out


def system_snapshots(frame: pd.DataFrame) -> pd.DataFrame:
    """Per node, one row per system snapshot: the idlest GPU and the busiest core in it.

    Definition (SageMaker's CPUBottleneck / IOBottleneck, but per node): samples within
    20 ms form one snapshot (:func:`snapshot_ids`); ``min_gpu_util`` is the lowest GPU
    utilization in it, ``max_resource`` the highest value of the other dimension (a core's
    CPU utilization, or its I/O wait). The rules call a snapshot a bottleneck when
    ``min_gpu_util`` is under their ``gpu_threshold`` and ``max_resource`` over their
    ``cpu_threshold`` / ``io_threshold``; NaN where the snapshot has no sample of that kind.

    ``frame``: the GPUUtilization samples and those of one resource (CPUUtilization or
    I/OWaitPercentage).
    Columns: node, t (snapshot start, epoch s), min_gpu_util, max_resource.
    """
    df = frame
    cols = ["node", "t", "min_gpu_util", "max_resource"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    parts = []
    for node, g in df.groupby("node", sort=True, observed=True):
        t = g["t"].to_numpy()
        is_gpu = g["dimension"].to_numpy() == "GPUUtilization"
        val = g["value"].to_numpy()
        per_sample = pd.DataFrame(
            {
                "snap": snapshot_ids(t),
                "t": t,
                "gpu": np.where(is_gpu, val, np.nan),
                "resource": np.where(is_gpu, np.nan, val),
            }
        )
        agg = per_sample.groupby("snap").agg(
            t=("t", "min"), min_gpu_util=("gpu", "min"), max_resource=("resource", "max")
        )
        agg.insert(0, "node", node)
        parts.append(agg.reset_index(drop=True))
    return pd.concat(parts, ignore_index=True)[cols]


def runs(t: np.ndarray, flags: np.ndarray, max_gap_s: float = 5.0) -> list[tuple[float, float]]:
    """Contiguous runs of True flags as (start, end) times, merging gaps under ``max_gap_s``."""
    out: list[tuple[float, float]] = []
    idx = np.flatnonzero(flags)
    if len(idx) == 0:
        return out
    start = prev = float(t[idx[0]])
    for i in idx[1:]:
        ti = float(t[i])
        if ti - prev > max_gap_s:
            out.append((start, prev))
            start = ti
        prev = ti
    out.append((start, prev))
    return out


def gpu_memory_moving_average(frame: pd.DataFrame, *, window: int) -> pd.DataFrame:
    """What GPUMemoryIncrease compares, per node and GPU, at every sample: how much the
    moving average of GPU memory rose.

    Definition (SageMaker's rule): at each new sample of a GPU with more than ``window`` + 1
    samples, diff = mean(last ``window`` samples) - mean(the ``window`` - 1 samples ending
    two samples back) (NaN for a window of 1). The rule flags the samples whose diff is over
    its ``increase`` once more than ``patience`` samples were seen.

    ``frame``: the GPUMemoryUtilization samples (:func:`metric_frame`).
    Columns: node, gpu (categorical), samples (seen so far, this one included), t (epoch s),
    value, diff.
    """
    df = frame
    cols = ["node", "gpu", "samples", "t", "value", "diff"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    parts = []
    for _key, g in df.groupby(["node", "device"], sort=True, observed=True):
        v = g["value"].to_numpy(dtype=float)
        n = len(v)
        if n <= window + 1:
            continue
        c = np.concatenate([[0.0], np.cumsum(v)])
        k = np.arange(window + 2, n + 1)  # number of samples seen (1-based count)
        recent = (c[k] - c[k - window]) / window
        earlier = (
            (c[k - 2] - c[k - window - 1]) / (window - 1) if window > 1 else np.full(len(k), np.nan)
        )
        idx = k - 1
        # one row per sample: categorical node / gpu columns keep that affordable
        parts.append(
            pd.DataFrame(
                {
                    "node": g["node"].array[idx],
                    "gpu": g["device"].array[idx],
                    "samples": k,
                    "t": g["t"].to_numpy()[idx],
                    "value": v[idx],
                    "diff": recent - earlier,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def _js_distances(ha: np.ndarray, hb: np.ndarray) -> np.ndarray:
    """Row-wise Jensen-Shannon distance of two stacks of histograms (raw counts).

    As smdebug computes it: ``m = (ha + hb) / 2`` on the raw counts, then
    ``sqrt((entropy(ha, m) + entropy(hb, m)) / 2)`` with scipy's ``entropy`` (each argument
    normalised to sum 1, natural log). NaN where a histogram is empty (scipy gives NaN
    there too, so the rule never fires on it).
    """
    ha = ha.astype(float)
    hb = hb.astype(float)
    sa = ha.sum(axis=1, keepdims=True)
    sb = hb.sum(axis=1, keepdims=True)
    m = (ha + hb) / 2
    sm = m.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        pa_, pb_, pm = ha / sa, hb / sb, m / sm
        kl_a = np.where(pa_ > 0, pa_ * np.log(pa_ / pm), 0.0).sum(axis=1)
        kl_b = np.where(pb_ > 0, pb_ * np.log(pb_ / pm), 0.0).sum(axis=1)
    out = np.sqrt(np.maximum(0.0, (kl_a + kl_b) / 2))
    out[(sa[:, 0] == 0) | (sb[:, 0] == 0)] = np.nan
    return out


#: smdebug's LoadBalancing histogram: 2 %-wide bins from 0 to 98 % (``np.arange(0, 100, 2)``
#: as bin edges, so 49 bins; values above 98 % fall outside every bin).
LOAD_BALANCE_BINS = np.arange(0, 100, 2)


def gpu_load_balance_scans(frame: pd.DataFrame, *, scan_interval_us: int) -> pd.DataFrame:
    """What LoadBalancing compares: per node, each pair of GPUs, at every scan, how
    differently they were loaded so far.

    Definition (SageMaker's LoadBalancing, within each node): at each scan, every GPU gets a
    histogram of *all* its utilization samples so far (``LOAD_BALANCE_BINS``); two GPUs'
    distance is the Jensen-Shannon distance of their histograms (:func:`_js_distances`): 0
    for identical workloads, up to √ln 2 ≈ 0.83 for disjoint ones. smdebug keeps the
    histograms cumulative and checks them at every scan, so an imbalance early in the job
    fires even when the whole job's histograms end up alike. (smdebug also pairs GPUs of
    different nodes; stepscope compares the GPUs of one node, as documented.) The rule judges
    the scans where both GPUs have more than its ``patience`` samples.

    ``frame``: the GPUUtilization samples (:func:`metric_frame`). Scans where a GPU has no
    sample yet are left out.
    Columns: node, gpu_a, gpu_b, scan_end (epoch s), samples_a, samples_b, distance,
    mean_util_a, mean_util_b (each GPU's mean utilization over the whole job).
    """
    df = frame
    cols = [
        "node",
        "gpu_a",
        "gpu_b",
        "scan_end",
        "samples_a",
        "samples_b",
        "distance",
        "mean_util_a",
        "mean_util_b",
    ]
    if df.empty:
        return pd.DataFrame(columns=cols)
    plan = _scan_plan(df, scan_interval_us)
    means = df.groupby(["node", "device"], observed=True)["value"].mean()
    bins = LOAD_BALANCE_BINS
    nbins = len(bins) - 1
    parts = []
    for node, g in df.groupby("node", sort=True, observed=True):
        ends = plan.scan_ends(float(g["t"].max()))
        hists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for gpu, gg in g.groupby("device", sort=True, observed=True):
            t = gg["t"].to_numpy()
            v = gg["value"].to_numpy(dtype=float)
            # bin of each sample as np.histogram assigns it (last bin closed on the right)
            b = np.searchsorted(bins, v, side="right") - 1
            b[v == bins[-1]] = nbins - 1
            ok = (v >= bins[0]) & (v <= bins[-1])
            scan_of = np.searchsorted(ends, t, side="right")  # first scan that sees the sample
            per_scan = np.zeros((len(ends) + 1, nbins), dtype=np.int64)
            np.add.at(per_scan, (scan_of[ok], b[ok]), 1)
            cum = np.cumsum(per_scan, axis=0)[: len(ends)]
            seen = np.searchsorted(t, ends, side="left")
            hists[str(gpu)] = (cum, seen)
        names = sorted(hists, key=natural_key)
        for i, a in enumerate(names):
            for b_name in names[i + 1 :]:
                (ha, na), (hb, nb) = hists[a], hists[b_name]
                seen_both = (na > 0) & (nb > 0)
                if not seen_both.any():
                    continue
                parts.append(
                    pd.DataFrame(
                        {
                            "node": node,
                            "gpu_a": a,
                            "gpu_b": b_name,
                            "scan_end": ends[seen_both],
                            "samples_a": na[seen_both],
                            "samples_b": nb[seen_both],
                            "distance": _js_distances(ha[seen_both], hb[seen_both]),
                            "mean_util_a": float(means.get((node, a), np.nan)),
                            "mean_util_b": float(means.get((node, b_name), np.nan)),
                        }
                    )
                )
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def utilization_p95_scans(
    frame: pd.DataFrame, *, window: int, scan_interval_us: int
) -> pd.DataFrame:
    """What BatchSize compares, per node and GPU, at every scan: the p95 of GPU utilization,
    GPU memory and the node's total CPU utilization over the last ``window`` samples.

    Definition (SageMaker's BatchSize, per GPU): the node's total CPU utilization is the
    mean over its cores of each snapshot. At each scan, once the node has more than
    ``window`` such CPU samples (``cpu_samples``), take the p95 of the last ``window`` of
    them; for each GPU with more than ``window`` samples, the p95 of the last ``window``
    samples of its utilization and of its memory. The rule calls the GPU underused at a
    scan past its ``patience`` when all three are under its thresholds; smdebug checks at
    every scan, so an underused stretch of ``window`` samples anywhere fires, even when the
    job ends busy.

    ``frame``: the GPUUtilization, GPUMemoryUtilization and CPUUtilization samples.
    Columns: node, gpu, scan_end (epoch s), window_start (epoch s, first GPU sample of the
    window), cpu_samples, gpu_p95, gpu_mem_p95, cpu_p95.
    """
    df = frame
    cols = [
        "node",
        "gpu",
        "scan_end",
        "window_start",
        "cpu_samples",
        "gpu_p95",
        "gpu_mem_p95",
        "cpu_p95",
    ]
    if df.empty:
        return pd.DataFrame(columns=cols)
    plan = _scan_plan(df, scan_interval_us)
    rows = []
    for node, g in df.groupby("node", sort=True, observed=True):
        cpu = g[g["dimension"] == "CPUUtilization"]
        if cpu.empty:
            continue
        snap = cpu.groupby(snapshot_ids(cpu["t"].to_numpy()))
        cpu_t = snap["t"].min().to_numpy()
        cpu_total = snap["value"].mean().to_numpy()
        ends = plan.scan_ends(float(g["t"].max()))
        n_cpu = np.searchsorted(cpu_t, ends, side="left")
        gpus = []
        for gpu, gg in g[g["dimension"] != "CPUUtilization"].groupby(
            "device", sort=True, observed=True
        ):
            is_u = (gg["dimension"] == "GPUUtilization").to_numpy()
            ut, u = gg["t"].to_numpy()[is_u], gg["value"].to_numpy()[is_u]
            mt, m = gg["t"].to_numpy()[~is_u], gg["value"].to_numpy()[~is_u]
            gpus.append(
                (
                    gpu,
                    ut,
                    u,
                    mt,
                    m,
                    np.searchsorted(ut, ends, side="left"),
                    np.searchsorted(mt, ends, side="left"),
                )
            )
        for k, end in enumerate(ends):
            nc = int(n_cpu[k])
            if nc <= window:
                continue
            cpu_p95 = _q(cpu_total[nc - window : nc], 0.95)
            for gpu, ut, u, _mt, m, nu_all, nm_all in gpus:
                nu, nm = int(nu_all[k]), int(nm_all[k])
                if nu <= window or nm == 0:
                    continue
                up = _q(u[nu - window : nu], 0.95)
                mp = _q(m[max(0, nm - window) : nm], 0.95)
                rows.append((node, gpu, float(end), float(ut[nu - window]), nc, up, mp, cpu_p95))
    return pd.DataFrame(rows, columns=cols)

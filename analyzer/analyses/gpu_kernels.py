"""GPU kernel analyses over ``kineto_events``: which events are GPU work, kernel-type shares
with their overlaps, per-class totals, and the top kernels.

GPU events
----------
A *GPU event* is a ``kineto_events`` row of a GPU-timeline category on a known stream other
than -1: kernels (``cat = kernel``), memory copies and sets (``gpu_memcpy``, ``gpu_memset``)
and the ``cuda_sync`` records Kineto puts on a stream
(``kernel_classes.GPU_EVENT_CATEGORIES``). HTA selects ``stream != -1`` alone, which on CUDA
traces without torch.compile is the same set; it also takes the CPU-side ``cpu_op`` that
Inductor records with ``args.stream`` for each Triton launch, and ROCm's runtime calls that
carry a stream (``hipMemcpyWithStream``), which run on the CPU: those are not GPU events
here.

Analysis scope (``scope="hta"``, the default)
---------------------------------------------
HTA trims each trace before analysing it, and every analysis here applies the same rule so
that its numbers compare with HTA's: when the job's traces hold at least two distinct
``ProfilerStep#N`` annotations, the last step of each rank is treated as incomplete and
only GPU events *launched* before it starts are kept — a GPU event is kept when its
``correlation`` id matches a CPU-side event (in practice the ``cudaLaunchKernel`` /
``cudaMemcpyAsync`` runtime call) of the same rank that starts before that rank's last
``ProfilerStep`` starts. GPU events without a correlation id, and all GPU events of a rank
that has no ``ProfilerStep`` while others do, are kept (HTA would drop the latter rank
entirely). With fewer than two distinct steps nothing is trimmed. ``scope="all"`` keeps
every GPU event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.analyses.intervals import state_durations, state_name
from analyzer.analyses.kernel_classes import (
    COMMUNICATION,
    COMPUTATION,
    GPU_EVENT_CATEGORIES,
    KERNEL_CLASSES,
    MEMORY,
    classify,
)
from analyzer.ingest.dataset import JobDataset
from analyzer.ingest.schemas import KINETO_EVENTS

__all__ = [
    "RankEvents",
    "Rounding",
    "Scope",
    "gpu_events",
    "kernel_class_totals",
    "kernel_type_breakdown",
    "kineto_events_table",
    "last_step_starts",
    "top_kernels",
]

Scope = Literal["hta", "all"]
Rounding = Literal["none", "hta"]

_STEP_PATTERN = r"^ProfilerStep\s*#\s*\d+"
_DEVICE_SYNC_NAMES = ("Event Sync", "Context Sync")

GPU_EVENT_COLUMNS = [
    "rank",
    "cat",
    "name",
    "start_ns",
    "dur_ns",
    "end_ns",
    "stream",
    "device",
    "correlation",
    "external_id",
    "collective",
    "in_msg_nelems",
    "out_msg_nelems",
    "group_size",
    "dtype",
    "msg_bytes",
    "process_group",
    "kernel_class",
    "library",
]


class RankEvents:
    """One rank's ``kineto_events`` with what the job as a whole decides for it.

    Why: the per-rank map (:mod:`analyzer.analyses.rank_map`) analyses each rank alone, but
    HTA's trimming of the last step depends on the *job* (at least two distinct
    ``ProfilerStep`` names over all ranks): ``trim`` carries that decision (None: decide
    from this rank's events alone, as for a single-rank job). ``base_ns`` is the rank's
    ``baseTimeNanoseconds`` (for ``rounding="hta"``). The GPU-event selections every
    analysis of the rank repeats are computed once and kept here.
    """

    def __init__(
        self, table: pa.Table, *, trim: bool | None = None, base_ns: dict[int, int] | None = None
    ) -> None:
        self.table = table
        self.trim = trim
        self.base_ns = dict(base_ns or {})
        self.memo: dict[tuple[Any, ...], Any] = {}

    def step_names(self) -> set[str]:
        """The distinct ``ProfilerStep#N`` names of these events (what ``trim`` is decided from)."""
        names = _string_col(self.table, "name")
        return {
            n for n in pc.unique(pc.filter(names, _step_mask(self))).to_pylist() if n is not None
        }


def kineto_events_table(source: Any) -> pa.Table:
    """The ``kineto_events`` table from a JobDataset, RankEvents, an Arrow table or a pandas
    DataFrame."""
    if isinstance(source, RankEvents):
        return source.table
    if isinstance(source, JobDataset):
        return source.table("kineto_events")
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pd.DataFrame):
        return pa.Table.from_pandas(source, preserve_index=False)
    raise TypeError(
        f"expected a JobDataset, pyarrow.Table or pandas.DataFrame, got {type(source)!r}"
    )


def _col(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name in table.column_names:
        return table.column(name)
    field = KINETO_EVENTS.field(name)
    return pa.chunked_array([pa.nulls(table.num_rows, type=field.type)])


def _string_col(table: pa.Table, name: str) -> pa.ChunkedArray:
    col = _col(table, name)
    if pa.types.is_dictionary(col.type):
        return col.cast(pa.string())
    return col


def _name_mask(
    table: pa.Table, test: Callable[[pa.Array], pa.Array], column: str = "name"
) -> pa.ChunkedArray:
    """``test`` (a string predicate, e.g. a regex match) on each row's ``name`` (or another
    string ``column``), null → False.

    Why on the dictionary: a rank's 10^5 events have a few thousand distinct names, so the
    predicate runs on those and each row takes its name's answer (no cast to plain strings).
    """
    col = _col(table, column)
    if not pa.types.is_dictionary(col.type):
        return pc.fill_null(test(col), False)
    chunks = [
        pc.fill_null(pc.fill_null(test(c.dictionary), False).take(c.indices), False)
        for c in col.chunks
    ]
    return pa.chunked_array(chunks, pa.bool_())


def _step_mask(source: Any) -> pa.ChunkedArray:
    """Rows that are CPU-side ``ProfilerStep#N`` annotations (memoised on a
    :class:`RankEvents`). Recent PyTorch also draws each step on the GPU timeline
    (``gpu_user_annotation``), where it starts when the GPU reaches the step: when the GPU
    runs behind the CPU that copy starts later, and taking it as the last step's start kept
    the kernels the CPU launched in the last step. The trim is about launches, so the step
    is the CPU's."""
    if isinstance(source, RankEvents):
        if ("step_mask",) not in source.memo:
            source.memo[("step_mask",)] = _step_mask(source.table)
        mask: pa.ChunkedArray = source.memo[("step_mask",)]
        return mask
    table = kineto_events_table(source)
    named = _name_mask(table, lambda v: pc.match_substring_regex(v, _STEP_PATTERN))
    on_gpu = _name_mask(table, lambda v: pc.equal(v, "gpu_user_annotation"), column="cat")
    return pc.and_(named, pc.invert(on_gpu))


def _is_gpu_event(table: pa.Table) -> pa.ChunkedArray:
    """A GPU-timeline category on a known stream (kernel_classes.GPU_EVENT_CATEGORIES)."""
    stream = _col(table, "stream")
    on_stream = pc.and_(pc.is_valid(stream), pc.not_equal(pc.fill_null(stream, -1), -1))
    category = _name_mask(
        table, lambda v: pc.is_in(v, value_set=pa.array(GPU_EVENT_CATEGORIES)), column="cat"
    )
    return pc.and_(on_stream, category)


def last_step_starts(source: Any) -> pd.Series | None:
    """Start of each rank's last ``ProfilerStep#N`` annotation (Series indexed by rank), or
    None when the job holds fewer than two distinct steps (then HTA trims nothing). For
    :class:`RankEvents` the job's decision (``trim``) replaces the count over its own events."""
    if isinstance(source, RankEvents):  # every analysis of the rank asks: computed once
        if ("last_step_starts",) not in source.memo:
            source.memo[("last_step_starts",)] = _last_step_starts(source)
        memo: pd.Series | None = source.memo[("last_step_starts",)]
        return memo
    return _last_step_starts(source)


def _last_step_starts(source: Any) -> pd.Series | None:
    table = kineto_events_table(source)
    is_step = _step_mask(source)
    trim = source.trim if isinstance(source, RankEvents) else None
    if trim is None:
        names = _string_col(table, "name")
        trim = len(pc.unique(pc.filter(names, is_step))) >= 2
    if not trim:
        return None
    steps = table.filter(is_step)
    rank = _col(steps, "rank").to_numpy().astype(np.int64)
    start = pc.fill_null(_col(steps, "start_ns"), 0).to_numpy().astype(np.int64)
    return pd.Series(start).groupby(rank).max()


def _scope_mask(table: pa.Table, is_gpu: np.ndarray, last_step: pd.Series | None) -> np.ndarray:
    """HTA's trimming (see the module docstring), as a mask over ``table``'s rows."""
    keep = is_gpu.copy()
    if last_step is None:
        return keep
    rank = _col(table, "rank").to_numpy().astype(np.int64)
    start = pc.fill_null(_col(table, "start_ns"), 0).to_numpy().astype(np.int64)

    corr_col = _col(table, "correlation")
    has_corr = pc.is_valid(corr_col).to_numpy(zero_copy_only=False)
    corr = pc.fill_null(corr_col, -1).to_numpy().astype(np.int64)
    stream = pc.fill_null(_col(table, "stream"), -1).to_numpy().astype(np.int64)
    device_sync = _name_mask(
        table, lambda v: pc.is_in(v, value_set=pa.array(_DEVICE_SYNC_NAMES))
    ).to_numpy(zero_copy_only=False)
    # HTA's "GPU kernel" for this purpose: stream >= 0 with a correlation, or a device sync.
    gpu_like = ((stream >= 0) & has_corr & (corr >= 0)) | device_sync
    rank_last = pd.Series(rank).map(last_step).to_numpy(dtype=float)
    cpu_before = ~gpu_like & has_corr & (start < rank_last)  # NaN compares False
    launched = _pairs_isin(rank, corr, rank[cpu_before], corr[cpu_before])
    rank_has_steps = ~np.isnan(rank_last)
    keep = keep & (launched | ~has_corr | ~rank_has_steps)
    return keep


def _pairs_isin(a1: np.ndarray, a2: np.ndarray, b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Row-wise ``(a1, a2) in set(zip(b1, b2))`` for integer arrays, vectorised."""
    lo = min(int(a2.min(initial=0)), int(b2.min(initial=0)))
    hi = max(int(a2.max(initial=0)), int(b2.max(initial=0)))
    r_hi = max(int(np.abs(a1).max(initial=0)), int(np.abs(b1).max(initial=0)))
    width = hi - lo + 1
    if width * (2 * r_hi + 1) < 2**62:  # pack each pair into one int64
        ka = (a1.astype(np.int64) + r_hi) * width + (a2.astype(np.int64) - lo)
        kb = (b1.astype(np.int64) + r_hi) * width + (b2.astype(np.int64) - lo)
        return np.isin(ka, kb)
    return np.asarray(pd.MultiIndex.from_arrays([a1, a2]).isin(pd.MultiIndex.from_arrays([b1, b2])))


def gpu_events(source: Any, *, scope: Scope = "hta", rounding: Rounding = "none") -> pd.DataFrame:
    """GPU events in the analysis scope, one row each, with their class.

    Columns: ``rank, cat, name, start_ns, dur_ns, end_ns, stream, device, correlation,
    external_id, collective, in_msg_nelems, out_msg_nelems, group_size, dtype, msg_bytes,
    process_group, kernel_class, library`` (``kernel_class`` / ``library`` from
    :func:`analyzer.analyses.kernel_classes.classify`). Rows without a start are dropped; a
    missing duration counts as 0. Sorted by rank and start.

    ``rounding="hta"`` reproduces HTA's loader, which moves each event's start up and its
    end down to whole microseconds (``ceil``/``floor``; an event shorter than that becomes
    empty). The default keeps the exact nanoseconds of the table.
    """
    if rounding not in ("none", "hta"):
        raise ValueError(f"rounding must be 'none' or 'hta', not {rounding!r}")
    if scope not in ("hta", "all"):
        raise ValueError(f"scope must be 'hta' or 'all', not {scope!r}")
    if isinstance(source, RankEvents):  # one rank: every analysis of it shares the selection
        key = ("gpu_events", scope, rounding)
        if key not in source.memo:
            source.memo[key] = _gpu_events(source, scope, rounding)
        memo: pd.DataFrame = source.memo[key]
        return memo
    return _gpu_events(source, scope, rounding)


def _gpu_events(source: Any, scope: Scope, rounding: Rounding) -> pd.DataFrame:
    table = kineto_events_table(source)
    if table.num_rows == 0:
        return _empty_gpu_events()
    is_gpu = _is_gpu_event(table).to_numpy(zero_copy_only=False)
    is_gpu = is_gpu & pc.is_valid(_col(table, "start_ns")).to_numpy(zero_copy_only=False)
    mask = _scope_mask(table, is_gpu, last_step_starts(source)) if scope == "hta" else is_gpu
    if not mask.any():
        return _empty_gpu_events()
    cols = [c for c in GPU_EVENT_COLUMNS if c in KINETO_EVENTS.names]
    sub = pa.table({c: _col(table, c) for c in cols}).filter(pa.array(mask))
    df = sub.to_pandas()
    df["dur_ns"] = df["dur_ns"].fillna(0).astype(np.int64)
    df["start_ns"] = df["start_ns"].astype(np.int64)
    df["end_ns"] = df["start_ns"] + df["dur_ns"]
    if rounding == "hta":
        _round_like_hta(df, _base_times(source))
    classes = classify(sub.column("name"))
    df["kernel_class"] = classes["kernel_class"].to_numpy()
    df["library"] = classes["library"].to_numpy()
    df["kernel_class"] = df["kernel_class"].astype(pd.CategoricalDtype(list(KERNEL_CLASSES)))
    df = df.sort_values(["rank", "start_ns"], kind="stable", ignore_index=True)
    return df[GPU_EVENT_COLUMNS]


def cpu_correlated_events(
    source: Any, *, rounding: Rounding = "none", name_pattern: str | None = None
) -> pd.DataFrame:
    """CPU-side events with a correlation id — the runtime calls (``cudaLaunchKernel``...)
    that put the GPU event of the same rank and id on a stream — optionally only those whose
    name matches ``name_pattern``. Columns: rank, correlation, start_ns, end_ns (HTA's
    whole-µs rounding with ``rounding="hta"``); rows without a start are left out."""
    if isinstance(source, RankEvents):
        key = ("cpu_correlated_events", rounding, name_pattern)
        if key not in source.memo:
            source.memo[key] = _cpu_correlated_events(source, rounding, name_pattern)
        memo: pd.DataFrame = source.memo[key]
        return memo
    return _cpu_correlated_events(source, rounding, name_pattern)


def _cpu_correlated_events(
    source: Any, rounding: Rounding, name_pattern: str | None
) -> pd.DataFrame:
    table = kineto_events_table(source)
    keep = pc.and_(pc.invert(_is_gpu_event(table)), pc.is_valid(_col(table, "correlation")))
    keep = pc.and_(keep, pc.is_valid(_col(table, "start_ns")))
    if name_pattern is not None:
        keep = pc.and_(keep, _name_mask(table, lambda v: pc.match_substring_regex(v, name_pattern)))
    df = (
        table.filter(pc.fill_null(keep, False))
        .select(["rank", "correlation", "start_ns", "dur_ns"])
        .to_pandas()
    )
    df["dur_ns"] = df["dur_ns"].fillna(0).astype(np.int64)
    df["start_ns"] = df["start_ns"].astype(np.int64)
    df["end_ns"] = df["start_ns"] + df["dur_ns"]
    if rounding == "hta" and not df.empty:
        _round_like_hta(df, _base_times(source))
    return df[["rank", "correlation", "start_ns", "end_ns"]]


def _base_times(source: Any) -> dict[int, int]:
    """``baseTimeNanoseconds`` per rank (the origin of the trace's own ``ts``), where known."""
    if isinstance(source, RankEvents):
        return source.base_ns
    if not isinstance(source, JobDataset):
        return {}
    traces = source.table("kineto_traces")
    if traces.num_rows == 0:
        return {}
    out: dict[int, int] = {}
    for row in traces.select(["rank", "base_time_ns"]).to_pylist():
        if row["base_time_ns"] is not None:
            out[int(row["rank"])] = int(row["base_time_ns"])
    return out


def _round_like_hta(df: pd.DataFrame, base_ns: dict[int, int]) -> None:
    """HTA's loader in float64 microseconds of the trace's own clock: ``ts = ceil(ts)``,
    ``end = floor(ts + dur)``; emulated with the same float arithmetic so that results
    agree to the microsecond. Events that end up with ``end < ts`` become empty."""
    base = df["rank"].map(base_ns).fillna(0).astype(np.int64).to_numpy()
    rel = df["start_ns"].to_numpy(dtype=np.int64) - base
    q, r = np.divmod(rel, 1000)
    ts = q.astype(np.float64) + r.astype(np.float64) / 1000.0  # nearest float to rel/1000
    dur = df["dur_ns"].to_numpy(dtype=np.int64).astype(np.float64) / 1000.0
    start_us = np.ceil(ts).astype(np.int64)
    end_us = np.floor(ts + dur).astype(np.int64)
    start = start_us * 1000 + base
    end = np.maximum(end_us * 1000 + base, start)
    df["start_ns"] = start
    df["end_ns"] = end
    df["dur_ns"] = end - start


def _empty_gpu_events() -> pd.DataFrame:
    df = KINETO_EVENTS.empty_table().to_pandas()
    df["end_ns"] = pd.Series([], dtype=np.int64)
    df["kernel_class"] = pd.Categorical([], categories=list(KERNEL_CLASSES))
    df["library"] = pd.Series([], dtype=object)
    return df[GPU_EVENT_COLUMNS]


def _class_codes(kernels: pd.DataFrame, classes: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    sel = kernels[kernels["kernel_class"].isin(classes)]
    code = pd.Categorical(sel["kernel_class"].astype(str), categories=classes).codes
    return sel, code.astype(np.int64)


def kernel_type_breakdown(
    source: Any,
    *,
    scope: Scope = "hta",
    rounding: Rounding = "none",
    include_memory: bool = True,
    per_rank: bool = True,
) -> pd.DataFrame:
    """Kernel-type time shares, with overlapping time attributed to overlap rows (HTA's
    ``get_gpu_kernel_breakdown(include_memory_kernels=True)`` kernel-type table).

    Definition, per rank: take the GPU events of class COMPUTATION, COMMUNICATION and (with
    ``include_memory``) MEMORY; ``OTHER`` events are left out. Every instant covered by at
    least one of them is in exactly one *state*, the set of classes active then, named like
    ``"COMPUTATION overlapping COMMUNICATION"`` (classes in that order). ``time_ns`` is the
    total length of the state (overlaps within one class count once) and ``pct`` its
    share of the rank's total, so a rank's ``pct`` add up to 100.

    Returns columns ``rank, kernel_type, time_ns, pct`` sorted by rank then time
    (descending). With ``per_rank=False`` the times are summed over ranks first (HTA's
    all-ranks table) and the ``rank`` column is dropped. Empty (same columns) when there
    are no such kernels, e.g. on CPU-only traces.
    """
    kernels = gpu_events(source, scope=scope, rounding=rounding)
    classes = [COMPUTATION, COMMUNICATION] + ([MEMORY] if include_memory else [])
    sel, code = _class_codes(kernels, classes)
    states = state_durations(
        sel["rank"].to_numpy(),
        sel["start_ns"].to_numpy(),
        sel["end_ns"].to_numpy(),
        code,
        n_classes=len(classes),
    )
    cols = ["rank", "kernel_type", "time_ns", "pct"]
    if states.empty:
        out = pd.DataFrame(
            {
                c: pd.Series([], dtype=t)
                for c, t in zip(cols, ["int32", "object", "int64", "float64"], strict=True)
            }
        )
        return out if per_rank else out.drop(columns="rank")
    names = {s: state_name(int(s), classes) for s in states["state"].unique()}
    states["kernel_type"] = states["state"].map(names)
    states = states.rename(columns={"group": "rank", "duration": "time_ns"})
    states["rank"] = states["rank"].astype(np.int32)
    if per_rank:
        total = states.groupby("rank")["time_ns"].transform("sum")
        states["pct"] = 100.0 * states["time_ns"] / total
        out = states.sort_values(["rank", "time_ns"], ascending=[True, False], kind="stable")
        return out[cols].reset_index(drop=True)
    summed = states.groupby("kernel_type", as_index=False)["time_ns"].sum()
    summed["pct"] = 100.0 * summed["time_ns"] / summed["time_ns"].sum()
    return summed.sort_values("time_ns", ascending=False, ignore_index=True)[
        ["kernel_type", "time_ns", "pct"]
    ]


def kernel_class_totals(
    source: Any, *, scope: Scope = "hta", rounding: Rounding = "none"
) -> pd.DataFrame:
    """Per rank and kernel class: ``count``, ``total_ns`` (plain sum of durations, HTA's
    ``<rank>_raw_dur_sum_by_type``), ``union_ns`` (length of the union of the class's
    intervals: overlaps within the class counted once) and ``pct`` (``total_ns`` as a share
    of all GPU events' plain sum on that rank). Classes with no events are omitted.
    """
    kernels = gpu_events(source, scope=scope, rounding=rounding)
    cols = ["rank", "kernel_class", "count", "total_ns", "union_ns", "pct"]
    if kernels.empty:
        return pd.DataFrame(
            {
                c: pd.Series([], dtype=t)
                for c, t in zip(
                    cols, ["int32", "object", "int64", "int64", "int64", "float64"], strict=True
                )
            }
        )
    key = kernels["kernel_class"].astype(str)
    agg = (
        kernels.assign(kernel_class=key)
        .groupby(["rank", "kernel_class"], as_index=False)
        .agg(count=("dur_ns", "size"), total_ns=("dur_ns", "sum"))
    )
    # Union per (rank, class): one group per pair.
    group = kernels["rank"].astype(np.int64).to_numpy() * len(KERNEL_CLASSES) + kernels[
        "kernel_class"
    ].cat.codes.to_numpy().astype(np.int64)
    states = state_durations(
        group,
        kernels["start_ns"].to_numpy(),
        kernels["end_ns"].to_numpy(),
        np.zeros(len(kernels), np.int64),
        n_classes=1,
    )
    union = states.groupby("group")["duration"].sum()
    gkey = agg["rank"].astype(np.int64) * len(KERNEL_CLASSES) + agg["kernel_class"].map(
        {c: i for i, c in enumerate(KERNEL_CLASSES)}
    ).astype(np.int64)
    agg["union_ns"] = gkey.map(union).fillna(0).astype(np.int64).to_numpy()
    agg["pct"] = 100.0 * agg["total_ns"] / agg.groupby("rank")["total_ns"].transform("sum")
    agg["rank"] = agg["rank"].astype(np.int32)
    return agg.sort_values(["rank", "total_ns"], ascending=[True, False], ignore_index=True)[cols]


def top_kernels(
    source: Any,
    *,
    n: int = 10,
    scope: Scope = "hta",
    by_class: bool = True,
) -> pd.DataFrame:
    """The kernels (by name) with the most total GPU time, per rank (and per class).

    Columns: ``rank, kernel_class, library, name, count, total_ns, mean_ns, min_ns, max_ns,
    std_ns`` (population-free sample std, 0 for a single call), ``pct_of_class`` (share of
    the plain duration sum of the kernel's class on that rank), ``pct_of_gpu`` (share of all
    GPU events' plain duration sum on that rank) and ``position`` (1 = largest). Keeps the
    ``n`` largest per rank and class (per rank only with ``by_class=False``).
    """
    kernels = gpu_events(source, scope=scope)
    cols = [
        "rank",
        "kernel_class",
        "library",
        "name",
        "count",
        "total_ns",
        "mean_ns",
        "min_ns",
        "max_ns",
        "std_ns",
        "pct_of_class",
        "pct_of_gpu",
        "position",
    ]
    if kernels.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})
    k = kernels.assign(
        name=kernels["name"].astype(str),
        kernel_class=kernels["kernel_class"].astype(str),
        library=kernels["library"].astype(str),
    )
    agg = k.groupby(["rank", "kernel_class", "library", "name"], as_index=False).agg(
        count=("dur_ns", "size"),
        total_ns=("dur_ns", "sum"),
        mean_ns=("dur_ns", "mean"),
        min_ns=("dur_ns", "min"),
        max_ns=("dur_ns", "max"),
        std_ns=("dur_ns", "std"),
    )
    agg["std_ns"] = agg["std_ns"].fillna(0.0)
    class_total = agg.groupby(["rank", "kernel_class"])["total_ns"].transform("sum")
    rank_total = agg.groupby("rank")["total_ns"].transform("sum")
    agg["pct_of_class"] = 100.0 * agg["total_ns"] / class_total
    agg["pct_of_gpu"] = 100.0 * agg["total_ns"] / rank_total
    keys = ["rank", "kernel_class"] if by_class else ["rank"]
    agg = agg.sort_values(
        [*keys, "total_ns", "name"], ascending=[True] * len(keys) + [False, True], ignore_index=True
    )
    agg["position"] = agg.groupby(keys).cumcount() + 1
    agg = agg[agg["position"] <= n]
    agg["rank"] = agg["rank"].astype(np.int32)
    return agg[cols].reset_index(drop=True)

"""The critical path of a step: the chain of dependent work that sets its length, one rank
and across ranks.

Why: the breakdowns say where time is *spent*; only the longest chain of dependencies says
which time the step *waits for*. Shortening a kernel off that chain shortens nothing.

**One rank** follows Holistic Trace Analysis's ``critical_path_analysis`` (HTA,
``hta/analyzers/critical_path_analysis.py``), definition by definition, so its numbers can
be checked against HTA's on the same trace (``tests/test_critical_path_hta.py``):

* **Window**: the events of one annotation instance (:func:`annotation_window`: the first
  events whose name contains the annotation, in trace order; ``""`` the whole trace). CPU
  events with a positive duration that start in it; GPU events whose launch call does.
* **Nodes**: the start and the end of every CPU op, CUDA runtime / driver call, data-loader
  event (when a pattern is given) and GPU kernel, memory copy or set with a launch.
* **Edges** (weight = the time between their nodes unless said otherwise):
  on each CPU thread, the nesting of its events (a parent's start to its first child's
  start, one child's end to the next child's start, the last child's end to the parent's
  end), consecutive top-level ops joined with weight 0 (time no op covers is not work);
  the backward thread is merged into the forward thread when each is one thread; the calls
  that share the CUDA runtime lock (``cudaLaunchKernel``, ``cudaMemcpyAsync``,
  ``cudaHostAlloc``) ordered by their ends; a blocking call (``cuda*Synchronize``,
  ``cudaEventQuery``, ``cudaMemcpy``, ``cudaMemcpyAsync``) ends with weight 0 (its wait is
  the GPU's work, reached through a sync edge); each kernel's start to its end; a
  **launch** edge from the launch call's start to the kernel's start when the stream was
  empty (the kernel was the only one queued from launch to start); else a **kernel gap**
  edge from the previous kernel on the stream when the gap is under 1.5 ms; weight-0
  **sync** edges from the last kernel of a stream (all streams) to the end of
  ``cudaStreamSynchronize`` (``cudaDeviceSynchronize``), from the kernel launched last on
  the recorded stream before ``cudaEventRecord`` to the end of ``cudaEventSynchronize``, and
  to the next kernel launched after ``cudaStreamWaitEvent`` on the waiting stream.
* **Path**: the longest path of that acyclic graph. Each edge is attributed to an event as
  HTA does (its own op; between two children, their parent) and gets a **category**:
  ``cpu`` (HTA's cpu_bound), ``data_loading``, ``kernel_launch``
  (gpu_kernel_launch_overhead), ``gpu_compute`` / ``gpu_memory`` (both HTA's
  gpu_compute_bound: copies and sets are told apart here), ``gpu_communication``
  (gpu_communication_bound) and ``gpu_gap`` (gpu_kernel_kernel_overhead).

Where it differs from HTA, on purpose: times are the trace's nanoseconds (HTA rounds
sub-microsecond traces to whole microseconds, start up and end down); HTA drops a trace's
last ProfilerStep when it has several (its "incomplete iteration"), here every step has a
path; streams are told apart by device too (HTA keys them by stream id alone, the same on
one-GPU traces). Where HTA's graph has an edge of negative weight (a child ending after
its parent) it is counted as 0, as HTA does for -1 µs (HTA fails on more).

**Across ranks** (:func:`cross_rank_critical_path`): in synchronous training a collective
ends when its last rank arrives (:mod:`analyzer.analyses.cross_rank` matches the calls and
corrects the clocks). The ranks' graphs of one step are joined: at every matched call, an
edge from the last rank's arrival to each rank's end of the call, weighted with the
transfer (end minus the last arrival); a rank's own call counts only its transfer, never
its wait. So where a rank waited, the path continues on the rank it waited for, before
its arrival. A host collective (gloo, on a worker thread) is a node too (category
``communication``), joined to the op that issued it (weight 0, from its start) and to the
issuing thread's first op after it ends (weight 0). Unlike HTA's single-rank rule, the
time between two top-level ops of a rank's training thread (the thread of its
``ProfilerStep``) weighs what it lasted, less the part of it in which the rank waited at a
matched collective (from its arrival to the last rank's), category ``unrecorded``: Python
work no op covers, a sleep, a late batch read outside the data loader are what the others
wait for as much as recorded ops are, and without them the path would name whichever
rank has more recorded work (on the bundled sample, rank 0 in half the steps, although
rank 1 arrives last in all of them; with them, rank 1 in every step, and the path as long
as the step). **Slack** of a (rank, category): how
much the step's path would shorten if that category's time on that rank were zero (the
longest path again with those edges at 0).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from analyzer.analyses.intervals import covered_in_windows, merge_intervals
from analyzer.analyses.kernel_classes import COMMUNICATION, MEMORY, classify

__all__ = [
    "CATEGORIES",
    "HTA_BOUND_BY",
    "CriticalPath",
    "CrossRankCriticalPath",
    "RankGraph",
    "annotation_window",
    "critical_path",
    "cross_rank_critical_path",
    "cross_rank_steps",
    "rank_graph",
    "step_paths",
]

#: what a stretch of the path is, in the order reports list them
CATEGORIES = (
    "cpu",
    "data_loading",
    "kernel_launch",
    "gpu_compute",
    "gpu_memory",
    "gpu_communication",
    "gpu_gap",
    "communication",
    "unrecorded",
)
#: each category as HTA's ``bound_by`` names it (copies and host collectives fold in)
HTA_BOUND_BY = {
    "cpu": "cpu_bound",
    "data_loading": "data_loading",
    "kernel_launch": "gpu_kernel_launch_overhead",
    "gpu_compute": "gpu_compute_bound",
    "gpu_memory": "gpu_compute_bound",
    "gpu_communication": "gpu_communication_bound",
    "gpu_gap": "gpu_kernel_kernel_overhead",
    "communication": "cpu_bound",
    "unrecorded": "cpu_bound",
}

# edge kinds (HTA's CPEdgeType)
OPERATOR, DEPENDENCY, LAUNCH, KERNEL_GAP, SYNC = "operator", "dependency", "launch", "gap", "sync"
#: across ranks only: the time between two top-level ops of the training thread
UNRECORDED = "unrecorded"
_LOCK_CALLS = frozenset({"cudaHostAlloc", "cudaLaunchKernel", "cudaMemcpyAsync"})
_BLOCKING = frozenset(
    {
        "cudaDeviceSynchronize",
        "cudaStreamSynchronize",
        "cudaEventQuery",
        "cudaEventSynchronize",
        "cudaMemcpy",
        "cudaMemcpyAsync",
    }
)
_LAUNCHES = frozenset(
    {
        "cudaMemsetAsync", "cudaMemcpyAsync", "cudaLaunchKernel", "cudaLaunchKernelExC",
        "cuLaunchKernel", "cuLaunchKernelEx", "hipLaunchKernel", "hipExtModuleLaunchKernel",
        "hipMemsetAsync", "hipMemcpyAsync", "hipMemcpyWithStream",
        "runFunction - job_prep_and_submit_for_execution",
    }
)  # fmt: skip
_NODE_CATS = frozenset({"cpu_op", "cuda_runtime", "cuda_driver"})
_DEVICE_SYNCS = frozenset({"Event Sync", "Context Sync"})  # on the GPU, with stream -1
#: HTA's largest gap between two kernels of a stream still counted as the stream's own
KERNEL_GAP_MAX_NS = 1_500_000
_ISSUER_RE = re.compile(r"^(c10d::|record_param_comms)")


def _frame(events: pa.Table) -> pd.DataFrame:
    """One rank's complete events (HTA's: a duration and a category, no Python functions)
    with the columns the graph reads; ``ev`` is the row's place in the trace."""
    want = ["cat", "name", "phase", "pid", "tid", "start_ns", "dur_ns", "correlation", "stream"]
    extra = ["wait_on_stream", "wait_on_correlation"]
    cols = {c: events.column(c).to_pandas() for c in want}
    for c in extra:
        cols[c] = (
            events.column(c).to_pandas()
            if c in events.column_names
            else pd.Series([None] * events.num_rows, dtype="float64")
        )
    df = pd.DataFrame(cols)
    df["ev"] = np.arange(len(df), dtype=np.int64)
    for c in ("cat", "name", "phase"):
        df[c] = df[c].astype(object)
    keep = (
        (df["phase"] == "X")
        & df["dur_ns"].notna()
        & df["cat"].notna()
        & ~df["cat"].isin(["Trace", "python_function"])
    )
    df = df[keep].reset_index(drop=True)
    df["dur_ns"] = df["dur_ns"].astype(np.int64)
    df["end_ns"] = df["start_ns"] + df["dur_ns"]
    for c in ("correlation", "stream", "wait_on_stream", "wait_on_correlation"):
        df[c] = df[c].fillna(-1).astype(np.int64)
    df["name"] = df["name"].fillna("")
    _link_correlations(df)
    return df


def _link_correlations(df: pd.DataFrame) -> None:
    """``link``: the row a launch call and its GPU event point at (HTA's index_correlation:
    -1 no correlation, -2 a correlation without a partner)."""
    is_gpu = ((df["stream"] >= 0) & (df["correlation"] >= 0)) | df["name"].isin(_DEVICE_SYNCS)
    df["is_gpu"] = is_gpu
    link = np.where(df["correlation"].to_numpy() >= 0, -2, -1).astype(np.int64)
    has = df["correlation"] >= 0
    gpu = df[has & is_gpu]
    cpu = df[has & ~is_gpu]
    last_gpu = pd.Series(gpu.index, index=gpu["correlation"]).groupby(level=0).last()
    last_cpu = pd.Series(cpu.index, index=cpu["correlation"]).groupby(level=0).last()
    g2c = last_cpu.reindex(gpu["correlation"]).to_numpy()
    c2g = last_gpu.reindex(cpu["correlation"]).to_numpy()
    gi, ci = gpu.index.to_numpy(), cpu.index.to_numpy()
    link[gi[~np.isnan(g2c)]] = g2c[~np.isnan(g2c)].astype(np.int64)
    link[ci[~np.isnan(c2g)]] = c2g[~np.isnan(c2g)].astype(np.int64)
    df["link"] = link


def annotation_window(events: pa.Table, annotation: str, instance: int = 0) -> tuple[int, int]:
    """HTA's window: the ``instance``-th event (in trace order) whose name contains
    ``annotation``, from its start to its end; ``""``: the whole trace."""
    df = _frame(events)
    if df.empty:
        raise ValueError("no complete events in the trace")
    if annotation == "":
        return int(df["start_ns"].min()), int(df["end_ns"].max())
    hits = df[df["name"].str.contains(annotation, regex=False)]
    if len(hits) <= instance:
        raise ValueError(f"annotation {annotation!r} has no instance {instance}")
    row = hits.iloc[instance]
    return int(row["start_ns"]), int(row["end_ns"])


@dataclass
class RankGraph:
    """One rank's critical-path graph: nodes (a time, an event, start or end) and edges
    (``src``, ``dst``, ``weight`` ns, ``kind``, ``category``, the attributed ``event``)."""

    rank: int
    events: pd.DataFrame
    node_ts: np.ndarray
    node_ev: np.ndarray
    node_start: np.ndarray
    start_node: dict[int, int]
    end_node: dict[int, int]
    edges: pd.DataFrame
    negative_edges: int = 0


class _Builder:
    """Builds a :class:`RankGraph` (module docstring) from one rank's frame."""

    def __init__(
        self,
        df: pd.DataFrame,
        window: tuple[int, int],
        data_loading: re.Pattern[str] | None,
        host_collectives: pd.DataFrame | None,
        waits: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.full = df
        #: across ranks: the rank's waits at matched collectives (merged, its own clock);
        #: None for HTA's single-rank definition (time between top-level ops weighs 0)
        self.waits = waits
        self.main_tid: int | None = None
        w0, w1 = window
        cpu = df["stream"] == -1
        in_cpu = cpu & (df["start_ns"] >= w0) & (df["start_ns"] <= w1) & (df["dur_ns"] > 0)
        # a GPU event is in when its launch call is (and every Stream Wait Event)
        link = df["link"].to_numpy()
        launch_ok = np.zeros(len(df), dtype=bool)
        src = np.flatnonzero(in_cpu.to_numpy() & (link >= 0))
        launch_ok[link[src]] = True
        in_gpu = ~cpu & (launch_ok | (df["name"] == "Stream Wait Event").to_numpy())
        self.clip = (in_cpu | in_gpu).to_numpy()
        self.data_loading = data_loading
        is_dl = (
            df["name"].map(lambda n: bool(data_loading.search(n))).to_numpy(bool)
            if data_loading is not None
            else np.zeros(len(df), dtype=bool)
        )
        self.is_dl = is_dl
        self.is_host_coll = np.zeros(len(df), dtype=bool)
        if host_collectives is not None and not host_collectives.empty:
            key = pd.MultiIndex.from_frame(df[["start_ns", "end_ns"]])
            want = pd.MultiIndex.from_frame(host_collectives[["start_ns", "end_ns"]])
            self.is_host_coll = key.isin(want) & cpu.to_numpy()
        is_node = (
            df["cat"].isin(_NODE_CATS).to_numpy()
            | is_dl
            | ((df["stream"] != -1).to_numpy() & (link >= -2) & (df["correlation"] >= 0).to_numpy())
            | self.is_host_coll
        ) & self.clip
        rows = np.flatnonzero(is_node)
        ts = np.concatenate([df["start_ns"].to_numpy()[rows], df["end_ns"].to_numpy()[rows]])
        evs = np.concatenate([rows, rows])
        starts = np.concatenate([np.ones(len(rows), bool), np.zeros(len(rows), bool)])
        order = np.lexsort((df["ev"].to_numpy()[evs], ts))
        self.node_ts, self.node_ev, self.node_start = ts[order], evs[order], starts[order]
        pos = np.empty(len(order), dtype=np.int64)
        pos[order] = np.arange(len(order))
        self.start_node = dict(zip(rows.tolist(), pos[: len(rows)].tolist(), strict=True))
        self.end_node = dict(zip(rows.tolist(), pos[len(rows) :].tolist(), strict=True))
        self.src: list[int] = []
        self.dst: list[int] = []
        self.kind: list[str] = []
        self.weight: list[int] = []
        self.attr: list[int] = []
        names = df["name"].to_numpy(object)
        self.names = names
        self.is_lock = np.isin(names, list(_LOCK_CALLS))
        self.is_blocking = np.isin(names, list(_BLOCKING))

    # -- edges ----------------------------------------------------------------------------
    def add(
        self,
        u: int,
        v: int,
        kind: str,
        *,
        zero: bool = False,
        attr: int = -1,
        weight: int | None = None,
    ) -> None:
        w = 0 if kind in (DEPENDENCY, SYNC) or zero else int(self.node_ts[v] - self.node_ts[u])
        if weight is not None:
            w = weight
        self.src.append(u)
        self.dst.append(v)
        self.kind.append(kind)
        self.weight.append(w)
        self.attr.append(attr)

    def attribute(self, u: int, v: int, kind: str, parent: int) -> int:
        """HTA's attribution: a kernel gap to the kernel before; a start-to-anything edge to
        the starting event; an end-to-end edge to the ending one; end-to-start to the
        parent of the two."""
        if kind == KERNEL_GAP or self.node_start[u]:
            return int(self.node_ev[u])
        if not self.node_start[v]:
            return int(self.node_ev[v])
        return parent

    def shares_lock(self, u: int, v: int) -> bool:
        return bool(
            self.is_lock[self.node_ev[u]]
            and self.is_lock[self.node_ev[v]]
            and (self.node_start[u] or not self.node_start[v])
        )

    def runtime_lock(self) -> None:
        """Calls that hold the CUDA runtime lock run one at a time, in the order they end."""
        pending: list[int] = []
        last: int | None = None
        for n in np.flatnonzero(self.is_lock[self.node_ev]).tolist():
            if self.node_start[n]:
                pending.append(n)
            else:
                while pending:
                    p = pending.pop()
                    if self.node_ev[p] == self.node_ev[n]:
                        self.add(p, n, OPERATOR, attr=int(self.node_ev[n]))
                    else:
                        self.add(p, n, DEPENDENCY)
                if last is not None and not self.node_start[last]:
                    self.add(last, n, DEPENDENCY)
            last = n

    def call_stacks(self) -> None:
        df = self.full
        sub = df[self.clip & (df["stream"] == -1).to_numpy()]
        tids = sub["tid"].to_numpy().copy()
        fwd, bwd = self._thread_of(sub, "forward"), self._thread_of(sub, "autograd")
        if fwd is not None and bwd is not None and fwd != bwd:
            tids[tids == bwd] = fwd
        sub = sub.assign(tid=tids)
        gpu_threads = set(
            map(tuple, df.loc[self.clip & (df["stream"] > 0).to_numpy(), ["pid", "tid"]].values)
        )
        steps = sub.loc[sub["name"].str.startswith("ProfilerStep#"), "tid"].unique()
        main = int(steps[0]) if len(steps) == 1 else None
        for key, thread in sub.groupby(["pid", "tid"], sort=False):
            if tuple(key) in gpu_threads:
                continue
            self._stack(thread, main=main is not None and int(key[1]) == main)

    def _thread_of(self, sub: pd.DataFrame, word: str) -> int | None:
        hit = sub[sub["cat"].isin(["cpu_op", "user_annotation"]) & sub["name"].str.contains(word)]
        tids = hit["tid"].unique()
        return int(tids[0]) if len(tids) == 1 else None

    def _stack(self, thread: pd.DataFrame, *, main: bool = False) -> None:
        """One thread's nesting (HTA's call stack: events sorted by time, ends before starts
        at the same time, longer first), walked depth first."""
        idx = thread.index.to_numpy()
        st, en = thread["start_ns"].to_numpy(), thread["end_ns"].to_numpy()
        dur = thread["dur_ns"].to_numpy()
        n = len(idx)
        time = np.concatenate([st, en])
        is_start = np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)])
        k1 = np.concatenate([-dur, dur])
        k2 = np.concatenate([idx, -idx])
        who = np.concatenate([idx, idx])
        order = np.lexsort((k2, k1, is_start, time))
        parent: dict[int, int] = {}
        children: dict[int, list[int]] = defaultdict(list)
        stack: list[int] = []
        for o in order.tolist():
            e = int(who[o])
            if is_start[o]:
                p = stack[-1] if stack else -1
                parent[e] = p
                children[p].append(e)
                stack.append(e)
            elif stack:
                stack.pop()
        last: int | None = None
        depth = 0
        last_parent = -1

        def enter(e: int) -> None:
            nonlocal last, depth, last_parent
            s = self.start_node.get(e)
            if s is None:
                return
            if last is not None and not self.shares_lock(last, s):
                kind = DEPENDENCY if depth == 0 else OPERATOR
                if kind == DEPENDENCY and main and self.waits is not None:
                    # across ranks, time between the training thread's top-level ops is
                    # the rank's own (Python, a sleep) except where it waited for others
                    gap = (int(self.node_ts[last]), int(self.node_ts[s]))
                    waited = int(covered_in_windows(*self.waits, gap[0], gap[1])[0])
                    self.add(last, s, UNRECORDED, weight=max(0, gap[1] - gap[0] - waited))
                else:
                    self.add(last, s, kind, attr=self.attribute(last, s, kind, last_parent))
            last, last_parent = s, parent[e]
            depth += 1

        def leave(e: int) -> None:
            nonlocal last, depth, last_parent
            t = self.end_node.get(e)
            if t is None:
                return
            if last is not None and not self.shares_lock(last, t):
                self.add(
                    last,
                    t,
                    OPERATOR,
                    zero=bool(self.is_blocking[e]),
                    attr=self.attribute(last, t, OPERATOR, last_parent),
                )
            last, last_parent = t, parent[e]
            depth -= 1

        walk: list[tuple[int, int]] = [(-1, 0)]
        while walk:
            e, i = walk.pop()
            kids = children.get(e, [])
            if i == 0 and e >= 0:
                enter(e)
            if i < len(kids):
                walk.append((e, i + 1))
                walk.append((kids[i], 0))
            elif e >= 0:
                leave(e)

    def kernels(self) -> None:
        df = self.full
        link = df["link"].to_numpy()
        ts = df["start_ns"].to_numpy()
        queue = self._queue_lengths()
        records = self._event_records()
        waits = self._stream_waits()
        sel = (
            self.clip
            & ((df["stream"] != -1).to_numpy() | df["name"].isin(_DEVICE_SYNCS).to_numpy())
            & (link >= 0)
        )
        k = df[sel]
        sort_by = np.where(k["cat"] == "cuda_sync", k["end_ns"], k["start_ns"])
        k = k.iloc[np.lexsort((k["ev"].to_numpy(), sort_by))]
        last: dict[tuple[int, int], int] = {}
        pending: dict[int, int] = {}
        for row in k.itertuples():
            e, stream, name = int(row.Index), (int(row.pid), int(row.stream)), row.name
            if row.cat == "cuda_sync":
                self._sync(row, e, name, last, pending, records, waits)
                continue
            s, t = self.start_node.get(e), self.end_node.get(e)
            if s is None or t is None:
                continue
            self.add(s, t, OPERATOR, attr=e)
            sync_src = pending.pop(e, None)
            sync_end = self.end_node.get(sync_src) if sync_src is not None else None
            if sync_end is not None:
                self.add(sync_end, s, SYNC)
            runtime = int(link[e])
            prev = last.get(stream)
            if (
                queue.get(runtime) == 1
                and queue.get(e) == 0
                and (prev is None or self.node_ts[prev] < ts[runtime])
                and (sync_end is None or self.node_ts[sync_end] < ts[runtime])
                and runtime in self.start_node
            ):
                self.add(self.start_node[runtime], s, LAUNCH)
            elif (
                prev is not None
                and self.node_ts[s] - self.node_ts[prev] < KERNEL_GAP_MAX_NS
                and (sync_end is None or self.node_ts[sync_end] < self.node_ts[prev])
            ):
                self.add(prev, s, KERNEL_GAP, attr=int(self.node_ev[prev]))
            last[stream] = t

    def _sync(
        self,
        row: Any,
        e: int,
        name: str,
        last: dict[tuple[int, int], int],
        pending: dict[int, int],
        records: dict[int, int],
        waits: dict[int, int],
    ) -> None:
        link = self.full["link"].to_numpy()
        cpu_end = self.end_node.get(int(link[e]))
        if name in ("Stream Wait Event", "Event Sync"):
            prev_launch = records.get(int(row.wait_on_correlation), -1)
            if prev_launch < 0:
                return
            src_kernel = int(link[prev_launch])
            if name == "Stream Wait Event":
                dest_launch = waits.get(int(link[e]), -1)
                if dest_launch >= 0:
                    pending[int(link[dest_launch])] = src_kernel
            elif src_kernel in self.end_node and cpu_end is not None:
                self.add(self.end_node[src_kernel], cpu_end, SYNC)
            return
        if cpu_end is None:
            return
        if name == "Context Sync":
            ends = list(last.values())
        elif name == "Stream Sync":
            ends = [n for (pid, s), n in last.items() if s == int(row.stream)]
        else:
            return
        for n in ends:
            self.add(n, cpu_end, SYNC)

    def _launches(self) -> pd.DataFrame:
        """Launch calls (full trace) with the device and stream of what they launched."""
        df = self.full
        link = df["link"].to_numpy()
        launch = df[df["name"].isin(_LAUNCHES).to_numpy() & (link >= 0)]
        target = link[launch.index.to_numpy()]
        ok = (df["stream"].to_numpy()[target] != -1) if len(target) else np.zeros(0, bool)
        launch = launch[ok].copy()
        target = target[ok]
        launch["gpu"] = df["pid"].to_numpy()[target]
        launch["kstream"] = df["stream"].to_numpy()[target]
        return launch.sort_values("start_ns", kind="stable")

    def _queue_lengths(self) -> dict[int, int]:
        """Outstanding launches per stream after each launch (+1) and each kernel start
        (-1): HTA's queue length, read at a kernel and at its launch call."""
        launch = self._launches()
        if launch.empty:
            return {}
        df = self.full
        link = df["link"].to_numpy()
        kern = link[launch.index.to_numpy()]
        both = pd.DataFrame(
            {
                "row": np.concatenate([launch.index.to_numpy(), kern]),
                "ts": np.concatenate(
                    [launch["start_ns"].to_numpy(), df["start_ns"].to_numpy()[kern]]
                ),
                "d": np.concatenate([np.ones(len(kern), np.int64), -np.ones(len(kern), np.int64)]),
                "gpu": np.tile(launch["gpu"].to_numpy(), 2),
                "s": np.tile(launch["kstream"].to_numpy(), 2),
            }
        ).sort_values("ts", kind="stable")
        both["q"] = both.groupby(["gpu", "s"])["d"].cumsum()
        return dict(zip(both["row"].tolist(), both["q"].tolist(), strict=True))

    def _event_records(self) -> dict[int, int]:
        """Per ``cudaEventRecord`` correlation: the launch call of the last kernel enqueued
        on the recorded stream (device and stream from the waits on that event) before it."""
        df = self.full
        waits = df[df["wait_on_stream"] > -1]
        rec_stream = (
            waits[["wait_on_correlation", "wait_on_stream", "pid"]]
            .drop_duplicates("wait_on_correlation")
            .set_index("wait_on_correlation")
        )
        recs = df[(df["name"] == "cudaEventRecord") & df["correlation"].isin(rec_stream.index)]
        if recs.empty:
            return {}
        launch = self._launches()
        out: dict[int, int] = {}
        groups = {k: g for k, g in launch.groupby(["gpu", "kstream"])}
        for r in recs.itertuples():
            gpu, stream = rec_stream.loc[r.correlation, ["pid", "wait_on_stream"]]
            g = groups.get((int(gpu), int(stream)))
            if g is None:
                continue
            i = int(np.searchsorted(g["start_ns"].to_numpy(), r.start_ns, side="right")) - 1
            if i >= 0:
                out[int(r.correlation)] = int(g.index[i])
        return out

    def _stream_waits(self) -> dict[int, int]:
        """Per ``cudaStreamWaitEvent`` call: the next launch from its thread onto the
        stream that waits."""
        df = self.full
        link = df["link"].to_numpy()
        calls = df[(df["name"] == "cudaStreamWaitEvent").to_numpy() & (link >= 0)]
        if calls.empty:
            return {}
        launch = self._launches()
        groups = {k: g for k, g in launch.groupby(["pid", "tid", "kstream"])}
        out: dict[int, int] = {}
        for c in calls.itertuples():
            stream = int(df["stream"].to_numpy()[link[c.Index]])
            g = groups.get((int(c.pid), int(c.tid), stream))
            if g is None:
                continue
            i = int(np.searchsorted(g["start_ns"].to_numpy(), c.start_ns, side="left"))
            if i < len(g):
                out[int(c.Index)] = int(g.index[i])
        return out

    def host_collective_edges(self) -> None:
        """A host collective on a worker thread: from the start of the op that issued it
        (the last ``c10d::`` / ``record_param_comms`` op of another thread that started
        before it), and to the issuing thread's first op after it ends."""
        df = self.full
        if not self.is_host_coll.any():
            return
        issuers = df[
            self.clip
            & (df["stream"] == -1).to_numpy()
            & df["name"].str.match(_ISSUER_RE).to_numpy()
            & df.index.isin(list(self.start_node))
        ].sort_values("start_ns", kind="stable")
        starts_by_tid: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for e in np.flatnonzero(self.is_host_coll & self.clip).tolist():
            if e not in self.start_node:
                continue
            other = issuers[
                (issuers["tid"] != df.at[e, "tid"]) & (issuers["start_ns"] <= df.at[e, "start_ns"])
            ]
            if other.empty:
                continue
            who = int(other.index[-1])
            self.add(self.start_node[who], self.start_node[e], SYNC)
            tid = int(df.at[who, "tid"])
            if tid not in starts_by_tid:
                mine = [n for r, n in self.start_node.items() if df.at[r, "tid"] == tid]
                mine.sort(key=lambda n: self.node_ts[n])
                arr = np.array(mine, dtype=np.int64)
                starts_by_tid[tid] = (self.node_ts[arr] if len(arr) else np.zeros(0, np.int64), arr)
            ts, nodes = starts_by_tid[tid]
            i = int(np.searchsorted(ts, df.at[e, "end_ns"], side="left"))
            if i < len(nodes):
                self.add(self.end_node[e], int(nodes[i]), SYNC)

    def graph(self, rank: int) -> RankGraph:
        w = np.asarray(self.weight, dtype=np.int64)
        edges = pd.DataFrame(
            {
                "src": np.asarray(self.src, dtype=np.int64),
                "dst": np.asarray(self.dst, dtype=np.int64),
                "weight": np.clip(w, 0, None),
                "kind": self.kind,
                "event": np.asarray(self.attr, dtype=np.int64),
            }
        )
        edges["category"] = self._categories(edges)
        return RankGraph(
            rank=rank,
            events=self.full,
            node_ts=self.node_ts,
            node_ev=self.node_ev,
            node_start=self.node_start,
            start_node=self.start_node,
            end_node=self.end_node,
            edges=edges,
            negative_edges=int((w < 0).sum()),
        )

    def _categories(self, edges: pd.DataFrame) -> np.ndarray:
        df = self.full
        out = np.full(len(edges), None, dtype=object)
        kind = edges["kind"].to_numpy(object)
        out[kind == LAUNCH] = "kernel_launch"
        out[kind == UNRECORDED] = "unrecorded"
        out[kind == KERNEL_GAP] = "gpu_gap"
        op = (kind == OPERATOR) & (edges["event"].to_numpy() >= 0)
        ev = edges["event"].to_numpy()[op]
        stream = df["stream"].to_numpy()[ev]
        klass = classify(pd.Series(self.names[ev]))["kernel_class"].to_numpy()
        cat = np.where(
            stream < 0,
            np.where(
                self.is_host_coll[ev],
                "communication",
                np.where(self.is_dl[ev], "data_loading", "cpu"),
            ),
            np.where(
                klass == COMMUNICATION,
                "gpu_communication",
                np.where(klass == MEMORY, "gpu_memory", "gpu_compute"),
            ),
        )
        out[op] = cat
        out[(kind == OPERATOR) & (edges["event"].to_numpy() < 0)] = "cpu"
        return out


def rank_graph(
    events: pa.Table,
    window: tuple[int, int],
    *,
    rank: int = 0,
    data_loading: re.Pattern[str] | None = None,
    host_collectives: pd.DataFrame | None = None,
) -> RankGraph:
    """One rank's graph over ``window`` (ns, inclusive), as the module docstring defines it.

    ``data_loading``: the names that count as data loading (nodes, category
    ``data_loading``; HTA's ``data_load_events``); ``host_collectives``: ``start_ns,
    end_ns`` of the rank's host collectives (nodes, with their issue and completion edges)."""
    return _graph(_frame(events), window, rank, data_loading, host_collectives)


def _graph(
    df: pd.DataFrame,
    window: tuple[int, int],
    rank: int,
    data_loading: re.Pattern[str] | None,
    host_collectives: pd.DataFrame | None,
    waits: tuple[np.ndarray, np.ndarray] | None = None,
) -> RankGraph:
    b = _Builder(df, window, data_loading, host_collectives, waits)
    b.runtime_lock()
    b.call_stacks()
    b.kernels()
    b.host_collective_edges()
    return b.graph(rank)


# -- the longest path ---------------------------------------------------------------------


def _topological(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Kahn's order of ``n`` nodes, or None when the edges close a cycle."""
    indeg = np.bincount(dst, minlength=n)
    order = np.argsort(src, kind="stable")
    s_sorted, d_sorted = src[order], dst[order]
    first = np.searchsorted(s_sorted, np.arange(n + 1))
    ready = list(np.flatnonzero(indeg == 0)[::-1])
    out = np.empty(n, dtype=np.int64)
    k = 0
    indeg = indeg.tolist()
    firsts = first.tolist()
    d_list = d_sorted.tolist()
    while ready:
        u = int(ready.pop())
        out[k] = u
        k += 1
        for v in d_list[firsts[u] : firsts[u + 1]]:
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(v)
    return out if k == n else None


def _longest(
    n: int, topo: np.ndarray, src: np.ndarray, dst: np.ndarray, weight: np.ndarray
) -> tuple[int, list[int]]:
    """Length and edges (indices) of the longest path, by dynamic programming over ``topo``."""
    order = np.argsort(dst, kind="stable")
    first = np.searchsorted(dst[order], np.arange(n + 1)).tolist()
    dist = [0] * n
    via = [-1] * n
    s_list, w_list, o_list = src.tolist(), weight.tolist(), order.tolist()
    for v in topo.tolist():
        best, arg = 0, -1
        for j in o_list[first[v] : first[v + 1]]:
            d = dist[s_list[j]] + w_list[j]
            if d > best or (arg < 0 and d >= best):
                best, arg = d, j
        dist[v], via[v] = best, arg
    if n == 0:
        return 0, []
    end = int(np.argmax(dist))
    path: list[int] = []
    v = end
    while via[v] >= 0:
        path.append(via[v])
        v = s_list[via[v]]
    return int(dist[end]), path[::-1]


@dataclass
class CriticalPath:
    """One rank's critical path over a window.

    ``segments``: one row per path edge, in order (``rank, start_ns, end_ns, dur_ns, kind,
    category, name`` of the attributed event, ``stream``); ``composition``: per category
    (``category, ns, pct``); ``length_ns``: the path's length; ``ok``: False when the graph
    had a cycle (no path; HTA fails there too)."""

    rank: int
    window: tuple[int, int]
    length_ns: int
    segments: pd.DataFrame
    composition: pd.DataFrame
    ok: bool = True
    negative_edges: int = 0


def _segments(g: RankGraph, edge_idx: list[int], edges: pd.DataFrame) -> pd.DataFrame:
    e = edges.iloc[edge_idx]
    ev = e["event"].to_numpy()
    names = g.events["name"].to_numpy(object)
    streams = g.events["stream"].to_numpy()
    return pd.DataFrame(
        {
            "rank": np.full(len(e), g.rank, dtype=np.int64),
            "start_ns": g.node_ts[e["src"].to_numpy()],
            "end_ns": g.node_ts[e["dst"].to_numpy()],
            "dur_ns": e["weight"].to_numpy(np.int64),
            "kind": e["kind"].to_numpy(object),
            "category": e["category"].to_numpy(object),
            "name": np.where(ev >= 0, names[np.clip(ev, 0, None)], None),
            "stream": np.where(ev >= 0, streams[np.clip(ev, 0, None)], -1),
        }
    )


def _composition(segments: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    seg = segments[segments["category"].notna() & (segments["dur_ns"] > 0)]
    out = seg.groupby([*by, "category"], sort=False)["dur_ns"].sum().rename("ns").reset_index()
    total = float(segments["dur_ns"].sum())
    out["pct"] = 100.0 * out["ns"] / total if total > 0 else 0.0
    out["order"] = out["category"].map({c: i for i, c in enumerate(CATEGORIES)})
    return out.sort_values([*by, "order"], ignore_index=True).drop(columns="order")


def critical_path(
    events: pa.Table,
    window: tuple[int, int],
    *,
    rank: int = 0,
    data_loading: re.Pattern[str] | None = None,
) -> CriticalPath:
    """One rank's critical path over ``window`` (HTA's definition, module docstring)."""
    g = rank_graph(events, window, rank=rank, data_loading=data_loading)
    return _path_of(g, window)


def step_paths(
    rank_events: Any,
    steps: pd.DataFrame,
    *,
    data_loading: re.Pattern[str] | None = None,
    step: int | None = None,
) -> pd.DataFrame:
    """Each rank's critical path per step (or ``step``'s only), one rank read at a time.

    ``rank_events``: a callable from a rank to its event table; ``steps``: rank, step,
    start_ns, dur_ns. Columns: ``rank, step, length_ns, category, ns, pct`` (one row per
    category on the path; a step whose graph had a cycle has none)."""
    cols = ["rank", "step", "length_ns", "category", "ns", "pct"]
    rows = []
    for rank in sorted(steps["rank"].unique()):
        mine = steps[steps["rank"] == rank]
        if step is not None:
            mine = mine[mine["step"] == step]
        if mine.empty:
            continue
        frame = _frame(rank_events(int(rank)))
        for row in mine.itertuples():
            w = (int(row.start_ns), int(row.start_ns + row.dur_ns))
            cp = _path_of(_graph(frame, w, int(rank), data_loading, None), w)
            if cp.ok:
                rows.append(
                    cp.composition.assign(
                        rank=int(rank), step=int(row.step), length_ns=cp.length_ns
                    )
                )
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.concat(rows, ignore_index=True)[cols]


def _path_of(g: RankGraph, window: tuple[int, int]) -> CriticalPath:
    n = len(g.node_ts)
    src, dst = g.edges["src"].to_numpy(), g.edges["dst"].to_numpy()
    topo = _topological(n, src, dst)
    empty = pd.DataFrame(columns=["category", "ns", "pct"])
    if topo is None:
        return CriticalPath(g.rank, window, 0, _segments(g, [], g.edges), empty, ok=False)
    length, idx = _longest(n, topo, src, dst, g.edges["weight"].to_numpy())
    seg = _segments(g, idx, g.edges)
    return CriticalPath(
        g.rank, window, length, seg, _composition(seg, []), negative_edges=g.negative_edges
    )


# -- across ranks ---------------------------------------------------------------------------


@dataclass
class CrossRankCriticalPath:
    """The step's critical path across ranks.

    ``segments``: the path's edges in order (as :class:`CriticalPath`'s, with ``step``;
    ``kind`` "collective" where the path crosses from the rank it waited for);
    ``composition``: per rank and category (``step, rank, category, ns, pct``);
    ``length_ns``: per step; ``slack``: per step, rank and category on the path
    (``slack_ns``: how much the path shortens with that time at zero)."""

    segments: pd.DataFrame
    composition: pd.DataFrame
    length_ns: pd.Series
    slack: pd.DataFrame
    ok: dict[int, bool] = field(default_factory=dict)


def cross_rank_critical_path(
    graphs: dict[int, RankGraph], calls: pd.DataFrame, matches: pd.DataFrame, *, step: int
) -> tuple[pd.DataFrame, int, pd.DataFrame, bool]:
    """One step's path over the ranks' graphs joined at their matched collectives.

    ``graphs``: each rank's :func:`rank_graph` over its step window (host collectives as
    nodes); ``calls``/``matches``: :class:`~analyzer.analyses.cross_rank.CrossRank`'s,
    clock-corrected, with ``offset_ns`` per call row (the rank's clock offset). Returns the
    path's segments, its length, the slack per (rank, category) and whether it was found.
    """
    ranks = sorted(graphs)
    base: dict[int, int] = {}
    n = 0
    parts = []
    for r in ranks:
        base[r] = n
        e = graphs[r].edges.copy()
        e["src"] += n
        e["dst"] += n
        e["rank"] = r
        parts.append(e)
        n += len(graphs[r].node_ts)
    edges = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    node_ts = np.concatenate([graphs[r].node_ts for r in ranks]) if ranks else np.zeros(0)
    node_rank = np.concatenate([np.full(len(graphs[r].node_ts), r) for r in ranks])
    extra = []
    # no matched collective in the step (a pipeline's send/recv, one rank): no joins
    c = calls[calls["step"] == step] if "_key" in calls and not calls.empty else calls.iloc[:0]
    last_arrival = matches.set_index("_key")["last_arrival_ns"] if "_key" in matches else None
    for key, rows in c.groupby("_key") if len(c) else ():
        last = int(rows["last_rank"].iloc[0])
        la = (
            int(last_arrival.loc[key])
            if last_arrival is not None
            else int(rows["arrival_ns"].max())
        )
        ends: dict[int, tuple[int, int, int]] = {}
        for row in rows.itertuples():
            g = graphs.get(int(row.rank))
            if g is None:
                continue
            ev = _event_at(g, int(row.arrival_ns + row.offset_ns), int(row.end_ns + row.offset_ns))
            if ev is None:
                continue
            s, t = g.start_node[ev] + base[row.rank], g.end_node[ev] + base[row.rank]
            transfer = max(0, int(row.end_ns) - max(int(row.arrival_ns), la))
            # the rank's own call: its transfer, never its wait
            own = (edges["src"] == s) & (edges["dst"] == t) & (edges["kind"] == OPERATOR)
            edges.loc[own, "weight"] = transfer
            ends[int(row.rank)] = (s, t, transfer)
        if last not in ends:
            continue
        s_last = ends[last][0]
        for r, (_, t, transfer) in ends.items():
            if r != last:
                cat = (
                    "gpu_communication"
                    if graphs[r].events["stream"].to_numpy()[graphs[r].node_ev[t - base[r]]] >= 0
                    else "communication"
                )
                extra.append((s_last, t, transfer, "collective", cat, -1, r))
    if extra:
        edges = pd.concat(
            [
                edges,
                pd.DataFrame(
                    extra, columns=["src", "dst", "weight", "kind", "category", "event", "rank"]
                ),
            ],
            ignore_index=True,
        )
    src, dst = edges["src"].to_numpy(np.int64), edges["dst"].to_numpy(np.int64)
    weight = edges["weight"].to_numpy(np.int64)
    topo = _topological(n, src, dst)
    if topo is None:
        return pd.DataFrame(), 0, pd.DataFrame(columns=["rank", "category", "slack_ns"]), False
    length, idx = _longest(n, topo, src, dst, weight)
    path = edges.iloc[idx]
    seg = pd.DataFrame(
        {
            "step": step,
            "rank": path["rank"].to_numpy(np.int64),
            "start_ns": node_ts[path["src"].to_numpy()],
            "end_ns": node_ts[path["dst"].to_numpy()],
            "dur_ns": path["weight"].to_numpy(np.int64),
            "kind": path["kind"].to_numpy(object),
            "category": path["category"].to_numpy(object),
            "name": [
                graphs[int(r)].events["name"].to_numpy(object)[int(e)] if e >= 0 else None
                for r, e in zip(path["rank"], path["event"], strict=True)
            ],
        }
    )
    del node_rank
    slack_rows = []
    on_path = seg[seg["dur_ns"] > 0].groupby(["rank", "category"])["dur_ns"].sum()
    for (r, cat), _ in on_path.items():
        w2 = np.where((edges["rank"] == r) & (edges["category"] == cat), 0, weight)
        shorter, _ = _longest(n, topo, src, dst, w2.astype(np.int64))
        slack_rows.append((int(r), cat, length - shorter))
    slack = pd.DataFrame(slack_rows, columns=["rank", "category", "slack_ns"])
    return seg, length, slack, True


def _event_at(g: RankGraph, start: int, end: int) -> int | None:
    """The node event of ``g`` that starts at ``start`` (and ends at ``end``, if several)."""
    df = g.events
    hits = df.index[(df["start_ns"] == start).to_numpy()]
    hits = [int(h) for h in hits if int(h) in g.start_node]
    if not hits:
        return None
    exact = [h for h in hits if int(df.at[h, "end_ns"]) == end]
    return (exact or hits)[0]


def cross_rank_steps(
    rank_events: Any,
    steps: pd.DataFrame,
    calls: pd.DataFrame,
    matches: pd.DataFrame,
    offsets: pd.DataFrame,
    *,
    data_loading: re.Pattern[str] | None = None,
    step: int | None = None,
) -> CrossRankCriticalPath:
    """Every step's (or ``step``'s) cross-rank path. ``rank_events``: a callable from a rank
    to its event table (one rank read at a time); ``steps``: rank, step, start_ns, dur_ns."""
    calls = calls.copy()
    off = offsets.set_index("rank")["offset_ns"] if not offsets.empty else pd.Series(dtype=int)
    calls["offset_ns"] = calls["rank"].map(off).fillna(0).astype(np.int64)
    want = sorted(steps["step"].unique()) if step is None else [step]
    graphs: dict[int, dict[int, RankGraph]] = defaultdict(dict)
    for rank in sorted(steps["rank"].unique()):
        frame = _frame(rank_events(int(rank)))
        mine = steps[(steps["rank"] == rank) & steps["step"].isin(want)]
        host = calls[(calls["rank"] == rank) & (calls["device"] == "cpu")]
        host = pd.DataFrame(
            {
                "start_ns": host["arrival_ns"] + host["offset_ns"],
                "end_ns": host["end_ns"] + host["offset_ns"],
            }
        )
        # the rank's waits at matched collectives, on its own clock: from its arrival to the
        # last rank's (the time between its top-level ops that is not its own work)
        own = calls[calls["rank"] == rank]
        lo = (own["arrival_ns"] + own["offset_ns"]).to_numpy(np.int64)
        waits = merge_intervals(lo, lo + own["wait_ns"].fillna(0).to_numpy(np.int64))
        for row in mine.itertuples():
            w = (int(row.start_ns), int(row.start_ns + row.dur_ns))
            graphs[int(row.step)][int(rank)] = _graph(
                frame, w, int(rank), data_loading, host, waits
            )
    segs, lengths, slacks, oks = [], {}, [], {}
    for s in want:
        if s not in graphs:
            continue
        seg, length, slack, ok = cross_rank_critical_path(graphs[s], calls, matches, step=int(s))
        oks[int(s)] = ok
        if not ok:
            continue
        lengths[int(s)] = length
        segs.append(seg)
        slacks.append(slack.assign(step=int(s)))
    seg_all = pd.concat(segs, ignore_index=True) if segs else pd.DataFrame()
    comp = _composition(seg_all, ["step", "rank"]) if segs else pd.DataFrame()
    if not comp.empty:
        total = comp["step"].map(lengths)
        comp["pct"] = 100.0 * comp["ns"] / total.where(total > 0)
    slack_all = (
        pd.concat(slacks, ignore_index=True)[["step", "rank", "category", "slack_ns"]]
        if slacks
        else pd.DataFrame(columns=["step", "rank", "category", "slack_ns"])
    )
    return CrossRankCriticalPath(
        segments=seg_all,
        composition=comp,
        length_ns=pd.Series(lengths, name="length_ns", dtype="int64"),
        slack=slack_all.sort_values(
            ["step", "slack_ns"], ascending=[True, False], ignore_index=True
        ),
        ok=oks,
    )

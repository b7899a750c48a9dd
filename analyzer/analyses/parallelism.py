"""Communication by parallel dimension: which process group carries what, what each costs,
the FSDP all-gathers that prefetching should hide, and pipeline bubbles.

Why: a sharded or model-parallel job's communication is not one bucket. Its data-parallel
gradient all-reduce, FSDP/ZeRO parameter all-gathers and gradient reduce-scatters, tensor-
parallel all-reduces inside every layer, pipeline send/recv and expert all-to-all each
have their own fix (prefetching, bucket sizes, more micro-batches, a better split). This
module measures each process group on its own and says which dimension it is.

Like :mod:`analyzer.analyses.cross_rank` it is a map over ranks and a small reduce:

* the map (per rank, beside :func:`~analyzer.analyses.cross_rank.collective_arrivals`,
  whose rows it reads): :func:`group_activity` (per rank, group and op: calls, time,
  exposed time, sizes), :func:`fsdp_units` (each FSDP all-gather with the unit it
  unshards and how much of it no computation hid), :func:`reduction_tails` (per step, the
  gradient reduction left running after the last backward computation) and
  :func:`stage_steps` (per step of a rank that sends and receives: its compute and its
  idle time);
* the reduce: :func:`classify_groups`, :func:`group_summary`, :func:`dimension_summary`,
  :func:`pipeline_bubbles`, :func:`fsdp_exposure`: a few rows per rank, never events.

Definitions:

* **Computation** (what can hide communication): on a GPU trace, the COMPUTATION kernels
  (:mod:`analyzer.analyses.kernel_classes`), as in HTA's communication/computation overlap;
  for collectives that run on the host (gloo, MPI), the rank's CPU operators (``cpu_op``)
  that are not communication (``c10d::``, ``record_param_comms``, library calls) nor the
  autograd engine's wrappers (``autograd::engine::evaluate_function: ...``, which enclose
  a backward op and the hooks that run with it, FSDP's all-gather waits among them).
* **Time** of a group on a rank: the union of its calls' intervals (arrival to end, as
  :mod:`analyzer.analyses.cross_rank` defines them); **exposed**: the part of that union no
  computation overlaps (HTA's exposed communication, per group). Only calls inside the
  rank's profiled steps count where the rank has steps, so ``share_pct`` (exposed time over
  the rank's step time) is a share of the steps.
* **Phase** of a call: *forward* when it arrives before the step's first autograd
  operator (``autograd::engine::evaluate_function``), *backward* from there until the
  optimizer (``Optimizer.step``), *other* after it or where the step has no backward.
* **Dimension** of a group, in this order of evidence: the rule file names it
  (``[parallelism] groups``); the group's description names it (a ``DeviceMesh`` dimension,
  ``mesh_tp``, ``mesh_dp_shard``, ...; Megatron/DeepSpeed names such as ``tensor`` or
  ``expert``); its ops: send/recv only → **pipeline**; all-to-all → **expert**; all-gather
  with reduce-scatter, or with FSDP's annotations on its ranks → **fsdp** (FSDP / ZeRO
  sharding; gloo runs FSDP's reduce-scatter as an all-reduce); all-reduce in the forward
  → **tensor** (a tensor-parallel layer reduces its output in the forward; gradients are
  reduced only in the backward); all-reduce otherwise → **data**; else **other**.
* **FSDP unit exposure**: FSDP2 marks each unit's parameter all-gather
  (``FSDP::all_gather (i)``, inside ``FSDP::pre_forward (i)``, ``FSDP::forward_prefetch for
  i``, ``FSDP::pre_backward (i)`` or ``FSDP::backward_prefetch for i``); the k-th of those
  marks on a rank issues the rank's k-th all-gather (in the group's sequence where the
  Flight Recorder numbers it, else in enqueue order). A unit's exposed all-gather is the
  part of that call no computation hid: with prefetching it runs while the previous unit
  computes, without it the unit waits for all of it.
* **Reduction tail**: per step, the gradient reductions (reduce-scatter, or all-reduce,
  arriving in the backward phase) still running after the rank's last computation before
  the last of them ends: the time the optimizer waits for gradients.
* **Pipeline stage**: a rank of a pipeline group; its stage is its place in the group's
  ranks, ``p`` the group's size. Per step, **bubble** = the step's time in which the
  stage computes nothing (it waits for activations or gradients, or its sends), the
  standard definition of a pipeline bubble (idle time of a stage); ``bubble_pct`` its share
  of the step. The **ideal** bubble of GPipe and 1F1B with ``p`` stages and ``m``
  micro-batches is ``(p - 1) / (m + p - 1)`` (GPipe, Huang et al. 2019; PipeDream-Flush /
  1F1B, Narayanan et al. 2021); interleaved schedules lower it and are not told apart here.
  ``m`` comes from the schedule's own marks (``Forward i``, ``PP:<stage>F<i>``), else from
  the receives per step (a stage receives one activation and one gradient per micro-batch;
  the first and last stages one of the two).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.analyses.communication import P2P_OPS
from analyzer.analyses.gpu_kernels import gpu_events, kineto_events_table
from analyzer.analyses.intervals import covered_in_windows, merge_intervals
from analyzer.analyses.kernel_classes import COMMUNICATION, COMPUTATION, classify
from analyzer.dimensions import DIMENSION_LABELS, DIMENSIONS

__all__ = [
    "DIMENSIONS",
    "DIMENSION_LABELS",
    "P2P_OPS",
    "RankSpans",
    "classify_groups",
    "dimension_summary",
    "fsdp_exposure",
    "fsdp_units",
    "group_activity",
    "group_summary",
    "parallelism_map",
    "pipeline_bubbles",
    "reduction_tails",
    "stage_steps",
    "stage_timeline",
]

#: a group's description naming its dimension (DeviceMesh's ``mesh_<dim>``, Megatron's and
#: DeepSpeed's group names); first match wins, so ``dp_shard`` is FSDP before ``dp`` is data
_DESC_DIMENSIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)(dp_shard|fsdp|shard|zero|hsdp_shard)"), "fsdp"),
    (re.compile(r"(?i)(^|[_\W])(tp|tensor|model_parallel|mp)($|[_\W])"), "tensor"),
    (re.compile(r"(?i)(^|[_\W])(pp|pipe|pipeline)($|[_\W])"), "pipeline"),
    (re.compile(r"(?i)(^|[_\W])(ep|expert|moe)($|[_\W])"), "expert"),
    (re.compile(r"(?i)(^|[_\W])(cp|context)($|[_\W])"), "context"),
    (re.compile(r"(?i)(^|[_\W])(dp|replicate|data|data_parallel|ddp)($|[_\W])"), "data"),
]  # fmt: skip
_BACKWARD_RE = re.compile(r"^autograd::engine::evaluate_function")
_OPTIMIZER_RE = re.compile(r"^Optimizer\.step#")
_FSDP_MARK_RE = re.compile(r"^(FSDP::|FullyShardedDataParallel\.)")
_FSDP_GATHER_RE = re.compile(r"^FSDP::all_gather \((\d+)\)$")
_FSDP_BACKWARD_RE = re.compile(r"^FSDP::(pre_backward|backward_prefetch)")
_FSDP_PHASE_RE = re.compile(r"^FSDP::(pre_forward|forward_prefetch|pre_backward|backward_prefetch)")
_MICROBATCH_RE = re.compile(r"^(?:Forward (\d+)$|PP:\d+F(\d+)$)")
#: host operators that are not computation: communication calls, and the autograd engine's
#: wrappers, which hold a backward op *and* the hooks that run with it (FSDP waits for its
#: all-gathers inside them; the ops themselves are recorded inside the wrapper)
_NOT_COMPUTE = ("c10d::", "record_param_comms", "gloo:", "nccl:", "mpi:", "autograd::engine::")

ACTIVITY_COLUMNS = [
    "rank", "group", "op", "device", "calls", "steps", "step_ns", "time_ns", "exposed_ns",
    "forward_calls", "backward_calls", "sized_calls", "total_bytes", "min_bytes",
    "max_bytes", "sized_busy_ns", "fsdp_marks", "group_time_ns", "group_exposed_ns",
]  # fmt: skip
UNIT_COLUMNS = ["rank", "step", "group", "unit", "phase", "arrival_ns", "time_ns", "exposed_ns"]
TAIL_COLUMNS = ["rank", "step", "calls", "last_end_ns", "tail_ns", "reduction_ns"]
STAGE_COLUMNS = [
    "rank", "group", "step", "step_ns", "compute_ns", "bubble_ns", "p2p_exposed_ns",
    "sends", "recvs", "microbatches",
]  # fmt: skip


def _empty(cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})


# -- the map ------------------------------------------------------------------------------


def _spans(table: pa.Table, rank: int, gpu: pd.DataFrame) -> dict[str, Any]:
    """One rank's computation intervals (merged) on the GPU and on the host, its step
    phases, and the few marks the map reads by name (FSDP's all-gathers, the pipeline
    schedule's micro-batches). Names are tested once per distinct name (the column is
    dictionary-encoded), never once per event."""
    from analyzer.analyses.steps import _matching

    rt = table.filter(pc.equal(table.column("rank"), rank))
    name = rt.column("name")
    starts = rt.column("start_ns").to_numpy(zero_copy_only=False)
    durs = np.nan_to_num(rt.column("dur_ns").to_numpy(zero_copy_only=False).astype(float))
    ends = starts + durs.astype(np.int64)
    is_comm = (classify(name)["kernel_class"] == COMMUNICATION).to_numpy()
    not_compute = _matching(name, lambda n: n.startswith(_NOT_COMPUTE))
    host = _matching(rt.column("cat"), lambda c: c == "cpu_op") & ~is_comm & ~not_compute
    g = gpu[(gpu["rank"] == rank) & (gpu["kernel_class"] == COMPUTATION)]
    backward = _matching(name, lambda n: bool(_BACKWARD_RE.match(n)))
    optimizer = _matching(name, lambda n: bool(_OPTIMIZER_RE.match(n)))
    marks = _matching(name, lambda n: bool(_FSDP_MARK_RE.match(n)))
    named = _matching(
        name,
        lambda n: bool(
            _FSDP_GATHER_RE.match(n) or _FSDP_PHASE_RE.match(n) or _MICROBATCH_RE.match(n)
        ),
    )
    return {
        "host": merge_intervals(starts[host], ends[host]),
        "gpu": merge_intervals(g["start_ns"].to_numpy(np.int64), g["end_ns"].to_numpy(np.int64)),
        "backward_starts": np.sort(starts[backward]),
        "optimizer_starts": np.sort(starts[optimizer]),
        # the marks the map reads by name: (name, start, end), few per step
        "names": name.filter(pa.array(named)).cast(pa.string()).to_numpy(zero_copy_only=False),
        "starts": starts[named],
        "ends": ends[named],
        "fsdp_marks": int(marks.sum()),
    }


class RankSpans:
    """Each rank's :func:`_spans`, computed once for the four map functions (the GPU events
    are classified once per task, not once per function)."""

    def __init__(self, source: Any) -> None:
        self.table = kineto_events_table(source)
        self._gpu: pd.DataFrame | None = None
        self._source = source
        self._done: dict[int, dict[str, Any]] = {}

    def __call__(self, rank: int) -> dict[str, Any]:
        if rank not in self._done:
            if self._gpu is None:
                self._gpu = gpu_events(self._source, scope="all")
            self._done[rank] = _spans(self.table, rank, self._gpu)
        return self._done[rank]


def parallelism_map(
    source: Any, arrivals: pd.DataFrame, steps: pd.DataFrame | None = None
) -> dict[str, pd.DataFrame]:
    """The whole map for some ranks: :func:`group_activity`, :func:`fsdp_units`,
    :func:`reduction_tails` and :func:`stage_steps`, sharing one pass over the events."""
    spans = RankSpans(source)
    return {
        "group_activity": group_activity(source, arrivals, steps, spans=spans),
        "fsdp_units": fsdp_units(source, arrivals, steps, spans=spans),
        "reduction_tails": reduction_tails(source, arrivals, steps, spans=spans),
        "stage_steps": stage_steps(source, arrivals, steps, spans=spans),
    }


def _exposed(lo: np.ndarray, hi: np.ndarray, comp: tuple[np.ndarray, np.ndarray]) -> int:
    """Length of the union ``[lo, hi)`` minus the computation ``comp`` (merged)."""
    if len(lo) == 0:
        return 0
    a, b = merge_intervals(lo, hi)
    return int((b - a).sum() - covered_in_windows(comp[0], comp[1], a, b).sum())


def _phases(
    t: np.ndarray, step_start: np.ndarray, step_end: np.ndarray, sp: dict[str, Any]
) -> np.ndarray:
    """Each time's phase in its step: forward, backward or other (module docstring)."""
    out = np.full(len(t), "other", dtype=object)
    bw, opt = sp["backward_starts"], sp["optimizer_starts"]
    for i, (ti, s0, s1) in enumerate(zip(t, step_start, step_end, strict=True)):
        if s0 < 0:
            continue
        b = bw[(bw >= s0) & (bw < s1)]
        if not len(b):
            continue
        o = opt[(opt >= b[0]) & (opt < s1)]
        end_bw = o[0] if len(o) else s1
        out[i] = "forward" if ti < b[0] else ("backward" if ti < end_bw else "other")
    return out


def _step_windows(steps: pd.DataFrame | None, rank: int) -> pd.DataFrame:
    if steps is None or steps.empty:
        return pd.DataFrame(columns=["step", "start_ns", "end_ns"])
    st = steps[steps["rank"] == rank]
    return pd.DataFrame(
        {
            "step": st["step"].astype(np.int64).to_numpy(),
            "start_ns": st["start_ns"].astype(np.int64).to_numpy(),
            "end_ns": (st["start_ns"] + st["dur_ns"].fillna(0)).astype(np.int64).to_numpy(),
        }
    ).sort_values("start_ns", ignore_index=True)


def _call_windows(calls: pd.DataFrame, windows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each call's step window (start, end), -1 where it has none."""
    idx = windows.set_index("step")
    st = calls["step"].astype("Int64")
    s0 = st.map(idx["start_ns"]).fillna(-1).astype(np.int64).to_numpy()
    s1 = st.map(idx["end_ns"]).fillna(-1).astype(np.int64).to_numpy()
    return s0, s1


def group_activity(
    source: Any,
    arrivals: pd.DataFrame,
    steps: pd.DataFrame | None = None,
    *,
    spans: RankSpans | None = None,
) -> pd.DataFrame:
    """The map: per rank, group and op, the calls' time, exposed time, phases and sizes.

    ``arrivals``: the ranks' rows of :func:`~analyzer.analyses.cross_rank.collective_arrivals`
    (group, step, op, arrival and end of every call); ``steps``: the ranks' Kineto steps.
    Columns: :data:`ACTIVITY_COLUMNS` (``step_ns``: the rank's profiled step time; ``time_ns``
    / ``exposed_ns``: union and exposed part of the calls, module docstring;
    ``sized_busy_ns``: summed duration of the calls with a known size, for bandwidths;
    ``fsdp_marks``: the rank's FSDP annotations).
    """
    spans = spans or RankSpans(source)
    if spans.table.num_rows == 0 or arrivals.empty:
        return _empty(ACTIVITY_COLUMNS)
    rows = []
    for rank, calls in arrivals.groupby("rank", sort=True):
        sp = spans(int(rank))
        windows = _step_windows(steps, int(rank))
        has_steps = not windows.empty
        step_ns = int((windows["end_ns"] - windows["start_ns"]).sum()) if has_steps else 0
        if has_steps:
            calls = calls[calls["step"].notna()]
        if calls.empty:
            continue
        s0, s1 = (
            _call_windows(calls, windows)
            if has_steps
            else (np.full(len(calls), -1), np.full(len(calls), -1))
        )
        t = calls["enqueue_ns"].astype("Int64").fillna(calls["arrival_ns"]).astype(np.int64)
        phase = _phases(t.to_numpy(), s0, s1, sp)
        calls = calls.assign(_phase=phase)
        # the group's calls together (its ops overlap: a pipeline's sends and receives, an
        # FSDP backward's all-gather and reduce-scatter), each device against its computation
        whole: dict[str, tuple[int, int]] = {}
        for group, sub in calls.groupby("group", sort=True):
            lo = sub["arrival_ns"].to_numpy(np.int64)
            hi = np.maximum(sub["end_ns"].to_numpy(np.int64), lo)
            a, b = merge_intervals(lo, hi)
            on_gpu = (sub["device"] == "gpu").to_numpy()
            exposed = _exposed(lo[on_gpu], hi[on_gpu], sp["gpu"]) + _exposed(
                lo[~on_gpu], hi[~on_gpu], sp["host"]
            )
            whole[str(group)] = (int((b - a).sum()), exposed)
        for (group, op, device), sub in calls.groupby(
            ["group", calls["op"].fillna("?"), calls["device"].fillna("cpu")], sort=True
        ):
            lo = sub["arrival_ns"].to_numpy(np.int64)
            hi = np.maximum(sub["end_ns"].to_numpy(np.int64), lo)
            comp = sp["gpu"] if device == "gpu" else sp["host"]
            a, b = merge_intervals(lo, hi)
            size = pd.to_numeric(sub["msg_bytes"], errors="coerce")
            sized = size.notna().to_numpy()
            rows.append(
                {
                    "rank": int(rank),
                    "group": str(group),
                    "op": str(op),
                    "device": str(device),
                    "calls": len(sub),
                    "steps": int(sub["step"].nunique()) if has_steps else 0,
                    "step_ns": step_ns,
                    "time_ns": int((b - a).sum()),
                    "exposed_ns": _exposed(lo, hi, comp),
                    "forward_calls": int((sub["_phase"] == "forward").sum()),
                    "backward_calls": int((sub["_phase"] == "backward").sum()),
                    "sized_calls": int(sized.sum()),
                    "total_bytes": float(size.sum()) if sized.any() else np.nan,
                    "min_bytes": float(size.min()) if sized.any() else np.nan,
                    "max_bytes": float(size.max()) if sized.any() else np.nan,
                    "sized_busy_ns": int((hi - lo)[sized].sum()),
                    "fsdp_marks": sp["fsdp_marks"],
                    "group_time_ns": whole[str(group)][0],
                    "group_exposed_ns": whole[str(group)][1],
                }
            )
    return pd.DataFrame(rows, columns=ACTIVITY_COLUMNS) if rows else _empty(ACTIVITY_COLUMNS)


def fsdp_units(
    source: Any,
    arrivals: pd.DataFrame,
    steps: pd.DataFrame | None = None,
    *,
    spans: RankSpans | None = None,
) -> pd.DataFrame:
    """The map: each FSDP2 parameter all-gather with its unit, phase and exposed time.

    Columns: :data:`UNIT_COLUMNS` (``unit``: FSDP's index of the unit, as its marks name it;
    ``phase``: forward or backward). Empty where the trace has no ``FSDP::all_gather (i)``
    marks (FSDP1, DeepSpeed ZeRO: their all-gathers still count in :func:`group_activity`)
    or where the marks and the all-gathers do not pair one to one.
    """
    spans = spans or RankSpans(source)
    if spans.table.num_rows == 0 or arrivals.empty:
        return _empty(UNIT_COLUMNS)
    rows = []
    for rank, calls in arrivals.groupby("rank", sort=True):
        gathers = calls[calls["op"] == "allgather"]
        if gathers.empty:
            continue
        sp = spans(int(rank))
        names, starts, ends = sp["names"], sp["starts"], sp["ends"]
        is_mark = np.array([bool(_FSDP_GATHER_RE.match(str(n))) for n in names], dtype=bool)
        if not is_mark.any():
            continue
        marks = pd.DataFrame(
            {"name": names[is_mark], "start": starts[is_mark], "end": ends[is_mark]}
        ).sort_values("start", ignore_index=True)
        order = ["seq"] if gathers["seq"].notna().all() else []
        gathers = gathers.assign(
            _t=gathers["enqueue_ns"].astype("Int64").fillna(gathers["arrival_ns"])
        ).sort_values([*order, "_t"], ignore_index=True)
        if len(marks) != len(gathers):
            continue  # not one all-gather per mark: no pairing is safe
        phases = pd.DataFrame({"name": names, "start": starts, "end": ends})[
            [bool(_FSDP_PHASE_RE.match(str(n))) for n in names]
        ].sort_values("start")
        for k, mark in marks.iterrows():
            call = gathers.iloc[k]
            inside = phases[(phases["start"] <= mark["start"]) & (phases["end"] >= mark["end"])]
            backward = bool(len(inside)) and bool(
                _FSDP_BACKWARD_RE.match(str(inside.iloc[-1]["name"]))
            )
            lo = np.array([int(call["arrival_ns"])], dtype=np.int64)
            hi = np.maximum(np.array([int(call["end_ns"])], dtype=np.int64), lo)
            comp = sp["gpu"] if call["device"] == "gpu" else sp["host"]
            m = _FSDP_GATHER_RE.match(str(mark["name"]))
            rows.append(
                {
                    "rank": int(rank),
                    "step": call["step"],
                    "group": str(call["group"]),
                    "unit": int(m.group(1)) if m else -1,
                    "phase": "backward" if backward else "forward",
                    "arrival_ns": int(lo[0]),
                    "time_ns": int(hi[0] - lo[0]),
                    "exposed_ns": _exposed(lo, hi, comp),
                }
            )
    return pd.DataFrame(rows, columns=UNIT_COLUMNS) if rows else _empty(UNIT_COLUMNS)


def reduction_tails(
    source: Any,
    arrivals: pd.DataFrame,
    steps: pd.DataFrame | None = None,
    *,
    spans: RankSpans | None = None,
) -> pd.DataFrame:
    """The map: per rank and step, the gradient reductions left after the last computation.

    Columns: :data:`TAIL_COLUMNS` (``tail_ns``: module docstring; ``reduction_ns``: the union
    of the step's gradient reductions). Steps without a backward phase have no row.
    """
    spans = spans or RankSpans(source)
    if spans.table.num_rows == 0 or arrivals.empty or steps is None or steps.empty:
        return _empty(TAIL_COLUMNS)
    rows = []
    for rank, calls in arrivals.groupby("rank", sort=True):
        red = calls[calls["op"].isin(["reducescatter", "allreduce"]) & calls["step"].notna()]
        if red.empty:
            continue
        sp = spans(int(rank))
        windows = _step_windows(steps, int(rank))
        s0, s1 = _call_windows(red, windows)
        t = red["enqueue_ns"].astype("Int64").fillna(red["arrival_ns"]).astype(np.int64)
        red = red.assign(_phase=_phases(t.to_numpy(), s0, s1, sp))
        red = red[red["_phase"] == "backward"]
        for step, sub in red.groupby("step", sort=True):
            lo = sub["arrival_ns"].to_numpy(np.int64)
            hi = np.maximum(sub["end_ns"].to_numpy(np.int64), lo)
            a, b = merge_intervals(lo, hi)
            last = int(hi.max())
            comp_lo, comp_hi = sp["gpu"] if (sub["device"] == "gpu").any() else sp["host"]
            straddles = bool(((comp_lo < last) & (comp_hi > last)).any())
            before = comp_hi[comp_hi <= last]
            since = int(before.max()) if len(before) else int(lo.min())
            tail = 0 if straddles else int(covered_in_windows(a, b, since, last)[0])
            rows.append(
                {
                    "rank": int(rank),
                    "step": int(step),
                    "calls": len(sub),
                    "last_end_ns": last,
                    "tail_ns": max(tail, 0),
                    "reduction_ns": int((b - a).sum()),
                }
            )
    return pd.DataFrame(rows, columns=TAIL_COLUMNS) if rows else _empty(TAIL_COLUMNS)


def stage_steps(
    source: Any,
    arrivals: pd.DataFrame,
    steps: pd.DataFrame | None = None,
    *,
    spans: RankSpans | None = None,
) -> pd.DataFrame:
    """The map: per step of a rank that sends and receives, its compute and bubble time.

    Columns: :data:`STAGE_COLUMNS` (``compute_ns``: the union of the rank's computation in the
    step; ``bubble_ns``: the rest of the step; ``p2p_exposed_ns``: the part of the bubble in
    which a send or receive was in flight; ``microbatches``: from the schedule's marks, NaN
    without them).
    """
    spans = spans or RankSpans(source)
    if spans.table.num_rows == 0 or arrivals.empty or steps is None or steps.empty:
        return _empty(STAGE_COLUMNS)
    rows = []
    for rank, calls in arrivals.groupby("rank", sort=True):
        p2p = calls[calls["op"].isin(P2P_OPS)]
        if p2p.empty:
            continue
        sp = spans(int(rank))
        device = "gpu" if (p2p["device"] == "gpu").any() else "cpu"
        comp = sp["gpu"] if device == "gpu" else sp["host"]
        names, starts = sp["names"], sp["starts"]
        mb = pd.Series([_MICROBATCH_RE.match(str(n)) for n in names])
        mb_index = np.array([int(m.group(1) or m.group(2)) if m else -1 for m in mb])
        group = str(p2p["group"].mode().iloc[0])
        for w in _step_windows(steps, int(rank)).itertuples(index=False):
            s0, s1 = int(w.start_ns), int(w.end_ns)
            in_step = p2p[(p2p["arrival_ns"] >= s0) & (p2p["arrival_ns"] < s1)]
            if in_step.empty:
                continue
            busy = int(covered_in_windows(comp[0], comp[1], s0, s1)[0])
            lo = np.clip(in_step["arrival_ns"].to_numpy(np.int64), s0, s1)
            hi = np.clip(np.maximum(in_step["end_ns"].to_numpy(np.int64), lo), s0, s1)
            sel = (starts >= s0) & (starts < s1) & (mb_index >= 0)
            n_mb = len(set(mb_index[sel].tolist()))
            rows.append(
                {
                    "rank": int(rank),
                    "group": group,
                    "step": int(w.step),
                    "step_ns": s1 - s0,
                    "compute_ns": busy,
                    "bubble_ns": s1 - s0 - busy,
                    "p2p_exposed_ns": _exposed(lo, hi, comp),
                    "sends": int(in_step["op"].isin(["send", "isend"]).sum()),
                    "recvs": int(in_step["op"].isin(["recv", "irecv", "recvanysource"]).sum()),
                    "microbatches": n_mb if n_mb else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=STAGE_COLUMNS) if rows else _empty(STAGE_COLUMNS)


def stage_timeline(source: Any, windows: dict[int, tuple[int, int]]) -> pd.DataFrame:
    """One step of some pipeline stages over time: when each computes and when it idles.

    ``windows``: rank → its step's ``(start_ns, end_ns)``. Columns: ``rank, kind``
    (``compute`` | ``bubble``), ``start_ms, end_ms`` from the earliest step start of the
    ranks given, so the stages' offsets (fill and drain) stay visible. Computation as the
    module docstring defines it (the device of the rank's send/recv calls: GPU kernels where
    the trace has them, else its CPU operators).
    """
    cols = ["rank", "kind", "start_ms", "end_ms"]
    if not windows:
        return _empty(cols)
    spans = RankSpans(source)
    origin = min(w[0] for w in windows.values())
    rows: list[tuple[int, str, float, float]] = []
    for rank, (s0, s1) in sorted(windows.items()):
        sp = spans(int(rank))
        lo, hi = sp["gpu"] if len(sp["gpu"][0]) else sp["host"]
        keep = (hi > s0) & (lo < s1)
        lo, hi = np.clip(lo[keep], s0, s1), np.clip(hi[keep], s0, s1)
        edge = s0
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
            if a > edge:
                rows.append((int(rank), "bubble", (edge - origin) / 1e6, (a - origin) / 1e6))
            rows.append((int(rank), "compute", (a - origin) / 1e6, (b - origin) / 1e6))
            edge = max(edge, b)
        if edge < s1:
            rows.append((int(rank), "bubble", (edge - origin) / 1e6, (s1 - origin) / 1e6))
    return pd.DataFrame(rows, columns=cols) if rows else _empty(cols)


# -- the reduce ---------------------------------------------------------------------------


def _known_groups(traces: pa.Table | None, fr_groups: pa.Table | None) -> dict[str, dict[str, Any]]:
    """Each group's description and ranks from the traces' ``pg_config`` and the Flight
    Recorder records, where they say."""
    out: dict[str, dict[str, Any]] = {}
    if traces is not None and "process_groups" in traces.column_names:
        for row in traces.select(["process_groups"]).to_pylist():
            try:
                groups = json.loads(row["process_groups"]) if row["process_groups"] else []
            except ValueError:
                continue
            for g in groups if isinstance(groups, list) else []:
                if not isinstance(g, dict) or g.get("pg_name") is None:
                    continue
                known = out.setdefault(str(g["pg_name"]), {})
                if g.get("pg_desc"):
                    known.setdefault("desc", str(g["pg_desc"]))
                ranks = g.get("ranks")
                if isinstance(ranks, list) and ranks:
                    known.setdefault("ranks", [int(r) for r in ranks])
                if g.get("pg_size"):
                    known.setdefault("size", int(g["pg_size"]))
    if fr_groups is not None and fr_groups.num_rows:
        for row in fr_groups.select(["group", "group_desc", "ranks"]).to_pylist():
            if row["group"] is None:
                continue
            known = out.setdefault(str(row["group"]), {})
            if row["group_desc"]:
                known.setdefault("desc", str(row["group_desc"]))
            try:
                ranks = json.loads(row["ranks"]) if row["ranks"] else None
            except ValueError:
                ranks = None
            if isinstance(ranks, list) and ranks:
                known.setdefault("ranks", [int(r) for r in ranks])
    return out


def _dimension_of(desc: str | None) -> str | None:
    if not desc:
        return None
    for pattern, dim in _DESC_DIMENSIONS:
        if pattern.search(desc):
            return dim
    return None


GROUP_COLUMNS = ["group", "desc", "ranks", "size", "ops", "dimension", "evidence"]


def classify_groups(
    activity: pd.DataFrame,
    traces: pa.Table | None = None,
    fr_groups: pa.Table | None = None,
    names: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The reduce: one row per process group with its parallel dimension and why.

    Columns: ``group, desc, ranks`` (JSON list), ``size, ops`` (comma-separated),
    ``dimension`` (one of :data:`DIMENSIONS`), ``evidence`` (a sentence). ``names``: the rule
    file's ``[parallelism] groups``, a group's name or description → its dimension.
    """
    if activity.empty:
        return _empty(GROUP_COLUMNS)
    known = _known_groups(traces, fr_groups)
    names = {str(k): str(v) for k, v in (names or {}).items()}
    rows = []
    for group, sub in activity.groupby("group", sort=True):
        info = known.get(str(group), {})
        desc = info.get("desc")
        ranks = info.get("ranks") or sorted(int(r) for r in sub["rank"].unique())
        size = int(info.get("size") or len(ranks))
        ops = sorted(set(sub["op"].astype(str)))
        collective = [o for o in ops if o not in P2P_OPS]
        calls = sub.groupby("op")["calls"].sum()
        forward = int(sub.loc[sub["op"] == "allreduce", "forward_calls"].sum())
        marks = bool((sub["fsdp_marks"] > 0).any())
        named = names.get(str(group)) or (names.get(desc) if desc else None)
        by_desc = _dimension_of(desc)
        if named:
            dim, why = named, "named in the rule file ([parallelism] groups)"
        elif by_desc:
            dim, why = by_desc, f"its description {desc!r} names it"
        elif not collective:
            dim, why = "pipeline", "send/recv only (point-to-point between stages)"
        elif "alltoall" in ops:
            dim, why = "expert", f"all-to-all ({int(calls['alltoall'])} calls)"
        elif "allgather" in ops and "reducescatter" in ops:
            dim, why = "fsdp", "parameter all-gathers and gradient reduce-scatters"
        elif "allgather" in ops and marks:
            dim, why = "fsdp", "all-gathers, and FSDP's marks on its ranks"
        elif "allreduce" in ops and forward > 0:
            dim, why = "tensor", f"all-reduces inside the forward ({forward} calls)"
        elif "allreduce" in ops:
            dim, why = "data", "gradient all-reduces (backward and after)"
        else:
            dim, why = "other", f"ops {', '.join(ops)}"
        if dim not in DIMENSIONS:
            dim, why = "other", f"{why}: {named!r} is not one of {', '.join(DIMENSIONS)}"
        rows.append(
            {
                "group": str(group),
                "desc": desc,
                "ranks": json.dumps(ranks),
                "size": size,
                "ops": ",".join(ops),
                "dimension": dim,
                "evidence": why,
            }
        )
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


_BUSBW = {"allreduce": lambda n: 2 * (n - 1) / n, "allgather": lambda n: (n - 1) / n,
          "reducescatter": lambda n: (n - 1) / n, "alltoall": lambda n: (n - 1) / n}  # fmt: skip


def group_summary(activity: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Per rank, group and op: time and exposed time per step, share of the step, sizes and
    bandwidths (NCCL's algbw = bytes / time, busbw = algbw × its factor for the op and the
    group's size), with the group's dimension, and the group's own figures (all its ops'
    calls together: ops of one group overlap, so their rows do not add up).

    Columns: ``rank, group, dimension, op, calls, calls_per_step, time_ms_per_step,
    exposed_ms_per_step, share_pct, mean_bytes, min_bytes, max_bytes, algbw_gbps,
    busbw_gbps, group_time_ms_per_step, group_exposed_ms_per_step, group_share_pct``.
    """
    cols = [
        "rank", "group", "dimension", "op", "calls", "calls_per_step", "time_ms_per_step",
        "exposed_ms_per_step", "share_pct", "mean_bytes", "min_bytes", "max_bytes",
        "algbw_gbps", "busbw_gbps", "group_time_ms_per_step", "group_exposed_ms_per_step",
        "group_share_pct",
    ]  # fmt: skip
    if activity.empty:
        return _empty(cols)
    a = activity.merge(groups[["group", "dimension", "size"]], on="group", how="left")
    steps = a.groupby("rank")["steps"].transform("max").astype(float)
    per = steps.where(steps > 0)
    out = pd.DataFrame(
        {
            "rank": a["rank"].astype(np.int64),
            "group": a["group"],
            "dimension": a["dimension"].fillna("other"),
            "op": a["op"],
            "calls": a["calls"].astype(np.int64),
            "calls_per_step": a["calls"] / per,
            "time_ms_per_step": a["time_ns"] / 1e6 / per,
            "exposed_ms_per_step": a["exposed_ns"] / 1e6 / per,
            "share_pct": 100.0 * a["exposed_ns"] / a["step_ns"].where(a["step_ns"] > 0),
            "mean_bytes": a["total_bytes"] / a["sized_calls"].where(a["sized_calls"] > 0),
            "min_bytes": a["min_bytes"],
            "max_bytes": a["max_bytes"],
            "group_time_ms_per_step": a["group_time_ns"] / 1e6 / per,
            "group_exposed_ms_per_step": a["group_exposed_ns"] / 1e6 / per,
            "group_share_pct": 100.0 * a["group_exposed_ns"] / a["step_ns"].where(a["step_ns"] > 0),
        }
    )
    busy = a["sized_busy_ns"].where(a["sized_busy_ns"] > 0)
    out["algbw_gbps"] = a["total_bytes"] / busy
    factor = [
        _BUSBW[op](float(n)) if op in _BUSBW and n and n > 1 else (1.0 if op in P2P_OPS else np.nan)
        for op, n in zip(a["op"], a["size"].fillna(0), strict=True)
    ]
    out["busbw_gbps"] = out["algbw_gbps"] * np.array(factor, dtype=float)
    return out.sort_values(["rank", "group", "op"], ignore_index=True)[cols]


def dimension_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Per parallel dimension: its groups, ranks, time and exposed time per step (mean over
    its ranks; a rank's groups of the dimension summed, each group's ops taken together)
    and the rank that exposes the most.

    Columns: ``dimension, label, groups, ranks, time_ms_per_step, exposed_ms_per_step,
    share_pct, worst_rank, worst_exposed_ms_per_step``. Sorted by exposed time, worst first.
    """
    cols = [
        "dimension", "label", "groups", "ranks", "time_ms_per_step", "exposed_ms_per_step",
        "share_pct", "worst_rank", "worst_exposed_ms_per_step",
    ]  # fmt: skip
    if summary.empty:
        return _empty(cols)
    rows = []
    for dim, sub in summary.groupby("dimension", sort=False):
        cols_g = ["group_time_ms_per_step", "group_exposed_ms_per_step", "group_share_pct"]
        per_rank = sub.groupby(["rank", "group"])[cols_g].first().groupby("rank").sum()
        per_rank.columns = ["time_ms_per_step", "exposed_ms_per_step", "share_pct"]
        worst = per_rank["exposed_ms_per_step"].idxmax()
        rows.append(
            {
                "dimension": dim,
                "label": DIMENSION_LABELS.get(str(dim), str(dim)),
                "groups": ",".join(sorted(sub["group"].astype(str).unique())),
                "ranks": len(per_rank),
                "time_ms_per_step": float(per_rank["time_ms_per_step"].mean()),
                "exposed_ms_per_step": float(per_rank["exposed_ms_per_step"].mean()),
                "share_pct": float(per_rank["share_pct"].mean()),
                "worst_rank": int(worst),
                "worst_exposed_ms_per_step": float(per_rank["exposed_ms_per_step"].max()),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("exposed_ms_per_step", ascending=False, ignore_index=True)


def pipeline_bubbles(stages: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """The reduce: per pipeline stage, its bubble per step against the schedule's ideal.

    Columns: ``rank, group, stage, stages, microbatches, microbatch_source ("schedule" |
    "receives"), steps, step_ms, compute_ms, bubble_ms, bubble_pct, ideal_pct,
    excess_points, slowest`` (the stage with the most computation per step). Only ranks
    of a group classified as pipeline.
    """
    cols = [
        "rank", "group", "stage", "stages", "microbatches", "microbatch_source", "steps",
        "step_ms", "compute_ms", "bubble_ms", "bubble_pct", "ideal_pct", "excess_points",
        "slowest",
    ]  # fmt: skip
    if stages.empty or groups.empty:
        return _empty(cols)
    pipe = groups[groups["dimension"] == "pipeline"]
    rows = []
    for g in pipe.itertuples(index=False):
        ranks = json.loads(g.ranks)
        p = int(g.size) if g.size else len(ranks)
        sub = stages[stages["group"] == g.group]
        for rank, st in sub.groupby("rank", sort=True):
            stage = ranks.index(int(rank)) if int(rank) in ranks else None
            m_marks = pd.to_numeric(st["microbatches"], errors="coerce").dropna()
            if len(m_marks):
                m, source = float(m_marks.median()), "schedule"
            else:
                per_mb = 1 if stage in (0, p - 1) else 2
                m, source = float(st["recvs"].median()) / per_mb, "receives"
            step = float(st["step_ns"].sum())
            bubble = float(st["bubble_ns"].sum())
            ideal = 100.0 * (p - 1) / (m + p - 1) if m > 0 and p > 1 else np.nan
            pct = 100.0 * bubble / step if step > 0 else np.nan
            n = len(st)
            rows.append(
                {
                    "rank": int(rank),
                    "group": g.group,
                    "stage": stage,
                    "stages": p,
                    "microbatches": m,
                    "microbatch_source": source,
                    "steps": n,
                    "step_ms": step / 1e6 / n,
                    "compute_ms": float(st["compute_ns"].sum()) / 1e6 / n,
                    "bubble_ms": bubble / 1e6 / n,
                    "bubble_pct": pct,
                    "ideal_pct": ideal,
                    "excess_points": pct - ideal,
                }
            )
    if not rows:
        return _empty(cols)
    out = pd.DataFrame(rows)
    out["slowest"] = False
    for _, sub in out.groupby("group"):
        out.loc[sub["compute_ms"].idxmax(), "slowest"] = True
    return out.sort_values(["group", "stage"], ignore_index=True)[cols]


def fsdp_exposure(units: pd.DataFrame, tails: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """The reduce: per rank of an FSDP group, the all-gather exposed per step in the forward
    and in the backward, the worst unit, and the reduction tail per step.

    Columns: ``rank, group, steps, gathers_per_step, forward_exposed_ms, backward_exposed_ms,
    gather_ms, worst_unit, worst_unit_exposed_ms, tail_ms``.
    """
    cols = [
        "rank", "group", "steps", "gathers_per_step", "forward_exposed_ms",
        "backward_exposed_ms", "gather_ms", "worst_unit", "worst_unit_exposed_ms", "tail_ms",
    ]  # fmt: skip
    if units.empty:
        return _empty(cols)
    fsdp = set(groups.loc[groups["dimension"] == "fsdp", "group"].astype(str))
    u = units[units["group"].astype(str).isin(fsdp) & units["step"].notna()]
    rows = []
    for (rank, group), sub in u.groupby(["rank", "group"], sort=True):
        n = int(sub["step"].nunique())
        by_phase = sub.groupby("phase")["exposed_ns"].sum()
        by_unit = sub.groupby("unit")["exposed_ns"].sum()
        t = tails[(tails["rank"] == rank) & tails["step"].isin(sub["step"].unique())]
        rows.append(
            {
                "rank": int(rank),
                "group": str(group),
                "steps": n,
                "gathers_per_step": len(sub) / n,
                "forward_exposed_ms": float(by_phase.get("forward", 0)) / 1e6 / n,
                "backward_exposed_ms": float(by_phase.get("backward", 0)) / 1e6 / n,
                "gather_ms": float(sub["time_ns"].sum()) / 1e6 / n,
                "worst_unit": int(by_unit.idxmax()),
                "worst_unit_exposed_ms": float(by_unit.max()) / 1e6 / n,
                "tail_ms": float(t["tail_ns"].sum()) / 1e6 / n if len(t) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=cols) if rows else _empty(cols)

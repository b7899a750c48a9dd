"""Collective communication: time, exposure, overlap with computation, and per-collective
message sizes and bandwidth.

Definitions (per rank, over the GPU events in the analysis scope of
:mod:`analyzer.analyses.gpu_kernels`, classes from :mod:`analyzer.analyses.kernel_classes`):

* ``comm_time_ns`` — length of the union of the COMMUNICATION kernels (concurrent
  collectives counted once); ``comm_kernel_time_ns`` is their plain duration sum.
* ``comm_share_pct`` — ``comm_time_ns`` as a share of the GPU busy time (the union of all
  GPU events).
* ``overlapped_comm_ns`` — communication time during which at least one COMPUTATION kernel
  runs: ``|union(comm) ∩ union(comp)|``.
* ``exposed_comm_ns`` — communication time no computation kernel overlaps:
  ``comm_time_ns - overlapped_comm_ns``. This is the time communication adds to the step.
* ``comm_comp_overlap_pct`` — ``overlapped_comm_ns / comm_time_ns × 100``, HTA's
  ``get_comm_comp_overlap``; NaN when the rank has no communication kernels.
* CPU collectives (``cpu_comm_time_ns``, ``cpu_collective_calls``) — collectives that run on
  the host, i.e. gloo / MPI / Horovod record functions (``gloo:all_reduce``, ...): the union
  and the count of those CPU events. They are not GPU time and enter no percentage above.

Collective calls (:func:`collective_calls`): one row per communication GPU kernel, plus one
per host-side collective record function (``device = "cpu"``). The collective type and the
message size come, in this order, from the kernel's own arguments (recent PyTorch puts
``Collective name``, ``In/Out msg nelems``, ``dtype``, ``Group size`` on NCCL kernels), from
the ``record_param_comms`` CPU op with the same ``external_id``, from the collective record
functions (``record_param_comms``, ``nccl:<collective>``) that enclose the kernel's launch
call (matched by ``correlation``) on the launching thread, and finally from the kernel name
(``ncclKernel_AllReduce_...`` → ``allreduce``). Sizes are ``msg_bytes`` = max(in, out)
elements × dtype size, the size convention of nccl-tests, so that
``algbw = msg_bytes / duration`` and ``busbw = algbw × factor(n)`` with nccl-tests'
factors: all-reduce ``2(n-1)/n``; all-gather, reduce-scatter, all-to-all ``(n-1)/n``;
broadcast, reduce, send/recv ``1`` (``n`` = ``group_size``). Bandwidths are in GB/s
(10^9 bytes per second) and NaN where the size, group size or duration is unknown.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.analyses.gpu_kernels import (
    Rounding,
    Scope,
    _col,
    gpu_events,
    kineto_events_table,
    last_step_starts,
)
from analyzer.analyses.intervals import state_durations
from analyzer.analyses.kernel_classes import COMMUNICATION, COMPUTATION, classify

__all__ = [
    "CPU_COLLECTIVE_LIBRARIES",
    "P2P_OPS",
    "collective_calls",
    "collective_summary",
    "communication_summary",
    "normalize_collective",
]

#: point-to-point ops (as :func:`normalize_collective` names them): between two ranks, not
#: calls every rank of a group makes, so never matched across a group as collectives
P2P_OPS = frozenset({"send", "recv", "sendrecv", "isend", "irecv", "recvanysource"})

#: Libraries whose collective record functions run the collective on the host.
CPU_COLLECTIVE_LIBRARIES = ("gloo", "mpi", "horovod")

_COLL_RECORD_PATTERN = r"^(nccl|rccl|hccl|gloo|mpi):"
_KERNEL_COLL_RE = re.compile(r"^(?:nccl|rccl)(?:Dev)?Kernel_([A-Za-z]+)")
_RECORD_COLL_RE = re.compile(r"^(?:nccl|rccl|hccl|gloo|mpi):(\w+)")
_HOROVOD_COLL_RE = re.compile(
    r"(?i)(?:horovod_?|NEGOTIATE_|MPI_|NCCL_|GLOO_)?"
    r"(allreduce|allgather|broadcast|alltoall|reducescatter)"
)

_BUSBW_FACTOR_KIND = {
    "allreduce": "2(n-1)/n",
    "allgather": "(n-1)/n",
    "reducescatter": "(n-1)/n",
    "alltoall": "(n-1)/n",
    "broadcast": "1",
    "reduce": "1",
    "sendrecv": "1",
    "send": "1",
    "recv": "1",
}


def normalize_collective(name: str | None) -> str | None:
    """Canonical collective type: ``all_reduce``/``AllReduce``/``allreduce`` → ``allreduce``,
    ``_all_gather_base``/``all_gather_into_tensor`` → ``allgather``, ``_reduce_scatter_base``
    → ``reducescatter``, ``all_to_all``/``alltoall_base`` → ``alltoall``, ``SendRecv`` →
    ``sendrecv``; other names lower-cased without underscores."""
    if name is None or (isinstance(name, float) and np.isnan(name)):
        return None
    s = re.sub(r"[^a-z0-9]", "", str(name).lower())
    changed = True
    while changed:
        changed = False
        for suffix in ("intotensor", "coalesced", "tensor", "base", "single"):
            if s.endswith(suffix) and len(s) > len(suffix) + 3:
                s = s[: -len(suffix)]
                changed = True
                break
    return _COLLECTIVE_ALIASES.get(s, s) or None


_COLLECTIVE_ALIASES = {
    "alltoallv": "alltoall",
    "allgatherv": "allgather",
    "reducescatterv": "reducescatter",
    "gatherv": "gather",
    "scatterv": "scatter",
    "reducescatterblock": "reducescatter",
    "p2p": "sendrecv",
}


def _busbw_factor(collective: pd.Series, n: pd.Series) -> np.ndarray:
    kind = collective.map(_BUSBW_FACTOR_KIND).to_numpy(dtype=object)
    nn = n.to_numpy(dtype=float)
    out = np.full(len(kind), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(kind == "2(n-1)/n", 2.0 * (nn - 1) / nn, out)
        out = np.where(kind == "(n-1)/n", (nn - 1) / nn, out)
        out = np.where(kind == "1", 1.0, out)
    out[~(nn >= 1)] = np.nan
    return out


def _name_collective(names: pd.Series, pattern: re.Pattern[str]) -> pd.Series:
    """Collective type parsed from each distinct name (vectorised over distinct names)."""
    uniq = pd.unique(names.dropna().astype(str))
    parsed = {}
    for u in uniq:
        m = pattern.search(u)
        parsed[u] = normalize_collective(m.group(1)) if m else None
    return names.astype(object).map(parsed)


_SIZE_COLS = [
    "collective",
    "msg_bytes",
    "in_msg_nelems",
    "out_msg_nelems",
    "dtype",
    "group_size",
    "process_group",
]


def _cpu_side(table: pa.Table, *, with_launches: bool = True) -> pd.DataFrame:
    """Non-GPU events that can matter for communication, with the columns needed to link
    kernels to their CPU ops: communication ops (by the classification table) and, with
    ``with_launches``, every event carrying a correlation id (the runtime launch calls)."""
    stream = _col(table, "stream")
    not_gpu = pc.or_(pc.is_null(stream), pc.equal(pc.fill_null(stream, -1), -1)).to_numpy(
        zero_copy_only=False
    )
    relevant = (classify(_col(table, "name"))["kernel_class"] == COMMUNICATION).to_numpy()
    if with_launches:
        relevant = relevant | pc.is_valid(_col(table, "correlation")).to_numpy(zero_copy_only=False)
    cols = [
        "rank",
        "cat",
        "name",
        "tid",
        "start_ns",
        "dur_ns",
        "correlation",
        "external_id",
        *_SIZE_COLS,
    ]
    sub = pa.table({c: _col(table, c) for c in cols}).filter(pa.array(not_gpu & relevant))
    df = sub.to_pandas()
    for c in ("cat", "name", "collective", "dtype", "process_group"):
        df[c] = df[c].astype(object)
    df["dur_ns"] = df["dur_ns"].fillna(0)
    df["end_ns"] = df["start_ns"] + df["dur_ns"]
    return df


def _enclosing(probes: pd.DataFrame, ops: pd.DataFrame, take: list[str]) -> pd.DataFrame:
    """For each probe (rank, tid, start_ns, end_ns), the latest-starting op on the same rank
    and thread that starts at or before it and ends at or after it (else NaN)."""
    if probes.empty or ops.empty:
        return pd.DataFrame(index=probes.index, columns=take)
    left = probes[["rank", "tid", "start_ns", "end_ns"]].copy()
    left["_row"] = np.arange(len(left))
    left = left.dropna(subset=["tid", "start_ns"]).astype({"start_ns": np.int64, "tid": np.int64})
    right = ops[["rank", "tid", "start_ns", "end_ns", *take]].dropna(subset=["tid", "start_ns"])
    right = right.astype({"start_ns": np.int64, "tid": np.int64}).rename(
        columns={"end_ns": "_op_end", "start_ns": "_op_start"}
    )
    left = left.sort_values("start_ns", kind="stable")
    right = right.sort_values("_op_start", kind="stable")
    merged = pd.merge_asof(
        left,
        right,
        left_on="start_ns",
        right_on="_op_start",
        by=["rank", "tid"],
        direction="backward",
    )
    ok = merged["_op_end"] >= merged["end_ns"]
    merged.loc[~ok, take] = np.nan
    out = pd.DataFrame(index=np.arange(len(probes)), columns=take, dtype=object)
    out.loc[merged["_row"].to_numpy(), take] = merged[take].to_numpy()
    out.index = probes.index
    return out


def _fill(target: pd.DataFrame, source: pd.DataFrame, cols: list[str], where: pd.Series) -> None:
    for c in cols:
        if c not in source:
            continue
        vals = source[c]
        take = where & target[c].isna() & vals.notna()
        if take.any():
            target.loc[take, c] = vals[take]


_CALL_COLUMNS = [
    "rank",
    "device",
    "library",
    "collective",
    "name",
    "start_ns",
    "dur_ns",
    "msg_bytes",
    "in_msg_nelems",
    "out_msg_nelems",
    "dtype",
    "group_size",
    "process_group",
    "size_source",
    "algbw_gbps",
    "busbw_gbps",
    "correlation",
]


def collective_calls(
    source: Any, *, scope: Scope = "hta", rounding: Rounding = "none"
) -> pd.DataFrame:
    """One row per collective call with its type, size and bandwidth (module docstring).

    Columns: ``rank, device ("gpu"|"cpu"), library, collective, name, start_ns, dur_ns,
    msg_bytes, in_msg_nelems, out_msg_nelems, dtype, group_size, process_group,
    size_source ("kernel"|"record_param_comms"|"enclosing_op"|None), algbw_gbps,
    busbw_gbps, correlation`` (a GPU call's launch correlation id, to find its enqueue).
    Sorted by rank and start.
    """
    table = kineto_events_table(source)
    ev = gpu_events(source, scope=scope, rounding=rounding)
    comm = ev[ev["kernel_class"] == COMMUNICATION].copy()
    for c in ("collective", "dtype", "process_group", "name", "library"):
        comm[c] = comm[c].astype(object)
    comm["device"] = "gpu"
    comm["size_source"] = comm["collective"].notna().map({True: "kernel", False: None})
    comm["collective"] = comm["collective"].map(normalize_collective)

    cpu = _cpu_side(table) if table.num_rows else pd.DataFrame()
    if not comm.empty and not cpu.empty:
        # 2. record_param_comms with the kernel's external id.
        rpc = cpu[
            (cpu["name"] == "record_param_comms")
            & cpu["collective"].notna()
            & cpu["external_id"].notna()
        ]
        if not rpc.empty:
            rpc = rpc.drop_duplicates(["rank", "external_id"])
            key = pd.MultiIndex.from_frame(rpc[["rank", "external_id"]].astype(np.int64))
            src = rpc.set_index(key)[_SIZE_COLS]
            kkey = pd.MultiIndex.from_arrays(
                [comm["rank"].astype(np.int64), comm["external_id"].fillna(-1).astype(np.int64)]
            )
            found = src.reindex(kkey)
            found.index = comm.index
            found["collective"] = found["collective"].map(normalize_collective)
            need = comm["collective"].isna() & found["collective"].notna()
            _fill(comm, found, _SIZE_COLS, need)
            comm.loc[need, "size_source"] = "record_param_comms"
        # 3. the collective ops enclosing the launch call.
        need = comm["collective"].isna() & comm["correlation"].notna()
        if need.any():
            launches = cpu[cpu["correlation"].notna()].drop_duplicates(["rank", "correlation"])
            lkey = pd.MultiIndex.from_frame(launches[["rank", "correlation"]].astype(np.int64))
            launch_of = launches.set_index(lkey)[["tid", "start_ns", "end_ns"]]
            k = comm[need]
            probe = launch_of.reindex(
                pd.MultiIndex.from_arrays(
                    [k["rank"].astype(np.int64), k["correlation"].astype(np.int64)]
                )
            )
            probe.index = k.index
            probe["rank"] = k["rank"].to_numpy()
            names = cpu["name"].astype(str)
            records = cpu[names.str.match(_COLL_RECORD_PATTERN)].copy()
            records["collective"] = _name_collective(records["name"], _RECORD_COLL_RE)
            rpcs = cpu[names == "record_param_comms"]
            inner = _enclosing(probe, records, ["collective"])
            outer = _enclosing(probe, rpcs, _SIZE_COLS)
            outer["collective"] = outer["collective"].map(normalize_collective)
            got = inner["collective"].notna() | outer["collective"].notna()
            # Sizes from the enclosing record_param_comms, the type from the innermost record.
            coll = inner["collective"].where(inner["collective"].notna(), outer["collective"])
            comm.loc[k.index[got.to_numpy()], "collective"] = coll[got].to_numpy()
            comm.loc[k.index[got.to_numpy()], "size_source"] = "enclosing_op"
            sized = pd.Series(got.to_numpy(), index=k.index)
            outer.index = k.index
            _fill(comm, outer, [c for c in _SIZE_COLS if c != "collective"], sized)
    # 4. the kernel name.
    from_name = _name_collective(comm["name"], _KERNEL_COLL_RE)
    comm["collective"] = comm["collective"].where(comm["collective"].notna(), from_name)
    comm.loc[comm["msg_bytes"].isna(), "size_source"] = None

    host = _cpu_collectives(source, cpu, scope)
    calls = (
        pd.concat(
            [comm.reindex(columns=_CALL_COLUMNS), host.reindex(columns=_CALL_COLUMNS)],
            ignore_index=True,
        )
        if not host.empty
        else comm.reindex(columns=_CALL_COLUMNS)
    )
    if calls.empty:
        return _empty_calls()
    calls["msg_bytes"] = pd.to_numeric(calls["msg_bytes"], errors="coerce")
    calls["group_size"] = pd.to_numeric(calls["group_size"], errors="coerce")
    calls["dur_ns"] = pd.to_numeric(calls["dur_ns"], errors="coerce")
    dur = calls["dur_ns"].where(calls["dur_ns"] > 0)
    calls["algbw_gbps"] = calls["msg_bytes"] / dur  # bytes per ns = GB/s
    calls["busbw_gbps"] = calls["algbw_gbps"] * _busbw_factor(
        calls["collective"], calls["group_size"]
    )
    calls["rank"] = calls["rank"].astype(np.int32)
    calls = calls.sort_values(["rank", "start_ns"], kind="stable", ignore_index=True)
    for c in ("in_msg_nelems", "out_msg_nelems", "msg_bytes", "group_size", "correlation"):
        calls[c] = pd.to_numeric(calls[c], errors="coerce").astype("Int64")
    return calls[_CALL_COLUMNS]


def _empty_calls() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series([], dtype=object) for c in _CALL_COLUMNS})
    for c in ("start_ns", "dur_ns"):
        out[c] = out[c].astype(np.int64)
    for c in ("in_msg_nelems", "out_msg_nelems", "msg_bytes", "group_size", "correlation"):
        out[c] = out[c].astype("Int64")
    for c in ("algbw_gbps", "busbw_gbps"):
        out[c] = out[c].astype(float)
    out["rank"] = out["rank"].astype(np.int32)
    return out


def _cpu_collectives(source: Any, cpu: pd.DataFrame, scope: Scope) -> pd.DataFrame:
    """Host-side collective record functions (gloo / MPI / Horovod)."""
    if cpu.empty:
        return pd.DataFrame()
    classes = classify(pa.array(cpu["name"].astype(object).to_numpy(), type=pa.string()))
    is_host = (classes["kernel_class"] == COMMUNICATION).to_numpy() & classes["library"].isin(
        CPU_COLLECTIVE_LIBRARIES
    ).to_numpy()
    is_host = is_host & cpu["start_ns"].notna().to_numpy()
    if scope == "hta":
        last = last_step_starts(source)
        if last is not None:
            limit = cpu["rank"].map(last).to_numpy(dtype=float)
            is_host = is_host & ~(cpu["start_ns"].to_numpy(dtype=float) >= limit)
    host = cpu[is_host].copy()
    if host.empty:
        return host
    host["library"] = classes["library"].astype(object).to_numpy()[is_host]
    host["device"] = "cpu"
    named = _name_collective(host["name"], _RECORD_COLL_RE)
    horovod = _name_collective(host["name"], _HOROVOD_COLL_RE)
    own = host["collective"].map(normalize_collective)
    host["collective"] = own.where(own.notna(), named.where(named.notna(), horovod))
    host["size_source"] = host["msg_bytes"].notna().map({True: "kernel", False: None})
    host["dur_ns"] = host["dur_ns"].astype(np.int64)
    host["start_ns"] = host["start_ns"].astype(np.int64)
    return host


_SUMMARY_COLUMNS = [
    "rank",
    "collective_kernels",
    "comm_kernel_time_ns",
    "comm_time_ns",
    "gpu_busy_ns",
    "comm_share_pct",
    "overlapped_comm_ns",
    "exposed_comm_ns",
    "comm_comp_overlap_pct",
    "cpu_collective_calls",
    "cpu_comm_time_ns",
]


def communication_summary(
    source: Any, *, scope: Scope = "hta", rounding: Rounding = "none"
) -> pd.DataFrame:
    """Per rank communication time, share, exposure and overlap (module docstring).

    Columns: ``rank, collective_kernels, comm_kernel_time_ns, comm_time_ns, gpu_busy_ns,
    comm_share_pct, overlapped_comm_ns, exposed_comm_ns, comm_comp_overlap_pct,
    cpu_collective_calls, cpu_comm_time_ns``. One row for every rank of the job's
    ``kineto_events`` (a rank without communication kernels has zeros and a NaN overlap,
    as HTA reports null), empty when there are no events at all.
    """
    table = kineto_events_table(source)
    if table.num_rows == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in _SUMMARY_COLUMNS})
    ranks = sorted(int(r) for r in pc.unique(table.column("rank")).to_pylist() if r is not None)
    out = pd.DataFrame(index=pd.Index(ranks, name="rank"))
    ev = gpu_events(source, scope=scope, rounding=rounding)
    is_comm = (ev["kernel_class"] == COMMUNICATION).to_numpy()
    is_comp = (ev["kernel_class"] == COMPUTATION).to_numpy()
    # Classes: 0 = communication, 1 = computation, 2 = any GPU event.
    rank = ev["rank"].to_numpy()
    start = ev["start_ns"].to_numpy()
    end = ev["end_ns"].to_numpy()
    states = state_durations(
        np.concatenate([rank[is_comm], rank[is_comp], rank]),
        np.concatenate([start[is_comm], start[is_comp], start]),
        np.concatenate([end[is_comm], end[is_comp], end]),
        np.concatenate(
            [
                np.zeros(is_comm.sum(), np.int64),
                np.ones(is_comp.sum(), np.int64),
                np.full(len(ev), 2, np.int64),
            ]
        ),
        n_classes=3,
    )

    def per_rank(mask: pd.Series) -> pd.Series:
        return states[mask].groupby("group")["duration"].sum().reindex(out.index, fill_value=0)

    st = states["state"]
    out["collective_kernels"] = (
        pd.Series(rank[is_comm]).value_counts().reindex(out.index, fill_value=0)
    )
    out["comm_kernel_time_ns"] = (
        pd.Series(end[is_comm] - start[is_comm])
        .groupby(rank[is_comm])
        .sum()
        .reindex(out.index, fill_value=0)
    )
    out["comm_time_ns"] = per_rank((st & 1) > 0)
    out["gpu_busy_ns"] = per_rank(st > 0)
    out["overlapped_comm_ns"] = per_rank((st & 3) == 3)
    out["exposed_comm_ns"] = out["comm_time_ns"] - out["overlapped_comm_ns"]
    out["comm_share_pct"] = (
        100.0 * out["comm_time_ns"] / out["gpu_busy_ns"].where(out["gpu_busy_ns"] > 0)
    )
    out["comm_comp_overlap_pct"] = (
        100.0 * out["overlapped_comm_ns"] / out["comm_time_ns"].where(out["comm_time_ns"] > 0)
    )
    cpu = _cpu_side(table, with_launches=False)
    host = _cpu_collectives(source, cpu, scope)
    if host.empty:
        out["cpu_collective_calls"] = 0
        out["cpu_comm_time_ns"] = 0
    else:
        out["cpu_collective_calls"] = host["rank"].value_counts().reindex(out.index, fill_value=0)
        hs = state_durations(
            host["rank"].to_numpy(),
            host["start_ns"].to_numpy(),
            (host["start_ns"] + host["dur_ns"]).to_numpy(),
            np.zeros(len(host), np.int64),
            n_classes=1,
        )
        out["cpu_comm_time_ns"] = (
            hs.groupby("group")["duration"].sum().reindex(out.index, fill_value=0)
        )
    for c in _SUMMARY_COLUMNS[1:]:
        if not c.endswith("pct"):
            out[c] = out[c].astype(np.int64)
    out = out.reset_index()
    out["rank"] = out["rank"].astype(np.int32)
    return out[_SUMMARY_COLUMNS]


def collective_summary(
    source: Any, *, scope: Scope = "hta", rounding: Rounding = "none"
) -> pd.DataFrame:
    """Per rank and collective type: counts, time, message sizes and bandwidth.

    Columns: ``rank, device, library, collective, calls, total_ns, mean_ns, max_ns,
    sized_calls, total_bytes, mean_bytes, min_bytes, max_bytes, algbw_gbps, busbw_gbps``.
    ``algbw_gbps`` = total bytes / total duration over the calls with a known size (so long
    calls weigh more, as in a throughput measurement); ``busbw_gbps`` likewise with each
    call's bytes scaled by its bus-bandwidth factor. Sizes and bandwidths are NaN where no
    call of the group has a known size.
    """
    calls = collective_calls(source, scope=scope, rounding=rounding)
    cols = [
        "rank",
        "device",
        "library",
        "collective",
        "calls",
        "total_ns",
        "mean_ns",
        "max_ns",
        "sized_calls",
        "total_bytes",
        "mean_bytes",
        "min_bytes",
        "max_bytes",
        "algbw_gbps",
        "busbw_gbps",
    ]
    if calls.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})
    c = calls.copy()
    c["collective"] = c["collective"].fillna("unknown")
    c["library"] = c["library"].fillna("")
    sized = c["msg_bytes"].notna() & (c["dur_ns"] > 0)
    c["sized_bytes"] = c["msg_bytes"].astype(float).where(sized)
    c["sized_dur"] = c["dur_ns"].astype(float).where(sized)
    factor = (c["busbw_gbps"] / c["algbw_gbps"]).where(sized)
    c["bus_bytes"] = c["sized_bytes"] * factor
    c["bus_dur"] = c["sized_dur"].where(factor.notna())
    g = c.groupby(["rank", "device", "library", "collective"], as_index=False, dropna=False)
    agg = g.agg(
        calls=("dur_ns", "size"),
        total_ns=("dur_ns", "sum"),
        mean_ns=("dur_ns", "mean"),
        max_ns=("dur_ns", "max"),
        sized_calls=("sized_bytes", "count"),
        total_bytes=("sized_bytes", "sum"),
        mean_bytes=("sized_bytes", "mean"),
        min_bytes=("sized_bytes", "min"),
        max_bytes=("sized_bytes", "max"),
        _sized_dur=("sized_dur", "sum"),
        _bus_bytes=("bus_bytes", "sum"),
        _bus_dur=("bus_dur", "sum"),
    )
    agg["total_bytes"] = agg["total_bytes"].where(agg["sized_calls"] > 0)
    agg["algbw_gbps"] = agg["total_bytes"] / agg["_sized_dur"].where(agg["_sized_dur"] > 0)
    agg["busbw_gbps"] = agg["_bus_bytes"] / agg["_bus_dur"].where(agg["_bus_dur"] > 0)
    agg = agg.sort_values(["rank", "total_ns"], ascending=[True, False], ignore_index=True)
    return agg[cols]

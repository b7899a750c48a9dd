"""Known-answer tests of the kernel / temporal / communication analyses against Holistic Trace
Analysis (REFERENCE.json beside the shared Kineto fixtures), plus synthetic unit tests of the
interval math and the kernel classification table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analyzer.analyses import (
    COMMUNICATION,
    COMPUTATION,
    MEMORY,
    OTHER,
    classify,
    collective_calls,
    collective_summary,
    communication_summary,
    gpu_events,
    intersection_length,
    kernel_class,
    kernel_class_totals,
    kernel_type_breakdown,
    merge_intervals,
    merge_intervals_grouped,
    normalize_collective,
    state_durations,
    subtract_length,
    temporal_breakdown,
    top_kernels,
    union_length,
    union_length_grouped,
)
from analyzer.analyses.annotations import ANNOTATION_COLUMNS, gpu_annotation_breakdown
from analyzer.analyses.gpu_kernels import Rounding
from analyzer.analyses.idle_time import IDLE_COLUMNS, idle_time_breakdown, idle_time_by_rank
from analyzer.analyses.kernel_classes import KERNEL_CLASS_TABLE
from analyzer.analyses.kernel_launch import kernel_launch_stats, kernel_launch_summary
from analyzer.ingest import JobDataset, ingest
from analyzer.ingest.schemas import KINETO_EVENTS
from analyzer.sources import open_source
from tests.support.fixtures import fixtures_dir

FOLDERS = ["nccl_2rank_rank0", "sampled_128rank", "resnet_single", "alexnet_single", "cpu_only"]
TOL_PP = 1.0  # required agreement with HTA, percentage points (exact nanoseconds)
TOL_HTA_MODE = 0.011  # with rounding="hta": HTA's own 2-decimal rounding only

_DATASETS: dict[str, JobDataset] = {}


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    path = fixtures_dir("kineto", "REFERENCE.json")
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory):
    def get(folder: str) -> JobDataset:
        if folder not in _DATASETS:
            src = fixtures_dir("kineto", folder)
            cache = tmp_path_factory.mktemp(f"cache_{folder}")
            _DATASETS[folder] = ingest(open_source(str(src)), cache_dir=cache).dataset
        return _DATASETS[folder]

    return get


# --------------------------------------------------------------------------- HTA reference


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("rounding", ["none", "hta"])
def test_temporal_breakdown_matches_hta(folder, rounding, reference, datasets) -> None:
    ref = reference[folder]
    ours = temporal_breakdown(datasets(folder), rounding=rounding)
    if ref["temporal_breakdown"] is None:
        # HTA raised (no GPU events): we answer with an explicit empty table.
        assert "temporal_breakdown" in ref["errors"]
        assert ours.empty
        assert list(ours.columns)[:2] == ["rank", "kernel_time_ns"]
        return
    tol = TOL_PP if rounding == "none" else TOL_HTA_MODE
    assert sorted(ours["rank"]) == sorted(r["rank"] for r in ref["temporal_breakdown"])
    for row in ref["temporal_breakdown"]:
        got = ours[ours["rank"] == row["rank"]].iloc[0]
        for part in ("idle", "compute", "non_compute"):
            assert got[f"{part}_time_pct"] == pytest.approx(row[f"{part}_time_pctg"], abs=tol), part
        if rounding == "hta":  # the very same microseconds
            for part in ("idle", "compute", "non_compute", "kernel"):
                assert got[f"{part}_time_ns"] == row[f"{part}_time(us)"] * 1000, part
        total = got["compute_time_ns"] + got["non_compute_time_ns"] + got["idle_time_ns"]
        assert total == got["kernel_time_ns"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_idle_time_breakdown_matches_hta(folder, reference, datasets) -> None:
    """HTA's get_idle_time_breakdown (consecutive_kernel_delay=30 µs), per rank, stream and
    category: with HTA's whole-µs rounding the very same microseconds and ratios."""
    ref = reference[folder]
    ours = idle_time_breakdown(datasets(folder), rounding="hta")
    if ref.get("idle_time_breakdown") is None:
        assert "idle_time_breakdown" in ref["errors"]  # HTA raised: no GPU events
        assert ours.empty and list(ours.columns) == IDLE_COLUMNS
        return
    got = {(int(r.rank), int(r.stream), r.idle_category): r for r in ours.itertuples()}
    expected_keys = {
        (e["rank"], e["stream"], e["idle_category"]) for e in ref["idle_time_breakdown"]
    }
    for e in ref["idle_time_breakdown"]:
        row = got[(e["rank"], e["stream"], e["idle_category"])]
        assert row.idle_time_ns == pytest.approx(e["idle_time"] * 1000, abs=1), e
        if e["idle_time_ratio"] is None:
            assert math.isnan(row.idle_time_ratio)
        else:
            assert row.idle_time_ratio == pytest.approx(e["idle_time_ratio"], abs=0.0051), e
    # HTA lists only the categories that occur; ours lists all three, with zeros
    assert all(r.idle_time_ns == 0 for k, r in got.items() if k not in expected_keys)
    assert {(k[0], k[1]) for k in got} == {(k[0], k[1]) for k in expected_keys}


@pytest.mark.parametrize("folder", FOLDERS)
def test_kernel_launch_stats_match_hta(folder, reference, datasets) -> None:
    """HTA's get_cuda_kernel_launch_stats per rank (cutoffs 50 / 100 µs): with HTA's
    whole-µs rounding the same launches, means, maximum and outlier counts."""
    ref = reference[folder]["cuda_kernel_launch_stats"]
    ours = kernel_launch_summary(kernel_launch_stats(datasets(folder), rounding="hta")).set_index(
        "rank"
    )
    for rank, e in ref.items():
        if e["n"] == 0:
            assert int(rank) not in ours.index  # no GPU events: no row, no exception
            continue
        got = ours.loc[int(rank)]
        assert got["kernels"] == e["n"]
        for ours_col, ref_key in (
            ("cpu_duration_mean_ns", "cpu_duration_mean"),
            ("gpu_duration_mean_ns", "gpu_duration_mean"),
            ("launch_delay_mean_ns", "launch_delay_mean"),
            ("launch_delay_max_ns", "launch_delay_max"),
        ):
            assert got[ours_col] == pytest.approx(e[ref_key] * 1000, rel=1e-9), ref_key
        assert got["short_kernels"] == e["short_kernels(gpu<cpu and cpu<=50)"]
        assert got["runtime_outliers"] == e["runtime_outliers(cpu>50)"]
        assert got["launch_delay_outliers"] == e["launch_delay_outliers(>100)"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_gpu_annotation_breakdown_matches_hta(folder, reference, datasets) -> None:
    """HTA's get_gpu_user_annotation_breakdown: per rank and label, the same sum, max, min,
    mean and standard deviation (µs, with HTA's rounding); none where HTA found none."""
    ref = reference[folder]["gpu_user_annotation_breakdown"]
    ours = gpu_annotation_breakdown(datasets(folder), rounding="hta")
    if ref is None:
        assert ours.empty and list(ours.columns) == ANNOTATION_COLUMNS
        return
    assert len(ours) == len(ref)
    got = {(int(r.rank), r.name): r for r in ours.itertuples()}
    for e in ref:
        r = got[(e["rank"], e["name"])]
        assert (
            r.total_ns == e["sum (us)"] * 1000
            and r.max_ns == e["max (us)"] * 1000
            and r.min_ns == e["min (us)"] * 1000
        )
        assert r.mean_ns == pytest.approx(e["mean (us)"] * 1000) and r.std_ns == pytest.approx(
            e["stddev"] * 1000
        )
    assert ours.groupby("rank")["pct"].sum().round(6).eq(100).all()


def test_idle_time_breakdown_categories() -> None:
    """A hand-made stream: a host-wait gap, a short back-to-back gap and a long other gap."""
    us = 1000
    rows = [
        # rank, cat, name, start, dur, correlation, stream
        (0, "cuda_runtime", "cudaLaunchKernel", 0, 5 * us, 1, None),
        (0, "kernel", "k1", 10 * us, 100 * us, 1, 7),
        (0, "cuda_runtime", "cudaLaunchKernel", 120 * us, 5 * us, 2, None),  # after k1 ended
        (0, "kernel", "k2", 130 * us, 50 * us, 2, 7),  # 20 µs gap: host wait
        (0, "cuda_runtime", "cudaLaunchKernel", 140 * us, 5 * us, 3, None),
        (0, "kernel", "k3", 190 * us, 10 * us, 3, 7),  # 10 µs gap, launched early: kernel wait
        (0, "cuda_runtime", "cudaLaunchKernel", 150 * us, 5 * us, 4, None),
        (0, "kernel", "k4", 400 * us, 10 * us, 4, 7),  # 200 µs gap, launched early: other
    ]
    table = pa.table(
        {
            "rank": pa.array([r[0] for r in rows], pa.int32()),
            "cat": [r[1] for r in rows],
            "name": [r[2] for r in rows],
            "start_ns": pa.array([r[3] for r in rows], pa.int64()),
            "dur_ns": pa.array([r[4] for r in rows], pa.int64()),
            "correlation": pa.array([r[5] for r in rows], pa.int64()),
            "stream": pa.array([r[6] for r in rows], pa.int64()),
        }
    )
    out = idle_time_breakdown(table).set_index("idle_category")
    assert out.loc["host_wait", "idle_time_ns"] == 20 * us
    assert out.loc["kernel_wait", "idle_time_ns"] == 10 * us
    assert out.loc["other", "idle_time_ns"] == 200 * us
    assert list(out["idle_intervals"]) == [1, 1, 1]
    assert out["idle_time_ratio"].sum() == pytest.approx(1.0)
    by_rank = idle_time_by_rank(out.reset_index())
    assert by_rank.loc[0, "idle_ns"] == 230 * us
    assert by_rank.loc[0, "host_wait_pct"] == pytest.approx(100 * 20 / 230)
    launches = kernel_launch_stats(table)
    assert list(launches["name"]) == ["k1", "k2", "k3", "k4"]
    assert list(launches["launch_delay_ns"]) == [5 * us, 5 * us, 45 * us, 245 * us]
    assert list(launches["cpu_duration_ns"]) == [5 * us] * 4
    summary = kernel_launch_summary(launches, launch_delay_cutoff_ns=100 * us)
    assert summary.loc[0, "launch_delay_outliers"] == 1 and summary.loc[0, "short_kernels"] == 0


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("rounding", ["none", "hta"])
def test_kernel_type_breakdown_per_rank_matches_hta(folder, rounding, reference, datasets) -> None:
    per_rank = reference[folder]["kernel_type_breakdown_per_rank"]
    ours = kernel_type_breakdown(datasets(folder), rounding=rounding)
    tol = TOL_PP if rounding == "none" else TOL_HTA_MODE
    for rank_key, rows in per_rank.items():
        if rank_key.endswith("_raw_dur_sum_by_type"):
            continue
        mine = ours[ours["rank"] == int(rank_key)].set_index("kernel_type")
        if not rows:  # CPU-only rank: explicit empty result
            assert mine.empty
            continue
        theirs = {r["kernel_type"]: r for r in rows}
        for kernel_type in set(theirs) | set(mine.index):
            want = theirs[kernel_type]["percentage"] if kernel_type in theirs else 0.0
            got = float(mine["pct"].get(kernel_type, 0.0))
            assert got == pytest.approx(want, abs=tol), (rank_key, kernel_type)
            if rounding == "hta":
                assert kernel_type in theirs and kernel_type in mine.index
                assert mine.loc[kernel_type, "time_ns"] == theirs[kernel_type]["sum"] * 1000


@pytest.mark.parametrize("folder", FOLDERS)
def test_kernel_type_breakdown_all_ranks_matches_hta(folder, reference, datasets) -> None:
    rows = reference[folder]["kernel_type_breakdown"]
    cases: list[tuple[Rounding, float]] = [("none", TOL_PP), ("hta", 0.051)]
    for rounding, tol in cases:
        ours = kernel_type_breakdown(datasets(folder), rounding=rounding, per_rank=False)
        assert "rank" not in ours.columns
        if not rows:
            assert ours.empty
            continue
        mine = ours.set_index("kernel_type")["pct"]
        for r in rows:
            assert float(mine.get(r["kernel_type"], 0.0)) == pytest.approx(r["percentage"], abs=tol)


@pytest.mark.parametrize("folder", FOLDERS)
def test_raw_duration_sums_by_class_match_hta(folder, reference, datasets) -> None:
    per_rank = reference[folder]["kernel_type_breakdown_per_rank"]
    totals = kernel_class_totals(datasets(folder), rounding="hta")
    for rank_key, sums in per_rank.items():
        if not rank_key.endswith("_raw_dur_sum_by_type"):
            continue
        rank = int(rank_key.split("_")[0])
        mine = totals[totals["rank"] == rank].set_index("kernel_class")["total_ns"]
        assert dict(mine / 1000) == pytest.approx(sums)


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("rounding", ["none", "hta"])
def test_comm_comp_overlap_matches_hta(folder, rounding, reference, datasets) -> None:
    ours = communication_summary(datasets(folder), rounding=rounding).set_index("rank")
    tol = TOL_PP if rounding == "none" else TOL_HTA_MODE
    for row in reference[folder]["comm_comp_overlap"]:
        got = ours.loc[row["rank"], "comm_comp_overlap_pct"]
        if row["comp_comm_overlap_pctg"] is None:
            assert math.isnan(got)  # no communication kernels on that rank
            assert ours.loc[row["rank"], "comm_time_ns"] == 0
        else:
            assert got == pytest.approx(row["comp_comm_overlap_pctg"], abs=tol)


@pytest.mark.parametrize("folder", FOLDERS)
def test_communication_summary_is_consistent(folder, datasets) -> None:
    s = communication_summary(datasets(folder))
    assert not s.empty
    assert (s["exposed_comm_ns"] + s["overlapped_comm_ns"] == s["comm_time_ns"]).all()
    assert (s["comm_time_ns"] <= s["comm_kernel_time_ns"]).all()
    assert (s["comm_time_ns"] <= s["gpu_busy_ns"]).all()
    temporal = temporal_breakdown(datasets(folder)).set_index("rank")
    for _, row in s.iterrows():
        if row["rank"] in temporal.index:
            t = temporal.loc[row["rank"]]
            busy = t["compute_time_ns"] + t["non_compute_time_ns"]
            assert row["gpu_busy_ns"] == busy
            # Exposed communication is non-compute time.
            assert row["exposed_comm_ns"] <= t["non_compute_time_ns"]


def test_nccl_collectives_sizes_and_bandwidth(datasets) -> None:
    ds = datasets("nccl_2rank_rank0")
    calls = collective_calls(ds)
    assert set(calls["device"]) == {"gpu"}
    assert set(calls["collective"]) == {"allreduce", "broadcast"}
    assert calls["msg_bytes"].notna().all()  # sizes on the kernels themselves
    assert (calls["size_source"] == "kernel").all()
    assert (calls["group_size"] == 2).all()
    expected = calls["msg_bytes"].astype(float) / calls["dur_ns"]
    np.testing.assert_allclose(calls["algbw_gbps"], expected)
    # all-reduce over 2 ranks: busbw = algbw * 2(n-1)/n = algbw
    ar = calls[calls["collective"] == "allreduce"]
    np.testing.assert_allclose(ar["busbw_gbps"], ar["algbw_gbps"])
    summary = collective_summary(ds).set_index("collective")
    assert summary.loc["allreduce", "calls"] == len(ar)
    assert summary.loc["allreduce", "total_bytes"] == ar["msg_bytes"].sum()
    assert summary.loc["allreduce", "algbw_gbps"] == pytest.approx(
        ar["msg_bytes"].sum() / ar["dur_ns"].sum()
    )
    # HTA's scope trims the last ProfilerStep: every kernel is a communication GPU kernel.
    comm = communication_summary(ds).iloc[0]
    assert comm["collective_kernels"] == len(calls)


def test_sampled_collectives_typed_from_enclosing_record_functions(datasets) -> None:
    calls = collective_calls(datasets("sampled_128rank"))
    # All kernels are ncclKernel_SendRecv; the type comes from nccl:<collective> ops.
    assert set(calls["name"].str.split("(").str[0]) == {
        "ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t"
    }
    by_rank = calls.groupby("rank")["collective"].value_counts().unstack(fill_value=0)
    assert by_rank.loc[0].to_dict() == {"allgather": 1, "allreduce": 2, "alltoall": 2}
    assert calls["msg_bytes"].isna().all()  # the old trace records no sizes
    assert calls["algbw_gbps"].isna().all()


def test_cpu_only_gloo_collectives(datasets) -> None:
    ds = datasets("cpu_only")
    assert gpu_events(ds).empty
    assert kernel_type_breakdown(ds).empty
    assert top_kernels(ds).empty
    calls = collective_calls(ds)
    assert len(calls) == 10
    assert set(calls["device"]) == {"cpu"} and set(calls["library"]) == {"gloo"}
    assert set(calls["collective"]) == {"allreduce"}
    s = communication_summary(ds).iloc[0]
    assert s["rank"] == 34 and s["cpu_collective_calls"] == 10
    assert 0 < s["cpu_comm_time_ns"] <= calls["dur_ns"].sum()
    assert s["comm_time_ns"] == 0 and math.isnan(s["comm_comp_overlap_pct"])


def test_top_kernels(datasets) -> None:
    ds = datasets("resnet_single")
    top = top_kernels(ds, n=5)
    assert (top.groupby(["rank", "kernel_class"]).size() <= 5).all()
    comp = top[top["kernel_class"] == COMPUTATION]
    assert list(comp["position"]) == [1, 2, 3, 4, 5]
    assert comp["total_ns"].is_monotonic_decreasing
    totals = kernel_class_totals(ds).set_index("kernel_class")
    assert comp["pct_of_class"].iloc[0] == pytest.approx(
        100 * comp["total_ns"].iloc[0] / totals.loc[COMPUTATION, "total_ns"]
    )
    flat = top_kernels(ds, n=3, by_class=False)
    assert len(flat) == 3 and flat["total_ns"].is_monotonic_decreasing


# --------------------------------------------------------------------------- intervals


def _brute_union(start, end) -> int:
    covered: set[int] = set()
    for s, e in zip(start, end, strict=True):
        covered.update(range(s, e))
    return len(covered)


def test_merge_and_union_basic() -> None:
    s, e = merge_intervals([5, 0, 2, 10, 12], [7, 3, 4, 12, 15])
    assert s.tolist() == [0, 5, 10] and e.tolist() == [4, 7, 15]  # touching 10-12, 12-15 merge
    assert union_length([0, 1], [10, 5]) == 10
    assert union_length([], []) == 0
    assert union_length([3], [3]) == 0


def test_grouped_union() -> None:
    m = merge_intervals_grouped([1, 0, 1, 0], [0, 0, 5, 8], [10, 4, 20, 10])
    assert m.to_dict("list") == {"group": [0, 0, 1], "start": [0, 8, 0], "end": [4, 10, 20]}
    lengths = union_length_grouped(["b", "a", "b"], [0, 0, 5], [10, 4, 12])
    assert lengths.to_dict() == {"a": 4, "b": 12}


def test_intersection_and_subtraction() -> None:
    # A = [0,10) ∪ [20,30); B = [5,25)
    assert intersection_length([0, 20], [10, 30], [5], [25]) == 10
    assert subtract_length([0, 20], [10, 30], [5], [25]) == 10
    assert subtract_length([5], [25], [0, 20], [10, 30]) == 10
    assert intersection_length([0], [10], [], []) == 0
    assert subtract_length([0], [10], [], []) == 10


def test_state_durations_against_brute_force() -> None:
    rng = np.random.default_rng(7)
    n = 400
    group = rng.integers(0, 3, n)
    start = rng.integers(0, 2000, n)
    end = start + rng.integers(0, 60, n)
    cls = rng.integers(0, 3, n)
    got = state_durations(group, start, end, cls, n_classes=3)
    for g in range(3):
        state_at = np.zeros(2100, dtype=np.int64)
        for s, e, c in zip(start[group == g], end[group == g], cls[group == g], strict=True):
            state_at[s:e] |= 1 << c
        want = {
            int(st): int((state_at == st).sum()) for st in range(1, 8) if (state_at == st).any()
        }
        mine = got[got["group"] == g].set_index("state")["duration"].to_dict()
        assert mine == want
        assert sum(want.values()) == _brute_union(start[group == g], end[group == g])


def test_state_durations_is_vectorised_on_big_inputs() -> None:
    import time

    n = 1_000_000
    rng = np.random.default_rng(0)
    start = np.sort(rng.integers(0, 10**12, n))
    end = start + rng.integers(1, 10**6, n)
    t0 = time.perf_counter()
    out = state_durations(rng.integers(0, 8, n), start, end, rng.integers(0, 3, n), n_classes=3)
    assert time.perf_counter() - t0 < 20  # ~1-2 s here; a per-row loop would take minutes
    assert out["duration"].sum() > 0


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("name", "klass", "library"),
    [
        (
            "ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)",
            COMMUNICATION,
            "nccl",
        ),
        (
            "ncclDevKernel_AllGather_RING_LL(ncclDevComm*, unsigned long, ncclWork*)",
            COMMUNICATION,
            "nccl",
        ),
        ("void ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t(ncclDevComm*)", COMMUNICATION, "nccl"),
        ("nccl:all_reduce", COMMUNICATION, "nccl"),
        ("gloo:all_reduce", COMMUNICATION, "gloo"),
        ("gloo:broadcast", COMMUNICATION, "gloo"),
        ("smddp::AllReduce", COMMUNICATION, "smddp"),
        ("herring_allreduce_kernel", COMMUNICATION, "smddp"),
        ("SMDDPAllGather", COMMUNICATION, "smddp"),
        ("HorovodAllreduce_grad_0", COMMUNICATION, "horovod"),
        ("horovod_allreduce", COMMUNICATION, "horovod"),
        ("NEGOTIATE_ALLREDUCE", COMMUNICATION, "horovod"),
        ("MPI_ALLREDUCE", COMMUNICATION, "horovod"),
        ("ALLREDUCE", COMMUNICATION, "horovod"),
        ("MPI_Allreduce", COMMUNICATION, "mpi"),
        ("c10d::allreduce_", COMMUNICATION, "c10d"),
        ("record_param_comms", COMMUNICATION, "c10d"),
        ("Memcpy HtoD (Pageable -> Device)", MEMORY, "cuda"),
        ("Memcpy DtoD (Device -> Device)", MEMORY, "cuda"),
        ("Memset (Device)", MEMORY, "cuda"),
        ("Stream Sync", OTHER, "cuda"),
        ("Context Sync", OTHER, "cuda"),
        ("Stream Wait Event", OTHER, "cuda"),
        ("volta_sgemm_128x64_nn", COMPUTATION, ""),
        ("void at::native::vectorized_elementwise_kernel<4, ...>", COMPUTATION, ""),
        ("aten::copy_", COMPUTATION, ""),
    ],
)
def test_classification_table(name: str, klass: str, library: str) -> None:
    got = classify([name])
    assert got["kernel_class"].iloc[0] == klass
    assert got["library"].iloc[0] == library
    assert kernel_class(name) == klass


def test_classify_is_vectorised_over_arrow_and_pandas_inputs() -> None:
    names = ["ncclKernel_x", "Memset (Device)", "gemm", None, "ncclKernel_x"]
    want = [COMMUNICATION, MEMORY, COMPUTATION, COMPUTATION, COMMUNICATION]
    inputs = [
        pa.array(names, type=pa.string()),
        pa.array(names).dictionary_encode(),
        pa.chunked_array([pa.array(names[:2]), pa.array(names[2:])]),
        pd.Series(names, dtype=object),
        pd.Series(names, dtype="category"),
        names,
    ]
    for x in inputs:
        assert classify(x)["kernel_class"].astype(object).tolist() == want, type(x)
    assert classify(pa.array([], type=pa.string())).empty


def test_table_rows_are_well_formed() -> None:
    import re

    for rule in KERNEL_CLASS_TABLE:
        re.compile(rule.pattern)
        assert rule.kernel_class in (COMMUNICATION, MEMORY, OTHER, COMPUTATION)
        assert rule.library


def test_normalize_collective() -> None:
    cases = {
        "allreduce": "allreduce",
        "all_reduce": "allreduce",
        "AllReduce": "allreduce",
        "_all_gather_base": "allgather",
        "all_gather_into_tensor": "allgather",
        "allgather_into_tensor_coalesced": "allgather",
        "_reduce_scatter_base": "reducescatter",
        "reduce_scatter_tensor": "reducescatter",
        "all_to_all": "alltoall",
        "alltoall_base": "alltoall",
        "all_to_allv": "alltoall",
        "SendRecv": "sendrecv",
        "send": "send",
        "recv": "recv",
        "broadcast": "broadcast",
        "barrier": "barrier",
    }
    for raw, want in cases.items():
        assert normalize_collective(raw) == want, raw
    assert normalize_collective(None) is None


# --------------------------------------------------------------------------- synthetic traces


def _events(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=KINETO_EVENTS)


def _kernel(rank, name, start, dur, corr=None, stream=7, **kw):
    return {
        "rank": rank,
        "cat": "kernel",
        "name": name,
        "phase": "X",
        "start_ns": start,
        "dur_ns": dur,
        "stream": stream,
        "correlation": corr,
        **kw,
    }


def test_synthetic_breakdowns() -> None:
    t = _events(
        [
            _kernel(0, "gemm", 0, 100),
            _kernel(0, "ncclKernel_AllReduce_RING", 50, 100, stream=20),  # 50 overlapped
            _kernel(0, "Memcpy DtoH (Device -> Pinned)", 300, 50, stream=9),
            {
                "rank": 0,
                "cat": "cuda_sync",
                "name": "Stream Sync",
                "start_ns": 360,
                "dur_ns": 40,
                "stream": 7,
                "correlation": 5,
            },
            {"rank": 0, "cat": "cpu_op", "name": "aten::mm", "start_ns": 0, "dur_ns": 10},
        ]
    )
    kb = kernel_type_breakdown(t).set_index("kernel_type")["time_ns"].to_dict()
    assert kb == {
        "COMPUTATION": 50,
        "COMPUTATION overlapping COMMUNICATION": 50,
        "COMMUNICATION": 50,
        "MEMORY": 50,
    }
    tb = temporal_breakdown(t).iloc[0]
    assert tb["kernel_time_ns"] == 400
    assert tb["compute_time_ns"] == 100
    assert tb["non_compute_time_ns"] == 50 + 50 + 40  # comm, memcpy, sync
    assert tb["idle_time_ns"] == 400 - 240
    cs = communication_summary(t).iloc[0]
    assert cs["comm_time_ns"] == 100 and cs["overlapped_comm_ns"] == 50
    assert cs["exposed_comm_ns"] == 50 and cs["comm_comp_overlap_pct"] == 50.0
    assert cs["gpu_busy_ns"] == 240
    assert cs["comm_share_pct"] == pytest.approx(100 * 100 / 240)
    # pandas input gives the same answer, also with only the columns that matter
    assert temporal_breakdown(t.to_pandas()).equals(temporal_breakdown(t))
    slim = t.to_pandas()[["rank", "cat", "name", "start_ns", "dur_ns", "stream", "correlation"]]
    assert communication_summary(slim).equals(communication_summary(t))
    assert len(collective_calls(slim)) == 1


def test_scope_trims_kernels_launched_in_the_last_profiler_step() -> None:
    def step(n, start, dur):
        return {
            "rank": 0,
            "cat": "user_annotation",
            "name": f"ProfilerStep#{n}",
            "start_ns": start,
            "dur_ns": dur,
        }

    def launch(corr, start):
        return {
            "rank": 0,
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            "start_ns": start,
            "dur_ns": 5,
            "correlation": corr,
        }

    rows = [
        step(1, 0, 1000),
        step(2, 1000, 1000),
        launch(1, 10),
        _kernel(0, "gemm", 20, 100, corr=1),
        launch(2, 990),
        _kernel(0, "gemm", 1005, 100, corr=2),  # launched in step 1
        launch(3, 1100),
        _kernel(0, "gemm", 1200, 100, corr=3),  # launched in the last step
    ]
    t = _events(rows)
    assert len(gpu_events(t)) == 2
    assert len(gpu_events(t, scope="all")) == 3
    # With a single step nothing is trimmed (HTA does the same).
    single = _events([r for r in rows if r["name"] != "ProfilerStep#2"])
    assert len(gpu_events(single)) == 3
    # The GPU runs behind the CPU: PyTorch's GPU-side copy of step 2 (gpu_user_annotation)
    # starts when the GPU gets there, after the CPU launched corr 3. The trim follows the
    # CPU's step, so the kernel launched in the last step is still left out.
    behind = _events([*rows, {**step(2, 1150, 900), "cat": "gpu_user_annotation", "stream": 7}])
    assert sorted(gpu_events(behind)["correlation"]) == [1, 2]


def test_collective_linked_through_external_id_and_enclosing_ops() -> None:
    rows = [
        # Kernel without args; record_param_comms with the same external id has the sizes.
        {
            "rank": 0,
            "cat": "cpu_op",
            "name": "record_param_comms",
            "tid": 1,
            "start_ns": 0,
            "dur_ns": 50,
            "external_id": 11,
            "collective": "allreduce",
            "in_msg_nelems": 250,
            "out_msg_nelems": 250,
            "dtype": "Float",
            "msg_bytes": 1000,
            "group_size": 4,
        },
        {
            "rank": 0,
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            "tid": 1,
            "start_ns": 10,
            "dur_ns": 5,
            "correlation": 100,
            "external_id": 11,
        },
        _kernel(0, "ncclDevKernel_Generic", 100, 500, corr=100, external_id=11),
        # Kernel typed by the enclosing nccl:<collective> record function.
        {
            "rank": 0,
            "cat": "user_annotation",
            "name": "nccl:_all_gather_base",
            "tid": 1,
            "start_ns": 1000,
            "dur_ns": 100,
            "external_id": 20,
        },
        {
            "rank": 0,
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            "tid": 1,
            "start_ns": 1010,
            "dur_ns": 5,
            "correlation": 101,
            "external_id": 101,
        },
        _kernel(0, "ncclKernel_SendRecv_RING", 1100, 400, corr=101, external_id=101),
        # Kernel typed by its name only.
        _kernel(0, "ncclKernel_Broadcast_RING_LL", 2000, 10, corr=999),
    ]
    calls = collective_calls(_events(rows)).set_index("start_ns")
    first = calls.loc[100]
    assert first["collective"] == "allreduce" and first["msg_bytes"] == 1000
    assert first["size_source"] == "record_param_comms"
    assert first["algbw_gbps"] == pytest.approx(1000 / 500)
    assert first["busbw_gbps"] == pytest.approx(2.0 * 2 * 3 / 4)
    assert calls.loc[1100, "collective"] == "allgather"
    assert pd.isna(calls.loc[1100, "msg_bytes"])
    assert calls.loc[2000, "collective"] == "broadcast"


def test_empty_inputs() -> None:
    empty = KINETO_EVENTS.empty_table()
    assert temporal_breakdown(empty).empty
    assert kernel_type_breakdown(empty).empty
    assert kernel_class_totals(empty).empty
    assert communication_summary(empty).empty
    assert collective_calls(empty).empty
    assert collective_summary(empty).empty


def test_step_timeline_shows_the_straggler_and_the_wait() -> None:
    """The bundled sample, step 5: both ranks wait ~50 ms for data; rank 0 then sits ~40 ms
    in gloo:all_reduce waiting for rank 1, whose own extra work leaves it only the transfer."""
    import tempfile

    from analyzer.analyses.timeline import step_timeline

    sample = Path(__file__).resolve().parents[1] / "samples" / "sample-job"
    with tempfile.TemporaryDirectory() as tmp:
        ds = ingest(open_source(str(sample)), cache_dir=tmp).dataset
        tl = step_timeline(ds, 5)  # the events stay in the cache's per-rank parts
    assert set(tl["rank"]) == {0, 1} and tl.attrs["dropped"] == 0
    loads = tl[tl["kind"] == "data loading"].groupby("rank")["dur_ms"].sum()
    assert ((loads > 45) & (loads < 55)).all(), loads
    coll = tl[tl["name"] == "gloo:all_reduce"].set_index("rank")["dur_ms"]
    assert coll[0] > 30 and coll[1] < 10 and coll[0] - coll[1] > 25
    assert tl["start_ms"].min() >= 0 and (tl["kind"] == "communication").any()
    lanes = tl.drop_duplicates("lane").sort_values("lane_order")["lane"].tolist()
    assert lanes[0] == "rank 0 · CPU 0" and lanes.index("rank 1 · CPU 0") > lanes.index(
        "rank 0 · CPU 1"
    )
    assert step_timeline(ds, 999).empty


# --------------------------------------------------------------------------- GPU events by category


def test_an_inductor_launch_record_with_a_stream_is_not_gpu_work(datasets) -> None:
    """``triton_compile/`` (a real torch.compile trace): the ``cpu_op`` that launches the
    Triton kernel carries ``args.stream`` (Inductor's launch record, seen in the trace), yet
    runs on the CPU. The GPU events are chosen by category: only the kernel is GPU work, and
    the GPU's busy time is the kernel's, not the launch record's."""
    ds = datasets("triton_compile")
    events = ds.table("kineto_events").to_pandas()
    cat = events["cat"].astype(object)
    launch = events[(cat == "cpu_op") & events["stream"].notna() & (events["stream"] != -1)]
    assert len(launch) == 1  # the fixture's layout, as the test needs it
    gpu = gpu_events(ds, scope="all")
    assert list(gpu["cat"].astype(object)) == ["kernel"]
    kernel = gpu.iloc[0]
    busy = temporal_breakdown(ds).iloc[0]
    assert busy["compute_time_ns"] + busy["non_compute_time_ns"] == kernel["dur_ns"]


def test_rocm_runtime_calls_with_a_stream_are_not_gpu_work(datasets) -> None:
    """``rocm_mi250_train/`` (a real MI250 trace): HIP runtime calls that take a stream
    (``hipMemcpyWithStream``, category ``cuda_runtime``) carry ``args.stream`` in the trace;
    the GPU events are the kernels and copies, one per GPU-side record."""
    ds = datasets("rocm_mi250_train")
    events = ds.table("kineto_events").to_pandas()
    cat = events["cat"].astype(object)
    on_stream = events["stream"].notna() & (events["stream"] != -1)
    gpu = gpu_events(ds, scope="all")
    assert set(gpu["cat"].astype(object)) <= {"kernel", "gpu_memcpy", "gpu_memset"}
    assert len(gpu) == int((on_stream & cat.isin(["kernel", "gpu_memcpy", "gpu_memset"])).sum())


def test_hip_launch_calls_are_paired_with_their_kernels(datasets) -> None:
    """``rocm_mi250_train/``: the launch analysis knows HIP's runtime names from the same
    table as CUDA's (kernel_classes.LAUNCH_CALLS): its 12 ``hipLaunchKernel`` and 2
    ``hipExtModuleLaunchKernel`` calls are paired with their kernels and its 2
    ``hipMemcpyWithStream`` with their copies (it was empty: CUDA names only)."""
    ds = datasets("rocm_mi250_train")
    stats = kernel_launch_stats(ds, scope="all")
    gpu = gpu_events(ds, scope="all").set_index("correlation")["cat"].astype(object)
    paired = gpu.loc[stats["correlation"]].value_counts().to_dict()
    assert paired == {"kernel": 14, "gpu_memcpy": 2}  # every GPU event of the trace
    assert (stats["gpu_duration_ns"] >= 0).all() and (stats["launch_delay_ns"] >= 0).all()
    summary = kernel_launch_summary(stats)
    assert len(summary) == 1 and int(summary.iloc[0]["kernels"]) > 0

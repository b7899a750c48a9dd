"""Communication by parallel dimension (``analyzer.analyses.parallelism``) on GPU traces.

The recorded jobs (FSDP2, pipelines, a 2-D mesh; torch CPU, gloo) are in
tests/test_parallelism_recorded.py. Here: Kineto traces written in the shape PyTorch's
profiler gives NCCL jobs (kernels carrying ``Collective name``, message sizes, ``Process
Group Name``; ``distributedInfo.pg_config`` naming the groups), for what no CPU run can
show: GPU kernels, group names as DeviceMesh, Megatron and DeepSpeed give them, expert
all-to-all, many small collectives. Each trace is built from a plan with a known answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.analyses.cross_rank import match_collectives
from analyzer.analyses.parallelism import classify_groups
from analyzer.job import Job
from analyzer.sources import open_source
from rules.engine import evaluate
from rules.ruleset import RuleFileError, load_ruleset
from tests.support import kineto_synth as synth
from tests.support.fixtures import fixtures_dir


def _job(folder: Path, tmp: Path, **kw: Any) -> Job:
    return Job.open(open_source(str(folder)), cache_dir=str(tmp / "cache"), **kw)


def _tp_dp_job(tmp: Path, descs: tuple[str, str], **kw: Any) -> Job:
    return _job(synth.tp_dp(tmp / "tpdp", descs), tmp, **kw)


def test_tensor_and_data_parallel_groups_by_their_ops_and_their_figures(tmp_path: Path) -> None:
    job = _tp_dp_job(tmp_path, ("undefined", "undefined"))  # names that say nothing
    groups = job.process_groups().set_index("group")
    assert groups["dimension"].to_dict() == {"1": "tensor", "2": "tensor", "3": "data", "4": "data"}
    assert "inside the forward" in groups.at["1", "evidence"]
    assert json.loads(groups.at["3", "ranks"]) == [0, 2]
    summary = job.group_summary().set_index(["rank", "group"])
    tp = summary.loc[(0, "1")]
    assert tp["calls_per_step"] == 8
    assert tp["time_ms_per_step"] == pytest.approx(8 * 0.2)
    assert tp["exposed_ms_per_step"] == pytest.approx(8 * 0.2)  # nothing computes meanwhile
    # NCCL's all-reduce bus bandwidth: algbw × 2(n-1)/n with n = 2
    assert tp["algbw_gbps"] == pytest.approx(4 * (1 << 20) / 200_000)
    assert tp["busbw_gbps"] == pytest.approx(tp["algbw_gbps"])
    dp = summary.loc[(0, "3")]
    # [8.5, 9.5) ms against the last matmul, [8.0, 8.7): 0.8 ms exposed
    assert dp["exposed_ms_per_step"] == pytest.approx(0.8)
    assert dp["share_pct"] == pytest.approx(100 * 0.8 / 10)
    dims = job.dimension_summary().set_index("dimension")
    assert dims.at["tensor", "exposed_ms_per_step"] == pytest.approx(1.6)
    assert dims.at["data", "exposed_ms_per_step"] == pytest.approx(0.8)
    assert list(dims.index) == ["tensor", "data"]  # the costlier first
    # the tensor-parallel groups' calls still match across their ranks
    assert match_collectives(job.collective_arrivals()).mismatches.empty


@pytest.mark.parametrize(
    ("descs", "expected"),
    [
        (("mesh_tp", "mesh_dp"), ("tensor", "data")),  # DeviceMesh (torchtitan, SMP v2)
        (("mesh_tp", "mesh_dp_replicate"), ("tensor", "data")),  # HSDP's replicate dim
        (("tensor_model_parallel", "data_parallel"), ("tensor", "data")),  # Megatron-style
        (("mesh_ep", "mesh_dp_shard"), ("expert", "fsdp")),  # names win over the ops
    ],
)
def test_group_descriptions_name_the_dimension(
    tmp_path: Path, descs: tuple[str, str], expected: tuple[str, str]
) -> None:
    groups = _tp_dp_job(tmp_path, descs).process_groups().set_index("group")
    assert groups.at["1", "dimension"] == expected[0]
    assert groups.at["3", "dimension"] == expected[1]
    assert "description" in groups.at["1", "evidence"]


def test_the_rule_file_names_a_group_the_analysis_cannot_tell(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[parallelism]\ngroups = { "3" = "expert", "undefined" = "context" }\n')
    ruleset = load_ruleset(rules)
    job = _tp_dp_job(tmp_path, ("undefined", "undefined"), group_names=ruleset.parallelism.groups)
    groups = job.process_groups().set_index("group")
    assert groups.at["3", "dimension"] == "expert"  # by its name
    assert groups.at["1", "dimension"] == "context"  # by its description
    assert "rule file" in groups.at["3", "evidence"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[parallelism]\ngroups = { "3" = "sideways" }\n')
    with pytest.raises(RuleFileError, match=r"\[parallelism\].*'sideways' is not one of"):
        load_ruleset(bad)


def test_zero3_is_recognised_by_its_ops_and_the_exposed_sharding_rule_fires(
    tmp_path: Path,
) -> None:
    job = _job(synth.zero3(tmp_path / "zero3"), tmp_path)
    groups = job.process_groups()
    assert groups["dimension"].tolist() == ["fsdp"]
    assert "reduce-scatters" in groups["evidence"].iloc[0]
    summary = job.group_summary().set_index(["rank", "op"])
    assert summary.loc[(0, "allgather"), "exposed_ms_per_step"] == pytest.approx(1.2)
    assert summary.loc[(0, "reducescatter"), "exposed_ms_per_step"] == pytest.approx(1.2)
    tails = job._per_rank("reduction_tails")
    # the last reduce-scatter, [8.6, 8.9) ms, runs after the last matmul ends at 8.6 ms
    assert tails["tail_ns"].tolist() == [300_000] * 4
    results = {r.rule: r for r in evaluate(job, load_ruleset())}
    found = results["ExposedShardedCommunication"].findings
    assert sorted(f.evidence["rank"] for f in found) == [0, 1]
    f = found[0]
    assert f.evidence["exposed_ms_per_step"] == pytest.approx(2.4)
    assert f.evidence["share_pct"] == pytest.approx(24.0)
    assert "group 0 (undefined)" in f.where
    # ZeRO marks no FSDP units: the split by unit is FSDP2's only
    assert "worst_unit" not in f.evidence


def test_expert_all_to_all_imbalance_names_the_heavy_rank(tmp_path: Path) -> None:
    job = _job(synth.moe(tmp_path / "moe", heavy_rank=2, factor=3), tmp_path)
    assert job.process_groups().set_index("group").at["5", "dimension"] == "expert"
    found = next(r for r in evaluate(job, load_ruleset()) if r.rule == "AllToAllImbalance")
    assert [f.evidence["rank"] for f in found.findings] == [2]
    assert found.findings[0].evidence["measure"] == "bytes"
    assert found.findings[0].evidence["ratio"] == pytest.approx(3.0)


def test_many_small_collectives_fire_with_their_size_and_cost(tmp_path: Path) -> None:
    job = _job(synth.small_collectives(tmp_path / "small"), tmp_path)
    found = next(r for r in evaluate(job, load_ruleset()) if r.rule == "SmallCollectives")
    assert sorted(f.evidence["rank"] for f in found.findings) == [0, 1]
    ev = found.findings[0].evidence
    assert ev["calls_per_step"] == 80 and ev["mean_bytes"] == 65536
    assert ev["exposed_ms_per_step"] == pytest.approx(1.6)
    assert ev["dimension"] == "data"


P, M, F, B = 4, 4, 1_000.0, 2_000.0  # stages, micro-batches, forward and backward µs


def test_gpu_pipeline_bubble_is_the_schedules_ideal_and_a_slow_stage_sets_the_pace(
    tmp_path: Path,
) -> None:
    """GPipe on GPUs, timed by the schedule itself (tests/support/kineto_synth.py): with
    equal stages each idles exactly (p-1)/(m+p-1) of the step; with stage 2 twice as slow
    the step is m·2c + (p-1)·c and the others idle 1 - m/(2m+p-1) of it."""
    even = _job(synth.gpipe(tmp_path / "even", [(F, B)] * P, M), tmp_path / "a")
    assert even.process_groups()["dimension"].tolist() == ["pipeline"]
    assert even.cross_rank().mismatches.empty  # send/recv are not matched as collectives
    stages = even.pipeline_bubbles().set_index("stage")
    ideal = 100.0 * (P - 1) / (M + P - 1)
    assert stages["microbatches"].tolist() == [M] * P
    assert (stages["microbatch_source"] == "schedule").all()
    assert stages["bubble_pct"].to_numpy() == pytest.approx([ideal] * P, abs=1e-6)
    assert stages["ideal_pct"].to_numpy() == pytest.approx([ideal] * P)
    assert stages["compute_ms"].to_numpy() == pytest.approx([M * (F + B) / 1e3] * P)

    work = [(F, B), (F, B), (2 * F, 2 * B), (F, B)]
    slow = _job(synth.gpipe(tmp_path / "slow", work, M), tmp_path / "b")
    stages = slow.pipeline_bubbles().set_index("stage")
    _, _, length = synth.gpipe_times(work, M)
    assert length == M * 2 * (F + B) + (P - 1) * (F + B)
    others = 100.0 * (1 - M / (2 * M + P - 1))
    assert stages.loc[[0, 1, 3], "bubble_pct"].to_numpy() == pytest.approx([others] * 3)
    assert stages.loc[2, "bubble_pct"] == pytest.approx(100.0 * (1 - 2 * M / (2 * M + P - 1)))
    assert stages["slowest"].tolist() == [False, False, True, False]
    found = next(r for r in evaluate(slow, load_ruleset()) if r.rule == "PipelineBubble")
    assert sorted(f.evidence["stage"] for f in found.findings) == [0, 1, 3]
    assert found.findings[0].evidence["excess_points"] == pytest.approx(others - ideal, abs=0.01)
    quiet = next(r for r in evaluate(even, load_ruleset()) if r.rule == "PipelineBubble")
    assert quiet.findings == [] and quiet.skipped_reason is None
    # no collective matched across the stages (send/recv are not joined): the critical path
    # is found and stays on one rank per step (it raised KeyError before)
    path = slow.cross_rank_critical_path()
    assert set(path.ok.values()) == {True}
    assert (path.composition.groupby("step")["rank"].nunique() == 1).all()


def test_the_real_nccl_traces_groups(tmp_path: Path) -> None:
    """Real NCCL traces (HTA's test data). A 2-rank DDP job: one default group with the
    gradient all-reduces (and the parameter broadcast at start). Two ranks of a 128-rank
    job whose kernels name no group: one sequence per op, its all-to-all expert-like."""
    job = Job.open(
        open_source(str(fixtures_dir("kineto", "nccl_2rank_rank0"))), cache_dir=str(tmp_path / "a")
    )
    groups = job.process_groups()
    assert groups["group"].tolist() == ["0"] and groups["dimension"].tolist() == ["data"]
    assert groups["desc"].tolist() == ["default_pg"] and groups["ops"].tolist() == [
        "allreduce,broadcast"
    ]
    activity = job._per_rank("group_activity").set_index("op")
    assert activity.at["allreduce", "calls"] == 15 and activity.at["allreduce", "steps"] == 3
    assert 0 < activity.at["allreduce", "exposed_ns"] <= activity.at["allreduce", "time_ns"]
    sampled = Job.open(
        open_source(str(fixtures_dir("kineto", "sampled_128rank"))), cache_dir=str(tmp_path / "b")
    )
    dims = sampled.process_groups().set_index("group")["dimension"].to_dict()
    assert dims == {"?:allgather": "other", "?:allreduce": "data", "?:alltoall": "expert"}


def test_classify_groups_without_activity_is_an_empty_table() -> None:
    import pandas as pd

    from analyzer.analyses.parallelism import ACTIVITY_COLUMNS

    out = classify_groups(pd.DataFrame(columns=ACTIVITY_COLUMNS))
    assert out.empty and "dimension" in out.columns

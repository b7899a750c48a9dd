"""The training rules' parameters that AWS's "List of Debugger built-in rules" page has and
stepscope lacked before it was checked against the page: each with a known answer on
health-hook records written here (``stepscope run --health`` JSON lines), and each
travelling to Debugger's rule container as a string (``attach --debugger``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from analyzer.ingest import ingest
from analyzer.job import Job
from analyzer.sources import open_source
from rules.base import RuleResult
from rules.builtin.all_zero import NEEDS_SELECTION as ALL_ZERO_NEEDS_SELECTION
from rules.builtin.loss_not_decreasing import NEEDS_SELECTION as LOSS_NEEDS_SELECTION
from rules.builtin.saturated_activation import INACTIVITY_NOT_APPLIED, SaturatedActivationParams
from rules.builtin.weight_update_ratio import SMALL_NOT_APPLIED
from rules.engine import evaluate
from rules.ruleset import load_ruleset
from stepscope.attach.boto3_request import create_training_job_fields
from tests.support.health_records import loss, tensor, write_health


def _judge(root: Path, rule: str, **values: Any) -> RuleResult:
    job = Job(ingest(open_source(str(root)), cache_dir=root.parent / f"{root.name}-cache").dataset)
    ruleset = load_ruleset()
    ruleset.rules[rule] = ruleset.rules[rule].model_copy(update=values)
    (result,) = [r for r in evaluate(job, ruleset) if r.rule == rule]
    return result


# -- LossNotDecreasing ---------------------------------------------------------------------
def test_loss_increase_threshold_percent(tmp_path: Path) -> None:
    """A loss rising 1 % a step (10.5 % per 10-step check) and a flat one both fail every
    check; only the rising one's checks are increases beyond 5 % (not beyond 20 %)."""
    root = tmp_path / "job"
    write_health(root, "algo-1", 0, loss(range(0, 41), lambda s: 1.0 * 1.01**s))
    write_health(root, "algo-2", 1, loss(range(0, 41), lambda s: 0.7))
    by_worker = {f.evidence["worker"]: f for f in _judge(root, "LossNotDecreasing").findings}
    rising, flat = by_worker["algo-1 rank 0"], by_worker["algo-2 rank 1"]
    assert rising.evidence["failed_checks"] == rising.evidence["checks"] == 4
    assert rising.evidence["increased_checks"] == 4
    assert rising.evidence["largest_increase_pct"] == pytest.approx((1.01**10 - 1) * 100, abs=1e-3)
    assert rising.title == "algo-1 rank 0: loss rose 10% over steps 0-10"
    assert flat.evidence["failed_checks"] == 4 and flat.evidence["increased_checks"] == 0
    assert flat.title == "algo-2 rank 1: loss did not decrease over steps 0-10"
    tolerant = {
        f.evidence["worker"]: f
        for f in _judge(root, "LossNotDecreasing", increase_threshold_percent=20.0).findings
    }
    assert tolerant["algo-1 rank 0"].evidence["increased_checks"] == 0
    assert tolerant["algo-1 rank 0"].title.endswith("did not decrease over steps 0-10")


def test_a_loss_that_rises_from_zero(tmp_path: Path) -> None:
    """From a loss of 0 no percentage exists: the title says "rose from 0", the evidence
    holds no infinite number (report.json stays valid JSON)."""
    root = tmp_path / "job"
    write_health(root, "algo-1", 0, loss(range(0, 21), lambda s: 0.0 if s < 10 else 0.5))
    (f,) = _judge(root, "LossNotDecreasing").findings
    assert f.title == "algo-1 rank 0: loss rose from 0 over steps 0-10"
    assert f.evidence["largest_increase_pct"] is None and f.evidence["increased_checks"] == 1


def test_loss_selection_parameters(tmp_path: Path) -> None:
    """use_losses_collection off: a selection is required (as in Debugger); tensor_regex picks
    scalar tags; a regex that matches nothing is no data, not a pass; mode picks a phase."""
    root = tmp_path / "job"
    recs = loss(range(0, 31), lambda s: 2.0 / (s + 1))  # the loss falls
    recs += loss(range(0, 31), lambda s: 0.5, tag="train/accuracy")  # a flat metric
    recs += loss(range(0, 31, 10), lambda s: 1.0, tag="eval/loss")  # a flat evaluation loss
    write_health(root, "algo-1", 0, recs)
    # default: the evaluation loss first (Debugger's EVAL, then TRAIN)
    (f,) = _judge(root, "LossNotDecreasing").findings
    assert f.evidence["tensor"] == "eval/loss"
    assert not _judge(root, "LossNotDecreasing", mode="TRAIN").fired
    assert _judge(root, "LossNotDecreasing", mode="EVAL").fired
    (glob,) = _judge(root, "LossNotDecreasing", mode="GLOBAL").findings  # every loss tag
    assert glob.evidence["tensor"] == "eval/loss"
    # the losses collection off and nothing selected: cannot judge
    off = _judge(root, "LossNotDecreasing", use_losses_collection=False)
    assert off.skipped_reason == LOSS_NEEDS_SELECTION
    # a regex on its own: the flat metric, not the losses
    (acc,) = _judge(
        root,
        "LossNotDecreasing",
        use_losses_collection=False,
        tensor_regex="accuracy",
        mode="TRAIN",
    ).findings
    assert acc.evidence["tensor"] == "train/accuracy"
    nothing = _judge(
        root, "LossNotDecreasing", use_losses_collection=False, tensor_regex="perplexity"
    )
    assert (
        not nothing.fired
        and nothing.skipped_reason == "no scalar matches tensor_regex 'perplexity'"
    )
    # collection_names "losses" is the losses collection
    assert _judge(
        root, "LossNotDecreasing", use_losses_collection=False, collection_names="losses"
    ).fired


# -- WeightUpdateRatio ---------------------------------------------------------------------
def test_weight_update_ratio_epsilon(tmp_path: Path) -> None:
    """A recorded ratio of 20 on a weight of norm 1e-9 is ||Δw|| = 2e-8: with epsilon 1e-9 in
    the denominator it is 10, not above large_threshold 10; with epsilon 0 it is 20."""
    root = tmp_path / "job"
    recs = []
    for s in range(1, 6):
        recs.append(tensor(s, "fc1.weight", "weight", norm=1e-9, numel=16))
        recs.append(tensor(s, "fc1.weight", "update_ratio", value=20.0))
    write_health(root, "algo-1", 0, recs)
    assert not _judge(root, "WeightUpdateRatio").fired
    (big,) = _judge(root, "WeightUpdateRatio", epsilon=0.0).findings
    assert big.evidence["kind"] == "large" and big.evidence["extreme_ratio"] == pytest.approx(20.0)
    assert big.evidence["compared_with"] == [0, 1, 2, 3, 4] and "not_applied" not in big.evidence
    (at_eps,) = _judge(root, "WeightUpdateRatio", epsilon=1e-9, large_threshold=9.0).findings
    assert at_eps.evidence["extreme_ratio"] == pytest.approx(10.0)


def test_weight_update_ratio_num_steps_on_saved_weights(tmp_path: Path) -> None:
    """Weights saved every 500 steps (Debugger's save_interval), norms only: step 500 against
    step 0 (|30 - 1| / 1 = 29 > 10); num_steps 100 leaves no saved step close enough."""
    root = tmp_path / "job"
    norms = {0: 1.0, 500: 30.0, 1000: 30.0}
    write_health(
        root,
        "algo-1",
        0,
        [tensor(s, "fc1.weight", "weight", norm=n, numel=16) for s, n in norms.items()],
    )
    (big,) = _judge(root, "WeightUpdateRatio").findings
    assert big.evidence["step_range"] == [500, 500] and big.evidence["compared_with"] == [0]
    assert big.evidence["extreme_ratio"] == pytest.approx(29.0, rel=1e-6)
    assert big.evidence["not_applied"] == {"small_threshold": SMALL_NOT_APPLIED}
    assert _judge(root, "WeightUpdateRatio", num_steps=500).fired
    close = _judge(root, "WeightUpdateRatio", num_steps=100)
    assert (
        not close.fired
        and close.skipped_reason == "no weight has two saved steps within num_steps 100"
    )


# -- SaturatedActivation -------------------------------------------------------------------
def test_saturated_activation_limits_and_selection(tmp_path: Path) -> None:
    """Debugger's tanh input (``act_tanh_input_0``) beyond threshold_tanh, a hook sigmoid layer
    matched through its outputs by the default regex; threshold pairs move the verdict; a
    regex that matches nothing is no data."""
    root = tmp_path / "job"
    recs = []
    for s in range(1, 6):
        recs.append(
            tensor(s, "act_tanh_input_0", "activation_input", module="act_tanh", min=10.0, max=12.0)
        )
        recs.append(tensor(s, "net.3", "activation", module="Sigmoid", min=0.9999999999, max=1.0))
        recs.append(tensor(s, "net.5", "activation", module="Tanh", min=-0.5, max=0.5))
    write_health(root, "algo-1", 0, recs)
    (f,) = _judge(root, "SaturatedActivation").findings
    layers = {x["layer"]: x for x in f.evidence["layers"]}
    assert set(layers) == {"act_tanh_input_0", "net.3"}
    assert layers["act_tanh_input_0"]["side"] == "input" and layers["net.3"]["side"] == "output"
    assert f.evidence["not_applied"] == {"threshold_inactivity": INACTIVITY_NOT_APPLIED}
    # wider limits: the tanh input (10..12) and the sigmoid output (sigmoid(23) ≈ 1 - 1e-10)
    # are inside
    wide = _judge(
        root, "SaturatedActivation", threshold_tanh="(-15, 15)", threshold_sigmoid="(-30, 30)"
    )
    assert not wide.fired and wide.skipped_reason is None
    # the regex selects: only the tanh inputs, or nothing at all
    (only,) = _judge(root, "SaturatedActivation", tensor_regex=".*tanh_input").findings
    assert [x["layer"] for x in only.evidence["layers"]] == ["act_tanh_input_0"]
    none = _judge(root, "SaturatedActivation", tensor_regex="conv9_input")
    assert (
        none.skipped_reason
        == "no tanh or sigmoid activation statistics matches tensor_regex 'conv9_input'"
    )
    # collection_names adds every tanh/sigmoid tensor of the collection's role
    (coll,) = _judge(
        root, "SaturatedActivation", tensor_regex=None, collection_names="relu_output"
    ).findings
    assert [x["layer"] for x in coll.evidence["layers"]] == ["net.3"]


def test_saturated_activation_pairs_are_validated() -> None:
    assert (
        SaturatedActivationParams.model_validate({"threshold_tanh": "-3, 3"}).threshold_tanh
        == "-3, 3"
    )
    for bad in ("(5, 1)", "(1, 2, 3)", "(a, b)"):
        with pytest.raises(ValidationError):
            SaturatedActivationParams.model_validate({"threshold_sigmoid": bad})


# -- DeadRelu, AllZero, TensorVariance: the selection ------------------------------------------
def _zero_layers(root: Path) -> None:
    recs = []
    for s in range(1, 6):
        recs.append(
            tensor(s, "net.1", "activation", module="ReLU", zero_fraction=1.0, min=0.0, max=0.0)
        )
        recs.append(
            tensor(s, "net.4", "activation", module="ReLU", zero_fraction=1.0, min=0.0, max=0.0)
        )
        recs.append(
            tensor(s, "fc1.weight", "gradient", zero_fraction=1.0, norm=0.0, numel=16, std=0.0)
        )
        recs.append(
            tensor(s, "fc1.weight", "weight", zero_fraction=0.0, norm=1.0, numel=16, std=0.5)
        )
    write_health(root, "algo-1", 0, recs)


def test_dead_relu_tensor_regex(tmp_path: Path) -> None:
    """Unset (the page's default): every ReLU layer; Debugger's ``.*relu_output`` finds the
    hooks' layers under Debugger's names; a regex names the layers; none matched: no data."""
    root = tmp_path / "job"
    _zero_layers(root)
    (f,) = _judge(root, "DeadRelu").findings
    assert [x["layer"] for x in f.evidence["layers"]] == ["net.1", "net.4"]
    (g,) = _judge(root, "DeadRelu", tensor_regex=".*relu_output").findings
    assert [x["layer"] for x in g.evidence["layers"]] == ["net.1", "net.4"]
    (h,) = _judge(root, "DeadRelu", tensor_regex=r"net\.4").findings
    assert [x["layer"] for x in h.evidence["layers"]] == ["net.4"]
    none = _judge(root, "DeadRelu", tensor_regex="conv1_relu")
    assert (
        none.skipped_reason
        == "no ReLU activation statistics with a zero fraction matches tensor_regex 'conv1_relu'"
    )


def test_all_zero_needs_a_selection(tmp_path: Path) -> None:
    root = tmp_path / "job"
    _zero_layers(root)
    unset = _judge(root, "AllZero", collection_names=None)
    assert unset.skipped_reason == ALL_ZERO_NEEDS_SELECTION
    (grads,) = _judge(root, "AllZero", collection_names="gradients").findings
    assert [(t["role"], t["tensor"]) for t in grads.evidence["tensors"]] == [
        ("gradient", "fc1.weight")
    ]
    (relu,) = _judge(
        root, "AllZero", collection_names=None, tensor_regex=r"net\.1_relu_output"
    ).findings
    assert [t["tensor"] for t in relu.evidence["tensors"]] == ["net.1"]
    (both,) = _judge(
        root, "AllZero", collection_names="gradients", tensor_regex=r"net\.4"
    ).findings  # the union
    assert {t["tensor"] for t in both.evidence["tensors"]} == {"fc1.weight", "net.4"}
    none = _judge(root, "AllZero", collection_names=None, tensor_regex="conv9")
    assert (
        none.skipped_reason
        == "no tensor statistics with a zero fraction matches tensor_regex 'conv9'"
    )


# -- attach --debugger: the parameters travel as strings ---------------------------------------
def _attached(tmp_path: Path, text: str) -> dict[str, dict[str, str]]:
    path = tmp_path / "rules.toml"
    path.write_text("[profiler]\ndebugger_hook = true\n" + text)
    fields = create_training_job_fields(path, "us-west-2", "s3://bucket/jobs", debugger=True)
    return {
        r["RuleConfigurationName"]: r["RuleParameters"] for r in fields["DebugRuleConfigurations"]
    }


def test_new_parameters_travel_to_debugger(tmp_path: Path) -> None:
    rules = _attached(
        tmp_path,
        "[rules.WeightUpdateRatio]\nnum_steps = 100\nepsilon = 0.0001\n"
        '[rules.SaturatedActivation]\nthreshold_sigmoid = "(-20, 15)"\n'
        '[rules.LossNotDecreasing]\nincrease_threshold_percent = 12.5\nmode = "EVAL"\n'
        '[rules.DeadRelu]\ntensor_regex = ".*relu_output"\n',
    )
    assert rules["WeightUpdateRatio"] == {
        "num_steps": "100",
        "large_threshold": "10.0",
        "small_threshold": "1e-08",
        "epsilon": "0.0001",
        "rule_to_invoke": "WeightUpdateRatio",
    }
    assert rules["SaturatedActivation"] == {
        "tensor_regex": ".*tanh_input, .*sigmoid_input",
        "threshold_tanh": "(-9.4999, 9.4999)",
        "threshold_sigmoid": "(-20, 15)",
        "threshold_inactivity": "1.0",
        "threshold_layer": "50.0",
        "rule_to_invoke": "SaturatedActivation",
    }
    assert (
        rules["LossNotDecreasing"]["increase_threshold_percent"] == "12.5"
        and rules["LossNotDecreasing"]["mode"] == "EVAL"
    )
    assert rules["DeadRelu"]["tensor_regex"] == ".*relu_output"
    assert rules["AllZero"]["collection_names"] == "gradients, weights, relu_output"


def test_rules_without_a_selection_are_not_attached(tmp_path: Path) -> None:
    """Debugger's AllZero and TensorVariance containers need collection_names or tensor_regex."""
    rules = _attached(
        tmp_path,
        '[rules.AllZero]\ncollection_names = ""\n'
        '[rules.TensorVariance]\nmax_threshold = 5.0\ncollection_names = ""\n',
    )
    assert "AllZero" not in rules and "TensorVariance" not in rules
    rules = _attached(tmp_path, "[rules.TensorVariance]\nmax_threshold = 5.0\n")
    assert rules["TensorVariance"] == {
        "collection_names": "gradients, weights",
        "max_threshold": "5.0",
        "rule_to_invoke": "TensorVariance",
    }


def _write_debugger_step(root: Path, worker: str, step: int, tensors: dict[str, Any]) -> None:
    """One Debugger tensor event file as smdebug's FileWriter lays it out
    (``events/<step:012d>/<step:012d>_<worker>.tfevents``: TFRecord-framed Event protos,
    a summary value per tensor, tagged by smdebug's names)."""
    import struct

    import numpy as np
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    from tensorboard.util import tensor_util

    values = [
        summary_pb2.Summary.Value(tag=tag, tensor=tensor_util.make_tensor_proto(np.asarray(arr)))
        for tag, arr in tensors.items()
    ]
    event = event_pb2.Event(
        step=step, wall_time=1.7e9 + step, summary=summary_pb2.Summary(value=values)
    )
    payload = event.SerializeToString()
    header = struct.pack("<Q", len(payload))
    record = (
        header
        + struct.pack("<I", masked_crc32c(header))
        + payload
        + struct.pack("<I", masked_crc32c(payload))
    )
    folder = root / "debug-output" / "events" / f"{step:012d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{step:012d}_{worker}.tfevents").write_bytes(record)


def test_exploding_tensor_names_the_gradient_and_every_kind_of_non_finite(tmp_path: Path) -> None:
    """Debugger output whose gradient of fc2.weight holds NaN, +Inf and -Inf at step 5 (the
    weight itself stays finite): the finding names ``gradient/fc2.weight`` as Debugger does,
    and says all three, not "NaN"."""
    import numpy as np

    for step in range(1, 6):
        grad = np.ones(4, dtype=np.float32)
        if step == 5:
            grad[:3] = [np.nan, np.inf, -np.inf]
        _write_debugger_step(
            tmp_path / "job",
            "worker_0",
            step,
            {
                "fc2.weight": np.full(4, 0.5, dtype=np.float32),
                "gradient/fc2.weight": grad,
                "CrossEntropyLoss_output_0": np.float32(1.0 / step),
            },
        )
    job = Job(ingest(open_source(str(tmp_path / "job")), cache_dir=tmp_path / "c").dataset)
    (result,) = [r for r in evaluate(job, load_ruleset()) if r.rule == "ExplodingTensor"]
    (finding,) = result.findings
    assert finding.title == "worker_0: NaN, +Inf and -Inf from step 5 (gradient/fc2.weight)"
    assert finding.evidence["tensors_at_first_step"] == ["gradient/fc2.weight"]
    assert (finding.evidence["nan"], finding.evidence["pos_inf"], finding.evidence["neg_inf"]) == (
        True,
        True,
        True,
    )
    # Debugger's own regex form selects it
    path = tmp_path / "rules.toml"
    path.write_text('[rules.ExplodingTensor]\ntensor_regex = "gradient/.*"\n')
    (again,) = [r for r in evaluate(job, load_ruleset(path)) if r.rule == "ExplodingTensor"]
    assert [f.title for f in again.findings] == [finding.title]


# -- StalledTrainingRule: judged up to now while the job may still run ---------------------
def _stalled(root: Path, tmp: Path, **summary: Any) -> Any:
    from analyzer.ingest import ingest as do_ingest

    result = do_ingest(open_source(str(root)), cache_dir=tmp / "cache")
    meta = {**result.summary, **summary}
    job = Job(result.dataset, meta)
    (r,) = [x for x in evaluate(job, load_ruleset()) if x.rule == "StalledTrainingRule"]
    return r


def _recent_job(root: Path, minutes_ago: float) -> None:
    """A worker whose records stop ``minutes_ago`` minutes before now (one a second)."""
    import time

    from tests.support import health_records

    last = time.time() - minutes_ago * 60
    write_health(
        root,
        "algo-1",
        0,
        loss(range(1, 11), lambda s: 1.0 / s),
        time_of=lambda s: last - health_records.T0 - (10 - s),
    )


def test_stalled_training_fires_on_a_job_without_an_end_marker_silent_past_the_threshold(
    tmp_path: Path,
) -> None:
    """Debugger's definition: no new record for `threshold` seconds. A job with no end
    marker, no exit record and no status whose last record is 45 min old has stalled now."""
    _recent_job(tmp_path / "job", 45)
    (f,) = _stalled(tmp_path / "job", tmp_path).findings
    assert f.evidence["judged_until"].startswith("now: no end marker")
    assert 44 * 60 <= f.evidence["gap_s"] <= 50 * 60


def test_stalled_training_is_not_called_on_an_ended_job(tmp_path: Path) -> None:
    """The same silence after the job ended is no stall: stepscope run's exit records, an
    ended SageMaker status, or a silence longer than SageMaker's longest run say it ended."""
    _recent_job(tmp_path / "job", 45)
    exits = tmp_path / "job" / "exits"
    exits.mkdir()
    (exits / "algo-1_rank0.json").write_text('{"node": "algo-1", "rank": 0, "optimizer_steps": 10}')
    assert _stalled(tmp_path / "job", tmp_path / "a").findings == []
    _recent_job(tmp_path / "job2", 45)
    ended = _stalled(tmp_path / "job2", tmp_path / "b", job={"status": "Completed"})
    assert ended.findings == []
    running = _stalled(tmp_path / "job2", tmp_path / "c", job={"status": "InProgress"})
    (f,) = running.findings
    assert f.evidence["judged_until"] == "now: the job is InProgress"
    _recent_job(tmp_path / "job3", 60 * 24 * 40)  # 40 days ago
    assert _stalled(tmp_path / "job3", tmp_path / "d").findings == []


def test_stalled_training_reads_debuggers_end_marker(tmp_path: Path) -> None:
    """Debugger's training_job_end.ts says the training ended: no stall after the last record."""
    root = tmp_path / "job"
    _recent_job(root, 45)
    (root / "debug-output").mkdir()
    (root / "debug-output" / "training_job_end.ts").write_text("1700000000")
    r = _stalled(root, tmp_path)
    assert r.findings == [] and r.skipped_reason is None

"""SageMaker Debugger's training rules, judged by stepscope.

Two kinds of proof: health-hook files (the ``stepscope run --health`` JSON lines) written
here with exactly the pathology a rule is about, each worker judged on its own; and the
known answers of real PyTorch CPU runs (``tests/support/health_train.py``), each recorded
through the zero-code hooks and through a ``SummaryWriter`` at once: lr 0 →
LossNotDecreasing, a deep sigmoid MLP → VanishingGradient, a far too high learning rate →
ExplodingTensor, a large negative ReLU bias → DeadRelu, a +50 bias before a tanh →
SaturatedActivation (from the inputs the hooks record), one ReLU layer initialised 100x too
small → PoorWeightInitialization (the hooks' ReLU inputs; the SummaryWriter records none),
and a healthy run fires none of them. Those need torch (``.venv-torch``).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from analyzer.ingest import ingest
from analyzer.job import Job
from analyzer.sources import open_source
from rules.base import RuleResult
from rules.builtin.tensor_variance import NEEDS_SELECTION as TV_NEEDS_SELECTION
from rules.builtin.tensor_variance import NO_BOUNDS
from rules.engine import evaluate
from rules.ruleset import load_ruleset
from tests.support.fixtures import REPO_ROOT
from tests.support.health_records import loss, sick_training_job, tensor, write_health
from tests.support.torch_env import require_torch

TRAINING_RULES = (
    "LossNotDecreasing",
    "Overfit",
    "Overtraining",
    "VanishingGradient",
    "ExplodingTensor",
    "WeightUpdateRatio",
    "DeadRelu",
    "SaturatedActivation",
    "PoorWeightInitialization",
    "AllZero",
    "TensorVariance",
    "StalledTrainingRule",
)
#: Debugger gives TensorVariance no default bounds: with the defaults it cannot judge
NEEDS_BOUNDS = {"TensorVariance"}


def _write(
    root: Path, node: str, rank: int, records: list[dict[str, Any]], tail: str = "", dt: float = 1.0
) -> None:
    write_health(root, node, rank, records, tail, time_of=lambda s: s * dt)


def _judge(root: Path, **overrides: dict[str, Any]) -> dict[str, RuleResult]:
    job = Job(ingest(open_source(str(root)), cache_dir=root.parent / f"{root.name}-cache").dataset)
    ruleset = load_ruleset()
    for rule, values in overrides.items():
        ruleset.rules[rule] = ruleset.rules[rule].model_copy(update=values)
    return {r.rule: r for r in evaluate(job, ruleset) if r.rule in TRAINING_RULES}


def test_no_training_data_is_no_data(tmp_path: Path) -> None:
    (tmp_path / "job" / "system" / "incremental").mkdir(parents=True)
    (tmp_path / "job" / "system" / "incremental" / "1700000000.algo-1.json").write_text(
        json.dumps(
            {
                "Type": "cpu",
                "Name": "cpu0",
                "Dimension": "CPUUtilization",
                "Value": 5.0,
                "NodeId": "algo-1",
                "Timestamp": 1_700_000_000.0,
            }
        )
        + "\n"
    )
    results = _judge(tmp_path / "job")
    assert set(results) == set(TRAINING_RULES)
    for r in results.values():
        assert not r.fired and r.skipped_reason and "no training-health data" in r.skipped_reason, (
            r.rule
        )


def test_each_worker_is_judged_on_its_own(tmp_path: Path) -> None:
    root = tmp_path / "job"
    _write(root, "algo-1", 0, loss(range(1, 61), lambda s: 2.0 / s))
    _write(
        root,
        "algo-2",
        1,
        loss(range(1, 61), lambda s: 0.7),
        tail='{"v":1,"kind":"scalar","step":61,"ta',
    )
    r = _judge(root)
    lnd = r["LossNotDecreasing"]
    assert [f.evidence["worker"] for f in lnd.findings] == ["algo-2 rank 1"]
    ev = lnd.findings[0].evidence
    assert (
        ev["step_range"] == [1, 11]
        and ev["failed_checks"] == ev["checks"] == 5
        and ev["tensor"] == "loss"
    )
    # diff_percent: a loss falling 1 % per check no longer passes when 5 % is asked for
    _write(root, "algo-1", 0, loss(range(1, 61), lambda s: 1.0 * 0.999**s))
    strict = _judge(root, LossNotDecreasing={"diff_percent": 5.0})["LossNotDecreasing"]
    assert {f.evidence["worker"] for f in strict.findings} == {"algo-1 rank 0", "algo-2 rank 1"}


def test_exploding_vanishing_dead_and_zero(tmp_path: Path) -> None:
    root = tmp_path / "job"
    recs: list[dict[str, Any]] = loss(
        range(1, 21), lambda s: 1.0 / s if s < 15 else None
    )  # null: not a number
    for s in range(1, 21):
        recs.append(
            tensor(
                s,
                "fc1.weight",
                "gradient",
                norm=1e-9,
                numel=4096,
                nan_count=0,
                inf_count=0,
                zero_fraction=0.0,
            )
        )
        recs.append(
            tensor(
                s,
                "fc2.weight",
                "gradient",
                norm=0.5,
                numel=4096,
                nan_count=0,
                inf_count=0,
                zero_fraction=0.0,
            )
        )
        recs.append(
            tensor(
                s,
                "net.1",
                "activation",
                module="ReLU",
                zero_fraction=1.0 if s >= 10 else 0.5,
                min=0.0,
                max=1.0,
                numel=1024,
                nan_count=0,
                inf_count=0,
            )
        )
        recs.append(
            tensor(
                s,
                "net.3",
                "activation",
                module="Sigmoid",
                min=0.9999999999,
                max=1.0,
                numel=64,
                zero_fraction=0.0,
                nan_count=0,
                inf_count=0,
            )
        )
        recs.append(tensor(s, "fc1.weight", "update_ratio", value=1e-3 if s < 18 else 50.0))
    _write(root, "algo-1", 3, recs)
    r = _judge(root)
    (boom,) = r["ExplodingTensor"].findings
    assert boom.evidence["worker"] == "algo-1 rank 3" and boom.evidence["first_step"] == 15
    assert boom.evidence["tensors_at_first_step"] == ["loss"] and boom.severity == "error"
    (van,) = r["VanishingGradient"].findings
    assert [x["tensor"] for x in van.evidence["layers"]] == ["fc1.weight"] and van.evidence[
        "step_range"
    ] == [1, 20]
    (dead,) = r["DeadRelu"].findings
    assert dead.evidence["layers"][0]["layer"] == "net.1" and dead.evidence["layers"][0][
        "step_range"
    ] == [10, 20]
    (zero,) = r["AllZero"].findings
    assert [t["tensor"] for t in zero.evidence["tensors"]] == ["net.1"]
    (sat,) = r["SaturatedActivation"].findings
    assert sat.evidence["layers"][0]["layer"] == "net.3"
    (big,) = r["WeightUpdateRatio"].findings
    assert big.evidence["kind"] == "large" and big.evidence["step_range"] == [18, 20]
    # only_nan: the run's non-finite values are NaN (null), so it still fires; a regex that
    # matches nothing non-finite leaves it clean
    assert r["ExplodingTensor"].fired
    assert not _judge(root, ExplodingTensor={"tensor_regex": "fc2.*"})["ExplodingTensor"].fired


def test_overfit_and_stalled(tmp_path: Path) -> None:
    root = tmp_path / "job"
    recs = loss(range(1, 101), lambda s: 1.0 / s, tag="train_loss")
    recs += loss(range(10, 101, 10), lambda s: 0.5, tag="eval/loss")
    _write(root, "algo-1", 0, recs, dt=40.0)  # a record every 40 s up to t0 + 4000 s
    # rank 1 writes steps 1-9 a second apart, then nothing for an hour before step 10
    write_health(
        root,
        "algo-2",
        1,
        loss(range(1, 11), lambda s: 1.0 - s / 100),
        time_of=lambda s: float(s) if s < 10 else 4000.0,
    )
    r = _judge(root)
    (over,) = r["Overfit"].findings
    assert (
        over.evidence["worker"] == "algo-1 rank 0"
        and over.evidence["tensor"] == "eval/loss vs train_loss"
    )
    (stall,) = r["StalledTrainingRule"].findings
    assert stall.evidence["worker"] == "algo-2 rank 1" and stall.evidence["step_range"] == [9, 10]
    assert stall.evidence["gap_s"] == pytest.approx(3991.0)
    assert not _judge(root, StalledTrainingRule={"threshold": 4000})["StalledTrainingRule"].fired


def test_one_sick_worker_fires_every_training_rule(tmp_path: Path) -> None:
    r = _judge(sick_training_job(tmp_path / "job"))
    assert {name for name, res in r.items() if res.fired} == set(TRAINING_RULES) - NEEDS_BOUNDS
    assert r["TensorVariance"].skipped_reason == NO_BOUNDS
    for res in (res for name, res in r.items() if name not in NEEDS_BOUNDS):
        assert [f.evidence["worker"] for f in res.findings] == ["algo-1 rank 0"], res.rule


def test_overtraining_patience_per_phase(tmp_path: Path) -> None:
    """Training loss flat from step 10 (patience_train 5), validation loss flat from its 3rd
    point (patience_validation 10 of them); a worker whose losses fall 0.2 a step is clean,
    one whose loss falls 0.015 a step is not: Debugger's page sets delta to 0.1."""
    root = tmp_path / "job"
    recs = loss(range(1, 41), lambda s: 10.0 - 0.5 * min(s, 10))
    recs += loss(range(1, 41), lambda s: 20.0 - 1.0 * min(s, 3), tag="eval/loss")
    _write(root, "algo-1", 0, recs)
    _write(
        root,
        "algo-2",
        1,
        loss(range(1, 41), lambda s: 20.0 - s * 0.2)
        + loss(range(1, 41), lambda s: 30.0 - s * 0.2, tag="eval/loss"),
    )
    _write(root, "algo-3", 2, loss(range(1, 41), lambda s: 20.0 - s * 0.015))
    r = _judge(root)["Overtraining"]
    by_tag = {(f.evidence["worker"], f.evidence["tensor"]): f.evidence for f in r.findings}
    assert {f.evidence["worker"] for f in r.findings} == {"algo-1 rank 0", "algo-3 rank 2"}
    assert by_tag["algo-1 rank 0", "loss"]["best_step"] == 10 and by_tag["algo-1 rank 0", "loss"][
        "step_range"
    ] == [10, 15]
    assert by_tag["algo-1 rank 0", "eval/loss"]["best_step"] == 3 and by_tag[
        "algo-1 rank 0", "eval/loss"
    ]["step_range"] == [3, 13]
    assert by_tag["algo-1 rank 0", "eval/loss"]["phase"] == "eval"
    # falls of 0.015 (0.075 over 5 steps) are no new optimum under delta 0.1: the first step
    # stays the best
    assert by_tag["algo-3 rank 2", "loss"]["best_step"] == 1 and by_tag["algo-3 rank 2", "loss"][
        "step_range"
    ] == [1, 6]
    # a larger patience or another delta moves or removes the verdict
    assert not _judge(root, Overtraining={"patience_train": 50, "patience_validation": 40})[
        "Overtraining"
    ].fired
    loose = _judge(root, Overtraining={"delta": 0.01})["Overtraining"]
    assert {f.evidence["worker"] for f in loose.findings} == {"algo-1 rank 0"}
    # delta 0.6: algo-1's falls of 0.5 make a new optimum every second step (1, 3, ... 9), algo-2's
    # of 0.2 every fourth (within patience 5)
    strict = _judge(root, Overtraining={"delta": 0.6})["Overtraining"]
    assert {
        (f.evidence["worker"], f.evidence["tensor"]): f.evidence["best_step"]
        for f in strict.findings
    } == {
        ("algo-1 rank 0", "loss"): 9,
        ("algo-1 rank 0", "eval/loss"): 3,
        ("algo-3 rank 2", "loss"): 1,
    }


def test_poor_weight_initialization_checks(tmp_path: Path) -> None:
    """Each of Debugger's three checks, on its own worker, inside the first ``steps`` steps only."""
    root = tmp_path / "job"
    falling = loss(range(1, 31), lambda s: 2.0 / s)
    spread = list(falling)
    narrow = list(falling)
    for s in range(1, 31):
        # activation inputs 100x apart in variance (std 10 vs 1) until step 12
        spread.append(
            tensor(
                s, "relu1_input_0", "activation_input", module="ReLU", std=10.0 if s < 12 else 1.0
            )
        )
        spread.append(tensor(s, "relu2_input_0", "activation_input", module="ReLU", std=1.0))
        # every gradient value within 1e-4 from step 5 on
        w = 1e-4 if s >= 5 else 1.0
        narrow.append(tensor(s, "fc1.weight", "gradient", min=-w / 2, max=w / 2, norm=w, numel=64))
        narrow.append(tensor(s, "fc2.weight", "gradient", min=0.0, max=w / 2, norm=w, numel=64))
    _write(root, "algo-1", 0, spread)
    _write(root, "algo-2", 1, narrow)
    _write(
        root, "algo-3", 2, loss(range(1, 31), lambda s: 1.0 if s < 20 else 0.5)
    )  # flat for the first 10 steps
    _write(root, "algo-4", 3, falling)
    r = _judge(root)["PoorWeightInitialization"]
    by_worker = {f.evidence["worker"]: f.evidence for f in r.findings}
    assert set(by_worker) == {"algo-1 rank 0", "algo-2 rank 1", "algo-3 rank 2"}
    assert by_worker["algo-1 rank 0"]["ratio"] == pytest.approx(100.0) and by_worker[
        "algo-1 rank 0"
    ]["step_range"] == [1, 1]
    assert by_worker["algo-1 rank 0"]["tensor"] == "relu1_input_0 vs relu2_input_0"
    assert by_worker["algo-2 rank 1"]["step_range"] == [5, 5] and by_worker["algo-2 rank 1"][
        "width"
    ] == pytest.approx(1e-4)
    assert by_worker["algo-3 rank 2"]["step_range"] == [1, 6] and by_worker["algo-3 rank 2"][
        "steps_inspected"
    ] == [1, 10]
    # steps = 4: the narrow gradients (from step 5) and the flat loss (patience 5) fall outside
    short = _judge(root, PoorWeightInitialization={"steps": 4})["PoorWeightInitialization"]
    assert {f.evidence["worker"] for f in short.findings} == {"algo-1 rank 0"}
    assert not _judge(
        root,
        PoorWeightInitialization={"threshold": 200.0, "distribution_range": 1e-5, "patience": 10},
    )["PoorWeightInitialization"].fired


def test_activation_inputs_from_the_hooks(tmp_path: Path) -> None:
    """The hooks name an input by its module (``net.1``, class ReLU / Tanh): Debugger's regexes
    match it as ``net.1_relu_input_0``; SaturatedActivation judges a layer's inputs where it
    has them, its outputs only where it has nothing else."""
    root = tmp_path / "job"
    recs: list[dict[str, Any]] = loss(range(1, 11), lambda s: 2.0 / s)
    for s in range(1, 11):
        recs.append(
            tensor(s, "net.1", "activation_input", module="ReLU", std=3.0, min=-9.0, max=9.0)
        )
        recs.append(
            tensor(s, "net.3", "activation_input", module="ReLU", std=0.2, min=-1.0, max=1.0)
        )
        # a tanh whose inputs lie beyond 9.4999 (and whose outputs are 1.0): one layer, judged
        # on its inputs
        recs.append(
            tensor(s, "net.5", "activation_input", module="Tanh", std=1.0, min=12.0, max=20.0)
        )
        recs.append(tensor(s, "net.5", "activation", module="Tanh", std=0.0, min=1.0, max=1.0))
        # a sigmoid recorded only by its outputs (TensorBoard's way): judged through them
        recs.append(tensor(s, "net.7", "activation", module="Sigmoid", std=0.0, min=1.0, max=1.0))
    _write(root, "algo-1", 0, recs)
    r = _judge(root)
    (pwi,) = r["PoorWeightInitialization"].findings
    assert pwi.evidence["tensor"] == "net.1 vs net.3" and pwi.evidence["ratio"] == pytest.approx(
        225.0
    )
    (sat,) = r["SaturatedActivation"].findings
    assert [(x["layer"], x["side"]) for x in sat.evidence["layers"]] == [
        ("net.5", "input"),
        ("net.7", "output"),
    ]
    # Debugger's names select: only the tanh inputs compared (one layer: nothing to compare)
    # under a tanh regex; the sigmoid regex alone leaves the tanh layer out
    tanh_only = _judge(root, PoorWeightInitialization={"activation_inputs_regex": ".*tanh_input"})
    assert (
        "net.5" not in tanh_only["PoorWeightInitialization"].findings[0].evidence["tensor"]
    )  # ReLUs still compared
    (sig,) = _judge(root, SaturatedActivation={"tensor_regex": ".*sigmoid_input"})[
        "SaturatedActivation"
    ].findings
    assert [x["layer"] for x in sig.evidence["layers"]] == ["net.7"]


def test_tensor_variance_bounds(tmp_path: Path) -> None:
    """No bounds: cannot judge (Debugger has none either); with bounds, per worker and tensor."""
    root = tmp_path / "job"
    recs: list[dict[str, Any]] = []
    for s in range(1, 11):
        recs.append(tensor(s, "fc1.weight", "weight", std=0.1))
        recs.append(tensor(s, "fc1.weight", "gradient", std=50.0 if s >= 7 else 0.5))
    _write(root, "algo-1", 0, recs)
    _write(root, "algo-2", 1, [tensor(s, "fc1.weight", "gradient", std=0.5) for s in range(1, 11)])
    assert _judge(root)["TensorVariance"].skipped_reason == NO_BOUNDS
    # Debugger needs collection_names or tensor_regex: without both it cannot judge either
    unselected = _judge(root, TensorVariance={"max_threshold": 100.0, "collection_names": None})[
        "TensorVariance"
    ]
    assert unselected.skipped_reason == TV_NEEDS_SELECTION
    (high,) = _judge(root, TensorVariance={"max_threshold": 100.0})["TensorVariance"].findings
    assert high.evidence["worker"] == "algo-1 rank 0" and high.evidence["kind"] == "high"
    assert (
        high.evidence["tensors"][0]["tensor"] == "fc1.weight"
        and high.evidence["tensors"][0]["role"] == "gradient"
    )
    assert high.evidence["step_range"] == [7, 10] and high.evidence["tensors"][0][
        "variance"
    ] == pytest.approx(2500.0)
    low = _judge(root, TensorVariance={"min_threshold": 0.1, "collection_names": "weights"})[
        "TensorVariance"
    ].findings
    assert [(f.evidence["worker"], f.evidence["tensors"][0]["role"]) for f in low] == [
        ("algo-1 rank 0", "weight")
    ]


# -- known answers: real PyTorch runs recorded through a SummaryWriter ---------------------
KNOWN = {
    "lr0": "LossNotDecreasing",
    "sigmoid": "VanishingGradient",
    "explode": "ExplodingTensor",
    "deadrelu": "DeadRelu",
    "saturated": "SaturatedActivation",
}
STEPS = 40


HOOKS_WORKER = f"{socket.gethostname()} rank 0"


@cache
def _recorded(case: str, root: str) -> dict[str, RuleResult]:
    """One run of the case, recorded both ways at once: the zero-code hooks of
    ``stepscope run --health`` (worker ``<host> rank 0``) and the script's own
    SummaryWriter (worker ``tensorboard``, the run's folder)."""
    out = Path(root) / case
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepscope",
            "run",
            "--out",
            str(out),
            "--health-every",
            "5",
            "--",
            sys.executable,
            str(REPO_ROOT / "tests" / "support" / "health_train.py"),
            "--case",
            case,
            "--steps",
            str(STEPS),
            "--tb",
            str(out / "tensorboard"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list((out / "health").glob("*.health.jsonl")), f"no health file: {proc.stderr[-2000:]}"
    return _judge(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> str:
    require_torch("the training-health known answers", "tests/test_rules_training_health.py")
    return str(tmp_path_factory.mktemp("health-runs"))


@pytest.mark.parametrize("case", sorted(KNOWN))
def test_known_answer(case: str, runs: str) -> None:
    results = _recorded(case, runs)
    rule = results[KNOWN[case]]
    assert rule.fired, f"{case}: {rule.rule} did not fire ({rule.skipped_reason})"
    assert sorted(f.evidence["worker"] for f in rule.findings) == sorted(
        [HOOKS_WORKER, "tensorboard"]
    )
    for f in rule.findings:
        assert f.evidence["step_range"][0] <= f.evidence["step_range"][1] <= STEPS


def test_known_answer_healthy_fires_none(runs: str) -> None:
    """Nothing fires on the healthy run, with every rule at Debugger's defaults. The script
    logs its loss every 5 steps, as scripts do: Overtraining's delta (0.1, absolute) is meant
    for saved steps, and a loss logged every step that falls less than 0.1 in 5 of them
    (this one: 0.69 -> 0.23 over 40 steps) would fire it."""
    results = _recorded("healthy", runs)
    fired = {name: [f.title for f in r.findings] for name, r in results.items() if r.fired}
    assert fired == {}
    for name in {*KNOWN.values(), "PoorWeightInitialization"} - {"SaturatedActivation"}:
        assert results[name].skipped_reason is None, name  # judged, not "no data"
    assert "no tanh or sigmoid" in str(
        results["SaturatedActivation"].skipped_reason
    )  # a ReLU net has none


def test_known_answer_evidence_names_the_layer(runs: str) -> None:
    for sigmoid in _recorded("sigmoid", runs)["VanishingGradient"].findings:
        assert "0.weight" in [
            x["tensor"] for x in sigmoid.evidence["layers"]
        ]  # the first layer's gradient vanishes
    for dead in _recorded("deadrelu", runs)["DeadRelu"].findings:
        assert [x["layer"] for x in dead.evidence["layers"]] == ["1", "3"]
    for boom in _recorded("explode", runs)["ExplodingTensor"].findings:
        assert boom.evidence["first_step"] <= 10
    # the hooks judge the tanh's inputs (+50 + a small spread: far beyond 9.4999); the
    # SummaryWriter has only its outputs (1.0, beyond tanh(9.4999)) at its histogram steps
    sides = {
        f.evidence["worker"]: [(x["layer"], x["side"]) for x in f.evidence["layers"]]
        for f in _recorded("saturated", runs)["SaturatedActivation"].findings
    }
    assert sides == {HOOKS_WORKER: [("1", "input")], "tensorboard": [("1", "output")]}


def _hook_records(runs: str, case: str, role: str) -> list[dict[str, Any]]:
    _recorded(case, runs)
    (path,) = (Path(runs) / case / "health").glob("*.health.jsonl")
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("role") == role]


def test_known_answer_poor_initialisation(runs: str) -> None:
    """Kaiming-initialised ReLU layers, the 4th Linear's weights 100x too small: the ReLU
    inputs of layers 7, 9, 11 have a few hundred times less variance than those of 1, 3, 5
    at step 1. Only the hooks record ReLU inputs, so only their worker's variance check
    fires; nothing else does (the run learns)."""
    results = _recorded("poorinit", runs)
    assert {name for name, r in results.items() if r.fired} == {"PoorWeightInitialization"}
    (f,) = results["PoorWeightInitialization"].findings
    assert f.evidence["worker"] == HOOKS_WORKER and f.evidence["step_range"] == [1, 1]
    high, low = f.evidence["tensor"].split(" vs ")
    assert high in {"1", "3", "5"} and low in {"7", "9", "11"} and f.evidence["ratio"] > 100
    assert f.evidence["layers"] == 6


def test_known_answer_healthy_relu_inputs_stay_within_the_threshold(runs: str) -> None:
    """The healthy MLP at PyTorch's default init: the 2nd ReLU's inputs have ~6x less
    variance than the 1st's (each default-initialised Linear+ReLU divides it by about 6), under
    Debugger's threshold 10 at every sampled step, so PoorWeightInitialization stays quiet
    on facts, not for want of data. A deeper default-initialised MLP would exceed it."""
    by_step: dict[int, dict[str, float]] = {}
    for r in _hook_records(runs, "healthy", "activation_input"):
        by_step.setdefault(r["step"], {})[r["name"]] = r["std"] ** 2
    assert sorted(by_step) == [1, 6, 11, 16, 21, 26, 31, 36]
    for step, var in by_step.items():
        assert sorted(var) == ["1", "3"], step
        assert 2.0 < var["1"] / var["3"] < 10.0, (step, var)

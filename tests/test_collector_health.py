"""``stepscope run --health``: the zero-code training-health hooks (``collectors/health.py``).

Every torch test trains for real, on the CPU, under the real launcher, with a script that
has no debugging code; what the hooks wrote is checked against numbers the test computes
on its own (an oracle script that measures its own tensors in plain PyTorch, or the
known-answer script ``tests/support/health_train.py`` re-run in this process). The torch
tests skip without torch and fail under ``STEPSCOPE_REQUIRE_TORCH=1`` (.venv-torch).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from stepscope.collectors import health, launcher, trace
from tests.support.torch_env import require_torch

REPO = Path(__file__).resolve().parents[1]
HEALTH_TRAIN = REPO / "tests" / "support" / "health_train.py"
LAUNCHER = [sys.executable, "-m", "stepscope.collectors.launcher"]
ENV_VARS = (trace.ENV_DIR, trace.ENV_STEPS, trace.ENV_NODE, health.ENV_HEALTH, "PYTHONPATH")
#: the shortest trace window (the recorder runs too): one step, profiled from the first
SHORT_TRACE = ("--steps", "0:0:1")


@pytest.fixture
def torch_available() -> None:
    require_torch("the training-health hooks", "tests/test_collector_health.py")


def _env(**extra: str) -> dict[str, str]:
    """This environment without any launcher variables (the suite may run under one)."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(extra)
    return env


def _launch(
    tmp: Path,
    *command: str,
    opts: tuple[str, ...] = (),
    timeout: float = 180,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LAUNCHER, "--out", str(tmp / "out"), *SHORT_TRACE, *opts, "--", *command],
        cwd=tmp,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ours(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("stepscope: ")]


def _records(out: Path) -> list[dict[str, Any]]:
    files = sorted((out / health.HEALTH_DIR).glob("*.health.jsonl"))
    assert len(files) == 1, files
    return [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines()]


def _by(records: list[dict[str, Any]], **match: Any) -> dict[tuple[int, str], dict[str, Any]]:
    """Records matching ``match``, keyed by (step, tag or name)."""
    return {
        (int(r["step"]), str(r.get("tag", r.get("name")))): r
        for r in records
        if all(r.get(k) == v for k, v in match.items())
    }


def _close(got: float | None, want: float, rel: float = 2e-4, abs_: float = 1e-7) -> bool:
    return got is not None and math.isclose(got, want, rel_tol=rel, abs_tol=abs_)


# --------------------------------------------------------------------------- options


def test_parse_every_and_the_file_name() -> None:
    assert health.parse_every(" 50 ") == 50 == health.DEFAULT_EVERY
    for bad in ("0", "-3", "x", "", "2.5"):
        with pytest.raises(ValueError, match=">= 1"):
            health.parse_every(bad)
    assert health.health_path(Path("/o"), "algo-2", 3, 77) == Path(
        "/o/health/algo-2_rank3.77.health.jsonl"
    )


def test_child_env_sets_and_clears_the_health_switch(tmp_path: Path) -> None:
    env = launcher.child_env(tmp_path, (1, 1, 8), "n", {}, health_every=7)
    assert env[health.ENV_HEALTH] == "7"
    # a launcher without --health under one with it: its own options win
    assert health.ENV_HEALTH not in launcher.child_env(tmp_path, (1, 1, 8), "n", env)
    text = (launcher.BOOTSTRAP_DIR / "sitecustomize.py").read_text()
    assert f'_HEALTH = "{health.ENV_HEALTH}"' in text


PRINT_SWITCH = f"import os; print(os.environ.get({health.ENV_HEALTH!r}))"


@pytest.mark.parametrize(
    ("opts", "want"),
    [
        ((), "None"),
        (("--health",), "50"),
        (("--health-every", "7"), "7"),
        (("--health", "--health-every", "3"), "3"),
    ],
)
def test_launcher_and_cli_flags(tmp_path: Path, opts: tuple[str, ...], want: str) -> None:
    proc = _launch(
        tmp_path,
        sys.executable,
        "-c",
        PRINT_SWITCH,
        opts=opts,
        env=_env(**{health.ENV_HEALTH: "99"}),
    )  # an outer launcher's: replaced or dropped
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == want
    cli = "from stepscope.cli.run import run_command; run_command(prog_name='stepscope run')"
    proc = subprocess.run(
        [sys.executable, "-c", cli, "--out", "o", *opts, "--", sys.executable, "-c", PRINT_SWITCH],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == want


def test_bad_health_every_is_a_usage_error(tmp_path: Path) -> None:
    cli = "from stepscope.cli.run import run_command; run_command(prog_name='stepscope run')"
    for cmd in (
        [*LAUNCHER, "--health-every", "0", "--", "true"],
        [sys.executable, "-c", cli, "--health-every", "0", "--", "true"],
    ):
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "0" in proc.stderr


# --------------------------------------------------------------------------- against an oracle


ORACLE = textwrap.dedent(
    """
    # A 2-layer model trained with AdamW; it prints, per step, what it measures of itself
    # in plain PyTorch (the test's independent numbers). No stepscope anywhere.
    import json, sys
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(8, 32)
            self.act = nn.Tanh()
            self.fc2 = nn.Linear(32, 32)
            self.relu = nn.ReLU(inplace=True)   # called twice per forward, overwrites its input
            self.head = nn.Linear(32, 1)
        def forward(self, x):
            h = self.relu(self.fc1(x))
            h = self.act(self.relu(self.fc2(h)))
            return self.head(h)

    net = Net()
    scale = nn.Parameter(torch.ones(1))  # owned by no module: named after its param group
    opt = torch.optim.AdamW(
        [{"params": net.parameters()}, {"params": [scale], "lr": 0.01}], lr=0.05
    )
    outs, ins = {}, {}
    for name, mod in net.named_modules():
        if isinstance(mod, (nn.ReLU, nn.Tanh)):
            mod.register_forward_pre_hook(
                lambda m, i, n=name: ins.setdefault(n, []).append(i[0].detach().clone())
            )
            mod.register_forward_hook(
                lambda m, i, o, n=name: outs.setdefault(n, []).append(o.detach().clone())
            )

    def stats(t):
        t = t.detach().double().flatten()
        return {"norm": t.norm().item(), "mean": t.mean().item(), "std": t.std(correction=0).item(),
                "min": t.min().item(), "max": t.max().item(),
                "zero_fraction": (t == 0).double().mean().item(), "numel": t.numel()}

    x, y = torch.randn(256, 8), torch.randn(256, 1)
    named = [*net.named_parameters(), ("param_group1.0", scale)]
    for step in range(1, int(sys.argv[1]) + 1):
        outs.clear()
        with torch.no_grad():
            net(x[:4])  # an evaluation pass: not a training step's activations
        outs.clear()
        ins.clear()
        i = torch.randint(0, 256, (32,))
        loss = nn.functional.mse_loss(net(x[i]) * scale, y[i])
        opt.zero_grad()
        loss.backward()
        before = {n: p.detach().clone() for n, p in named}
        rec = {"step": step, "loss": loss.item(), "lr": opt.param_groups[0]["lr"],
               "grad_norm": torch.sqrt(sum(p.grad.double().pow(2).sum() for _, p in named)).item(),
               "gradient": {n: stats(p.grad) for n, p in named},
               "weight": {n: stats(p) for n, p in named}}
        opt.step()
        rec["update_ratio"] = {
            n: ((p.detach() - before[n]).double().norm() / before[n].double().norm()).item()
            for n, p in named
        }
        rec["activation"] = {
            n: stats(torch.cat([o.flatten() for o in os_])) for n, os_ in outs.items()
        }
        rec["activation_input"] = {
            n: stats(torch.cat([i.flatten() for i in is_])) for n, is_ in ins.items()
        }
        print(json.dumps(rec))
    """
)


@pytest.mark.usefixtures("torch_available")
def test_recorded_values_match_the_scripts_own_measurements(tmp_path: Path) -> None:
    (tmp_path / "oracle.py").write_text(ORACLE)
    proc = _launch(
        tmp_path, sys.executable, str(tmp_path / "oracle.py"), "9", opts=("--health-every", "4")
    )
    assert proc.returncode == 0, proc.stderr
    assert _ours(proc.stderr) == [], proc.stderr
    truth = {r["step"]: r for r in map(json.loads, proc.stdout.splitlines())}
    recs = _records(tmp_path / "out")
    assert sorted({r["step"] for r in recs}) == [1, 5, 9]  # 1, N+1, 2N+1
    for r in recs:
        assert r["v"] == 1 and r["rank"] == 0 and isinstance(r["time"], float) and r["node"]
    scalars = _by(recs, kind="scalar")
    params = [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
        "head.weight",
        "head.bias",
        "param_group1.0",
    ]
    for step in (1, 5, 9):
        want = truth[step]
        assert _close(scalars[step, "loss"]["value"], want["loss"], 1e-6)
        assert _close(scalars[step, "lr"]["value"], want["lr"], 1e-12)
        assert _close(scalars[step, "grad_norm"]["value"], want["grad_norm"])
        for role in ("gradient", "weight"):
            got = _by(recs, kind="tensor", role=role)
            assert sorted(n for s, n in got if s == step) == sorted(params)
            for name in params:
                rec, ref = got[step, name], want[role][name]
                assert rec["numel"] == ref["numel"] and rec["nan_count"] == rec["inf_count"] == 0
                for field in ("norm", "mean", "std", "min", "max", "zero_fraction"):
                    assert _close(rec[field], ref[field], 2e-4, 1e-6 * max(ref["norm"], 1e-3)), (
                        step,
                        role,
                        name,
                        field,
                    )
        ratios = _by(recs, kind="tensor", role="update_ratio")
        for name in params:
            assert _close(ratios[step, name]["value"], want["update_ratio"][name], 1e-4), (
                step,
                name,
            )
        for role in ("activation", "activation_input"):
            acts = _by(recs, kind="tensor", role=role)
            assert sorted(n for s, n in acts if s == step) == [
                "act",
                "relu",
            ]  # the no_grad pass is not counted
            assert acts[step, "relu"]["module"] == "ReLU" and acts[step, "act"]["module"] == "Tanh"
            assert acts[step, "relu"]["numel"] == 2 * 32 * 32  # both calls of the shared ReLU
            for name in ("act", "relu"):
                rec, ref = acts[step, name], want[role][name]
                assert rec["numel"] == ref["numel"]
                for field in ("norm", "mean", "std", "min", "max", "zero_fraction"):
                    assert _close(rec[field], ref[field], 2e-4, 1e-6), (step, role, name, field)
        # the in-place ReLU's input, measured before it was overwritten: its negative half
        inputs, outputs = (
            _by(recs, kind="tensor", role=role) for role in ("activation_input", "activation")
        )
        assert inputs[step, "relu"]["min"] < 0 < inputs[step, "relu"]["max"]
        assert inputs[step, "relu"]["zero_fraction"] == 0.0 < outputs[step, "relu"]["zero_fraction"]


def _case(tmp: Path, case: str, steps: int, every: int, *extra: str) -> list[dict[str, Any]]:
    proc = _launch(
        tmp,
        sys.executable,
        str(HEALTH_TRAIN),
        "--case",
        case,
        "--steps",
        str(steps),
        *extra,
        opts=("--health-every", str(every)),
    )
    assert proc.returncode == 0, proc.stderr
    assert _ours(proc.stderr) == [], proc.stderr
    return _records(tmp / "out")


@pytest.mark.usefixtures("torch_available")
def test_the_loss_series_is_the_one_the_script_trains_on(tmp_path: Path) -> None:
    sys.path.insert(0, str(HEALTH_TRAIN.parent))
    try:
        import health_train  # the same seeded run, in this process: the loss of every step
    finally:
        sys.path.remove(str(HEALTH_TRAIN.parent))
    losses = health_train.train("healthy", 21, None)
    recs = _case(tmp_path, "healthy", 21, 5)
    got = {s: r["value"] for (s, _), r in _by(recs, kind="scalar", tag="loss").items()}
    assert sorted(got) == [1, 6, 11, 16, 21]
    for step, value in got.items():
        assert _close(value, losses[step - 1], 1e-6), (step, value, losses[step - 1])
    assert got[21] < got[1]  # it learns


@pytest.mark.usefixtures("torch_available")
def test_lr0_updates_nothing(tmp_path: Path) -> None:
    recs = _case(tmp_path, "lr0", 11, 5)
    ratios = [r["value"] for r in recs if r.get("role") == "update_ratio"]
    assert len(ratios) == 3 * 6 and set(ratios) == {0.0}
    assert {r["value"] for r in recs if r.get("tag") == "lr"} == {0.0}


@pytest.mark.usefixtures("torch_available")
def test_explode_counts_nan_and_inf(tmp_path: Path) -> None:
    recs = _case(tmp_path, "explode", 40, 3)
    bad = [r for r in recs if r["kind"] == "tensor" and (r.get("nan_count") or r.get("inf_count"))]
    assert bad, "no NaN/Inf recorded"
    assert {r["role"] for r in bad} >= {"gradient", "weight"}
    for r in bad:  # non-finite values are null, the counts say how many
        assert r["nan_count"] + r["inf_count"] <= r["numel"]
        if r["nan_count"]:
            assert r["mean"] is None and r["norm"] is None
    losses = [r["value"] for r in recs if r.get("tag") == "loss"]
    assert losses[0] is not None and None in losses  # finite at first, NaN/Inf later


@pytest.mark.usefixtures("torch_available")
def test_dead_relus_output_only_zeros(tmp_path: Path) -> None:
    recs = _case(tmp_path, "deadrelu", 11, 5)
    acts = [r for r in recs if r.get("role") == "activation"]
    assert sorted({r["name"] for r in acts}) == ["1", "3"] and {r["module"] for r in acts} == {
        "ReLU"
    }
    assert len(acts) == 6 and all(r["zero_fraction"] == 1.0 and r["max"] == 0.0 for r in acts)
    # their inputs: ~-100 (the bias); the 2nd ReLU's exactly -100 (the 1st passes only zeros)
    inputs = {(r["step"], r["name"]): r for r in recs if r.get("role") == "activation_input"}
    assert sorted(inputs) == [(s, n) for s in (1, 6, 11) for n in ("1", "3")]
    assert all(
        r["module"] == "ReLU" and r["max"] < -90 and r["zero_fraction"] == 0.0
        for r in inputs.values()
    )
    assert all(
        inputs[s, "3"]["min"] == inputs[s, "3"]["max"] == -100.0 and inputs[s, "3"]["std"] == 0.0
        for s in (1, 6, 11)
    )


@pytest.mark.usefixtures("torch_available")
def test_a_zero_initialised_bias_has_no_update_ratio_until_it_moves(tmp_path: Path) -> None:
    """||dw||/||w|| of a tensor that is all zeros is undefined: no record (a NaN would read
    as an exploding tensor), its weight record says norm 0; once it has moved it has one."""
    import torch
    from torch.optim import optimizer as optimizer_module

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh())
    with torch.no_grad():
        net[0].bias.zero_()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    rec = health.HealthRecorder(tmp_path, 1, "t")
    rec.hook(optimizer_module)
    try:
        for _ in range(2):
            loss = net(torch.randn(16, 8)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        rec.close()
    assert not rec.warned and rec.path is not None
    recs = [json.loads(line) for line in rec.path.read_text().splitlines()]
    ratios = _by(recs, role="update_ratio")
    assert sorted(ratios) == [(1, "0.weight"), (2, "0.bias"), (2, "0.weight")]
    assert all(r["value"] is not None and r["value"] > 0 for r in ratios.values())
    weights = _by(recs, role="weight")
    assert weights[1, "0.bias"]["norm"] == 0.0 and weights[2, "0.bias"]["norm"] > 0
    assert _by(recs, role="activation_input")[1, "1"]["module"] == "Tanh"


@pytest.mark.usefixtures("torch_available")
def test_every_step_when_n_is_1(tmp_path: Path) -> None:
    recs = _case(tmp_path, "healthy", 4, 1)
    assert sorted({r["step"] for r in recs}) == [1, 2, 3, 4]
    assert len([r for r in recs if r.get("tag") == "loss"]) == 4


# --------------------------------------------------------------------------- off, failures


HOOK_PROBE = textwrap.dedent(
    """
    import sys
    import torch
    from torch.nn.modules import module
    from torch.optim import optimizer
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(2, 4)).sum().backward()
        opt.step()
    print(len(module._global_forward_hooks), len(module._global_forward_pre_hooks),
          len(optimizer._global_optimizer_pre_hooks),
          getattr(torch.autograd.backward, "__stepscope_health__", False),
          "stepscope.collectors.health" in sys.modules)
    sys.exit(int(sys.argv[1]))
    """
)


@pytest.mark.usefixtures("torch_available")
def test_hooks_off_by_default_install_nothing(tmp_path: Path) -> None:
    proc = _launch(tmp_path, sys.executable, "-c", HOOK_PROBE, "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", "0", "False", "False"]
    assert not (tmp_path / "out" / health.HEALTH_DIR).exists()
    on = _launch(tmp_path, sys.executable, "-c", HOOK_PROBE, "0", opts=("--health-every", "2"))
    assert on.returncode == 0, on.stderr
    # step 3 is sampled: the forward hook and pre-hook are there for its forward only (armed
    # after step 2, removed at step 3's optimizer call); the step hooks and the backward
    # wrapper stay
    assert on.stdout.split() == ["0", "0", "1", "True", "True"]


@pytest.mark.usefixtures("torch_available")
def test_an_unwritable_health_folder_is_one_line_and_training_goes_on(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / health.HEALTH_DIR).write_text("a file where the folder should be")
    proc = _launch(tmp_path, sys.executable, "-c", HOOK_PROBE, "3", opts=("--health-every", "2"))
    assert proc.returncode == 3, proc.stderr
    # after the failure the forward hooks are gone, backward() is PyTorch's own again; the
    # step hooks stay registered (inert) until exit: PyTorch cannot drop them mid-step
    assert proc.stdout.split() == ["0", "0", "1", "False", "True"]
    lines = _ours(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        "stepscope: training-health hooks off in this process: writing the health "
        "records failed (FileExistsError"
    ), lines
    assert lines[0].endswith("; training goes on")


@pytest.mark.usefixtures("torch_available")
def test_a_bad_switch_value_is_one_line(tmp_path: Path) -> None:
    env = launcher.child_env(tmp_path / "out", (0, 0, 1), "n", _env())
    env[health.ENV_HEALTH] = "often"
    proc = subprocess.run(
        [sys.executable, "-c", HOOK_PROBE, "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", "0", "False", "True"]
    assert _ours(proc.stderr) == [
        f"stepscope: training-health hooks off: {health.ENV_HEALTH}: expected a whole "
        "number of steps >= 1, got 'often'; training goes on"
    ]


@pytest.mark.usefixtures("torch_available")
def test_no_read_back_outside_the_sampled_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes a GPU wait is a read back to the host: none on a step that is not
    sampled, one per sampled step (one device, nothing non-finite to count)."""
    import torch
    from torch.optim import optimizer as optimizer_module

    reads: list[str] = []
    for name in ("cpu", "item", "tolist", "numpy", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self: Any, *a: Any, _orig: Any = original, _name: str = name, **k: Any) -> Any:
            reads.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    rec = health.HealthRecorder(tmp_path, 3, "t")
    rec.hook(optimizer_module)
    per_step = []
    try:
        for _ in range(7):
            reads.clear()
            loss = net(torch.randn(4, 8)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            per_step.append(list(reads))
    finally:
        rec.close()
    assert not rec.warned
    assert per_step == [["cpu", "tolist"], [], [], ["cpu", "tolist"], [], [], ["cpu", "tolist"]]
    # closed: PyTorch is as it was
    from torch.nn.modules import module

    assert not module._global_forward_hooks and not module._global_forward_pre_hooks
    assert not optimizer_module._global_optimizer_pre_hooks
    assert not getattr(torch.autograd.backward, "__stepscope_health__", False)


# --------------------------------------------------------------------------- end to end


#: the rule each known-answer case must fire (healthy: no training-health rule at all)
EXPECTED_RULE = {
    "lr0": "LossNotDecreasing",
    "sigmoid": "VanishingGradient",
    "explode": "ExplodingTensor",
    "deadrelu": "DeadRelu",
    "poorinit": "PoorWeightInitialization",
    "saturated": "SaturatedActivation",
    "healthy": None,
}


@pytest.mark.slow
@pytest.mark.usefixtures("torch_available")
@pytest.mark.parametrize("case", list(EXPECTED_RULE))
def test_stepscope_run_health_then_report_finds_the_known_answer(tmp_path: Path, case: str) -> None:
    """The issue's proof: ``stepscope run --health --health-every 5 -- python
    health_train.py --case X``, then ``stepscope report`` on what it wrote."""
    stepscope = [sys.executable, "-m", "stepscope"]
    out, rep = tmp_path / "out", tmp_path / "report"
    proc = subprocess.run(
        [
            *stepscope,
            "run",
            "--out",
            str(out),
            *SHORT_TRACE,
            "--health",
            "--health-every",
            "5",
            "--",
            sys.executable,
            str(HEALTH_TRAIN),
            "--case",
            case,
            "--steps",
            "60",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert _ours(proc.stderr) == [], proc.stderr
    proc = subprocess.run(
        [
            *stepscope,
            "report",
            str(out),
            "--out",
            str(rep),
            "--format",
            "json",
            "--fail-on",
            "never",
            "--cache",
            str(tmp_path / "cache"),
            "-q",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    findings = json.loads((rep / "report.json").read_text())["findings"]
    fired = {f["rule"] for f in findings}
    want = EXPECTED_RULE[case]
    if want is None:
        assert fired == set(), findings
    else:
        assert want in fired, findings
        assert all(f["rule"] != "ExplodingTensor" for f in findings) or case == "explode"

"""Zero-code training-health hooks: what ``stepscope run --health`` records in every process.

Why hooks rather than a callback: the script has no debugging code, so the measurements
must come from the places every PyTorch training loop passes through anyway:

* ``torch.autograd.backward`` (which ``Tensor.backward`` calls): the scalar that
  ``backward()`` is called on is the loss; the wrapper checks one flag and, on a sampled
  step only, keeps a detached reference (no copy, no sync);
* the global optimizer step hooks (``register_optimizer_step_pre_hook`` / ``_post_hook``):
  before a sampled step the gradients and the weights are measured and the weights copied;
  after it, ||Δw|| against that copy gives the update ratio ||Δw||/||w||;
* the global module forward hook (``register_module_forward_hook``): statistics of the
  outputs of ReLU / ReLU6 / LeakyReLU / GELU / Sigmoid / Tanh modules, and the module tree
  that gives parameters and activations their qualified names;
* the global module forward *pre*-hook (``register_module_forward_pre_hook``): statistics
  of the inputs of ReLU / ReLU6 / LeakyReLU / Sigmoid / Tanh modules (what Debugger's
  ``relu_input`` / ``tanh_input`` tensors hold, and what PoorWeightInitialization and
  SaturatedActivation judge). It runs before the module, so an ``inplace=True`` ReLU is
  measured before it overwrites its input: the reductions are queued first, on the same
  stream, and read nothing the ReLU writes.

Both module hooks are registered only for the forward passes of a sampled step and
removed at that step's optimizer call, so the other steps keep PyTorch's hook-free fast
path for every module call.

Sampled steps are 1, N+1, 2N+1, ... (SageMaker Debugger's ``save_interval``, counted from
1) of the first optimizer that steps (the same pacing rule as the trace recorder). Every
measurement of a step is queued on its tensors' device and read back in one batch after
the optimizer step (one sync per device; a second one only when some tensor holds NaN or
Inf, to count them), so a GPU is never synchronised on the other steps.

Statistics per tensor come from four reductions (sum, L2 norm, min/max, count of
non-zeros, in float32 or the tensor's own wider type); the standard deviation is the
population one derived from the sum and the sum of squares, exact where |mean| is within
~1000 standard deviations and set to 0 where min == max.

Output: ``DIR/health/<node>_rank<R>.<pid>.health.jsonl``, one JSON object a line, each
step's lines written and flushed together (the contract the ingest of
``analyzer/ingest/health_hooks.py`` reads). Any failure is one line on stderr: the hooks
remove themselves and the training goes on. Standard library only at import (torch is
imported by the training process before :func:`install` runs).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
import time
import weakref
from pathlib import Path
from typing import Any, TextIO

from stepscope.collectors import exits, identity
from stepscope.collectors.trace import ENV_DIR, ENV_NODE, warn

#: the launcher's switch for these hooks: record every N-th optimizer step; unset = off
ENV_HEALTH = "STEPSCOPE_RUN_HEALTH"
#: ``stepscope run --health`` without ``--health-every``
DEFAULT_EVERY = 50
#: the folder under the run's output folder the health files go to
HEALTH_DIR = "health"
#: the file format's version (every line's ``"v"``)
FORMAT_VERSION = 1
#: module classes (``torch.nn`` names) whose outputs are measured
ACTIVATION_MODULES = ("ReLU", "ReLU6", "LeakyReLU", "GELU", "Sigmoid", "Tanh")
#: module classes whose inputs are measured too (role ``activation_input``): the ones
#: Debugger's ``relu_input`` / ``tanh_input`` / ``sigmoid_input`` regexes name
INPUT_MODULES = ("ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh")
#: per module and sampled step, calls beyond this many are not measured (a module reused
#: in a loop, or a process that runs forward passes and never steps)
MAX_CALLS_PER_MODULE = 64
#: backward() calls whose loss is kept per sampled step (gradient accumulation)
MAX_LOSSES = 1024


def parse_every(text: str) -> int:
    """``"50"`` -> 50; ValueError with the reason otherwise."""
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"expected a whole number of steps >= 1, got {text!r}")
    return value


def health_path(out_dir: Path, node: str, rank: int, pid: int) -> Path:
    """Where one process's records go (named like the traces, plus the pid: one file per
    process even when a rank restarts)."""
    return out_dir / HEALTH_DIR / f"{node}_rank{rank}.{pid}.health.jsonl"


def _finite(value: float) -> float | None:
    """The contract writes NaN and +-Inf as JSON null."""
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- measurements


class _Stats:
    """One tensor's queued reductions: ``[sum, norm, min, max, nonzero(, nan, inf)]`` as a
    1-D tensor on the tensor's device, read back with the rest of the step's batch."""

    __slots__ = ("counted", "numel", "source", "vec")

    def __init__(self, torch: Any, x: Any, count_non_finite: bool) -> None:
        original = x
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # sums of squares overflow half precision
        acc = torch.float32 if x.device.type == "mps" else torch.float64
        mn, mx = torch.aminmax(x)
        parts = [x.sum(), torch.linalg.vector_norm(x), mn, mx, torch.count_nonzero(x)]
        if count_non_finite:
            parts += [torch.isnan(x).sum(), torch.isinf(x).sum()]
        self.numel = int(x.numel())
        self.vec = torch.stack([p.to(acc) for p in parts])
        # where NaN/Inf are counted later (params: only if the sum says there are some)
        self.source = None if count_non_finite else original
        self.counted = count_non_finite


def _measurable(torch: Any, x: Any) -> bool:
    return (
        isinstance(x, torch.Tensor)
        and x.is_floating_point()
        and x.numel() > 0
        and x.layout == torch.strided
    )


def _read_back(torch: Any, vecs: list[Any]) -> list[list[float]]:
    """Every queued vector's values: one ``cat`` and one copy to the host per device."""
    out: list[list[float]] = [[] for _ in vecs]
    by_device: dict[Any, list[int]] = {}
    for i, v in enumerate(vecs):
        by_device.setdefault(v.device, []).append(i)
    for idxs in by_device.values():
        flat = torch.cat([vecs[i] for i in idxs]).cpu().tolist()
        at = 0
        for i in idxs:
            n = int(vecs[i].numel())
            out[i] = [float(x) for x in flat[at : at + n]]
            at += n
    return out


def _summary(numel: int, values: list[float]) -> dict[str, Any]:
    """The record's stat fields from ``[sum, norm, min, max, nonzero, nan, inf]``."""
    total, norm, mn, mx, nonzero, nan, inf = values
    mean = total / numel
    var = max(norm * norm / numel - mean * mean, 0.0) if math.isfinite(norm) else math.nan
    std = 0.0 if mn == mx else math.sqrt(var) if var == var else math.nan
    return {
        "norm": _finite(norm),
        "mean": _finite(mean),
        "std": _finite(std),
        "min": _finite(mn),
        "max": _finite(mx),
        "zero_fraction": (numel - nonzero) / numel,
        "nan_count": int(nan),
        "inf_count": int(inf),
        "numel": numel,
    }


def _merge(parts: list[tuple[int, list[float]]]) -> tuple[int, list[float]]:
    """Several calls of one module in a step, as one sample (sums add; min/max combine)."""
    numel = sum(n for n, _ in parts)
    vals = [v for _, v in parts]
    norm = math.sqrt(sum(v[1] * v[1] for v in vals))
    return numel, [
        sum(v[0] for v in vals),
        norm,
        min(v[2] for v in vals),
        max(v[3] for v in vals),
        sum(v[4] for v in vals),
        sum(v[5] for v in vals),
        sum(v[6] for v in vals),
    ]


# --------------------------------------------------------------------------- the hooks


class HealthRecorder:
    """One process's health hooks and the records they write."""

    def __init__(self, out_dir: Path, every: int, node: str) -> None:
        self.out_dir = out_dir
        self.every = every
        self.node = node
        self.pid = os.getpid()
        self.handles: list[Any] = []  # the optimizer hooks' RemovableHandles
        self.forward_handle: Any = None  # the module forward hook, while a sampled step runs
        self.pre_handle: Any = None  # the module forward pre-hook (activation inputs), likewise
        self.original_backward: Any = None
        self.pace: weakref.ref[Any] | None = None  # the optimizer whose steps count
        self.steps_done = 0
        self.armed = False  # the next optimizer step is a sampled one
        self.off = False
        self.warned = False
        self.file: TextIO | None = None
        self.file_pid = 0
        self.path: Path | None = None
        self.lines_written = 0
        self.module_names: dict[int, str] = {}  # id(module) -> qualified name
        self.param_names: dict[int, str] = {}  # id(param) -> qualified name (from the modules)
        self.named: dict[int, str] = {}  # id(param) -> the name its records carry (fixed once used)
        self._unnamed: dict[int, Any] = {}  # modules seen this step without a name, by first call
        self._activations: dict[int, tuple[Any, list[_Stats]]] = {}  # module outputs
        self._inputs: dict[int, tuple[Any, list[_Stats]]] = {}  # module inputs
        self._losses: list[Any] = []
        self._pending: dict[str, Any] | None = None  # the sampled step between pre and post hook
        self._torch: Any = None
        self._activation_types: tuple[type, ...] = ()
        self._input_types: tuple[type, ...] = ()

    # -- installing ----------------------------------------------------------------------

    def hook(self, optimizer_module: Any) -> None:
        """Register everything (torch is still initialising: only lookups, no tensors)."""
        import torch  # already in sys.modules: torch.optim.optimizer imports it

        self._torch = torch
        nn = sys.modules["torch.nn"]
        self._activation_types = tuple(getattr(nn, n) for n in ACTIVATION_MODULES if hasattr(nn, n))
        self._input_types = tuple(getattr(nn, n) for n in INPUT_MODULES if hasattr(nn, n))
        self.handles = [
            optimizer_module.register_optimizer_step_pre_hook(self.on_pre_step),
            optimizer_module.register_optimizer_step_post_hook(self.on_post_step),
        ]
        autograd: Any = sys.modules["torch.autograd"]
        original = autograd.backward

        @functools.wraps(original)
        def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
            if self.armed:
                self.on_backward(tensors)
            return original(tensors, *args, **kwargs)

        backward.__stepscope_health__ = True  # type: ignore[attr-defined]
        self.original_backward = original
        autograd.backward = backward
        self._arm()  # step 1 is sampled: its forward passes come before any optimizer call
        exits.on_exit(self.close)

    def _arm(self) -> None:
        self.armed = True
        module = sys.modules["torch.nn.modules.module"]
        if self.forward_handle is None:
            self.forward_handle = module.register_module_forward_hook(self.on_forward)
        if self.pre_handle is None:
            self.pre_handle = module.register_module_forward_pre_hook(self.on_forward_pre)

    def _disarm_forward(self) -> None:
        handles = (self.forward_handle, self.pre_handle)
        self.forward_handle = self.pre_handle = None
        for handle in handles:
            if handle is not None:
                handle.remove()

    def unhook(self, optimizer_hooks: bool = True) -> None:
        """Remove the hooks and put ``torch.autograd.backward`` back (if it is still ours).
        From inside an optimizer hook the optimizer hooks stay (inert once ``off``):
        PyTorch iterates over them lazily and fails if one before the last is removed."""
        self.armed = False
        if optimizer_hooks:
            handles, self.handles = self.handles, []
            for handle in handles:
                with contextlib.suppress(Exception):
                    handle.remove()
        with contextlib.suppress(Exception):
            self._disarm_forward()
        autograd: Any = sys.modules.get("torch.autograd")
        if (
            autograd is not None
            and self.original_backward is not None
            and getattr(autograd.backward, "__stepscope_health__", False)
        ):
            autograd.backward = self.original_backward
        self.original_backward = None
        self._activations.clear()
        self._inputs.clear()
        self._unnamed.clear()
        self._losses.clear()
        self._pending = None

    def close(self, optimizer_hooks: bool = True) -> None:
        """At exit, or to switch the hooks off: unhook and close the file."""
        self.off = True
        self.unhook(optimizer_hooks)
        if optimizer_hooks:
            with contextlib.suppress(Exception):
                exits.forget(self.close)
        file, self.file = self.file, None
        if file is not None and self.file_pid == os.getpid():
            with contextlib.suppress(Exception):
                file.close()

    def fail(self, what: str, exc: BaseException) -> None:
        """Switch the hooks off after one line on stderr; the training goes on (the optimizer
        hooks, inert now, are removed at exit)."""
        self.close(optimizer_hooks=False)
        if not self.warned:
            self.warned = True
            detail = str(exc).splitlines()[0] if str(exc) else ""
            warn(
                f"training-health hooks off in this process: {what} failed "
                f"({type(exc).__name__}: {detail}); training goes on"
            )

    # -- the hooks themselves (no exception leaves them) ----------------------------------

    def on_backward(self, tensors: Any) -> None:
        try:
            torch = self._torch
            t = tensors[0] if isinstance(tensors, (tuple, list)) and len(tensors) == 1 else tensors
            if isinstance(t, torch.Tensor) and t.numel() == 1 and len(self._losses) < MAX_LOSSES:
                self._losses.append(t.detach().reshape(()))
        except Exception as exc:
            self.fail("reading the loss", exc)

    def on_forward(self, module: Any, args: Any, output: Any) -> None:
        if self.off:
            return
        try:
            torch = self._torch
            if not torch.is_grad_enabled() or _compiling(torch):
                return  # an evaluation pass, or a graph being traced: not a training step
            key = id(module)
            if key not in self.module_names and key not in self._unnamed:
                self._unnamed[key] = module
            if isinstance(module, self._activation_types):
                self._queue(self._activations, module, output)
        except Exception as exc:
            self.fail("measuring an activation", exc)

    def on_forward_pre(self, module: Any, args: Any) -> None:
        """An activation module's input, before the module runs (an in-place ReLU has not
        overwritten it yet); the module is named by the forward hook after it."""
        if self.off or not isinstance(module, self._input_types):
            return
        try:
            torch = self._torch
            if not torch.is_grad_enabled() or _compiling(torch):
                return
            if isinstance(args, tuple) and args:
                self._queue(self._inputs, module, args[0])
        except Exception as exc:
            self.fail("measuring an activation input", exc)

    def _queue(self, into: dict[int, tuple[Any, list[_Stats]]], module: Any, x: Any) -> None:
        """Queue one call's reductions of ``x`` under its module (up to the call limit)."""
        torch = self._torch
        if not _measurable(torch, x):
            return
        entry = into.get(id(module))
        if entry is None:
            entry = into[id(module)] = (module, [])
        if len(entry[1]) < MAX_CALLS_PER_MODULE:
            with torch.no_grad():
                entry[1].append(_Stats(torch, x.detach(), count_non_finite=True))

    def _paces(self, optimizer: Any) -> bool:
        pace = self.pace() if self.pace is not None else None
        if pace is None:  # the first optimizer, or the pacing one is gone: this one paces
            self.pace = weakref.ref(optimizer)
            return True
        return pace is optimizer

    def on_pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.off or not self.armed or not self._paces(optimizer):
            return
        try:
            self.armed = False
            self._disarm_forward()
            with self._torch.no_grad():
                self._measure_before(optimizer)
        except Exception as exc:
            self.fail("measuring gradients and weights", exc)

    def on_post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.off or not self._paces(optimizer):
            return
        try:
            self.steps_done += 1
            if self._pending is not None:
                with self._torch.no_grad():
                    self._measure_after()
            if self.steps_done % self.every == 0:  # the next step, steps_done + 1, is sampled
                self._arm()
        except Exception as exc:
            self.fail("writing the health records", exc)

    # -- a sampled step ------------------------------------------------------------------

    def _learn_names(self) -> None:
        """Name the modules (and their parameters) first seen this step: the roots finish
        their forward last, so walking the calls backwards meets each tree's root first."""
        for module in reversed(self._unnamed.values()):
            if id(module) in self.module_names:
                continue
            for qual, sub in module.named_modules(remove_duplicate=False):
                self.module_names.setdefault(id(sub), qual)
            for qual, param in module.named_parameters(remove_duplicate=False):
                self.param_names.setdefault(id(param), qual)
        self._unnamed.clear()

    def _param_name(self, param: Any, group: int, index: int) -> str:
        key = id(param)
        name = self.named.get(key)
        if name is None:
            name = self.param_names.get(key) or f"param_group{group}.{index}"
            self.named[key] = name
        return name

    def _measure_before(self, optimizer: Any) -> None:
        torch = self._torch
        self._learn_names()
        params = []
        for g, group in enumerate(optimizer.param_groups):
            for j, p in enumerate(group["params"]):
                if not _measurable(torch, p):
                    continue
                w = p.detach()
                grad = p.grad
                entry: dict[str, Any] = {
                    "name": self._param_name(p, g, j),
                    "param": p,
                    "weight": _Stats(torch, w, count_non_finite=False),
                }
                if grad is not None and _measurable(torch, grad):
                    entry["gradient"] = _Stats(torch, grad.detach(), count_non_finite=False)
                    entry["before"] = w.clone()
                    entry["weight"].source = entry["before"]  # the pre-step values, for NaN counts
                params.append(entry)
        activations = self._take(self._activations)
        inputs = self._take(self._inputs)
        losses, self._losses = self._losses, []
        lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
        self._pending = {
            "step": self.steps_done + 1,
            "params": params,
            "activations": activations,
            "inputs": inputs,
            "loss": torch.stack([t.to(losses[0].device, torch.float32) for t in losses])
            .mean()
            .reshape(1)
            if losses
            else None,
            "lr": float(lr) if isinstance(lr, (int, float)) else lr,
        }

    def _take(
        self, queued: dict[int, tuple[Any, list[_Stats]]]
    ) -> list[tuple[str, str, list[_Stats]]]:
        """The step's queued module measurements as (qualified name, class, calls); emptied."""
        out = []
        for key, (module, calls) in queued.items():
            cls = type(module).__name__
            out.append((self.module_names.get(key) or cls, cls, calls))
        queued.clear()
        return out

    def _measure_after(self) -> None:
        torch = self._torch
        pending, self._pending = self._pending, None
        assert pending is not None
        stats: list[_Stats] = []
        deltas: list[Any] = []
        # Δw goes through one scratch buffer per device and dtype, reused parameter after
        # parameter (each norm is queued before the next subtraction, on the same stream):
        # the largest parameter's size once, not a second copy of the model
        scratch: dict[tuple[Any, Any], Any] = {}
        with_grad = [e for e in pending["params"] if "gradient" in e]
        for entry in with_grad:
            before = entry["before"]
            key = (before.device, before.dtype)
            scratch[key] = max(scratch.get(key, 0), before.numel())
        for key, size in scratch.items():
            scratch[key] = torch.empty(size, device=key[0], dtype=key[1])
        for entry in pending["params"]:
            stats.append(entry["weight"])
            if "gradient" in entry:
                stats.append(entry["gradient"])
                before = entry["before"]
                diff = scratch[(before.device, before.dtype)][: before.numel()].view(before.shape)
                torch.sub(entry["param"].detach(), before, out=diff)
                deltas.append(
                    torch.linalg.vector_norm(diff).reshape(1).to(entry["weight"].vec.dtype)
                )
        for _, _, calls in (*pending["activations"], *pending["inputs"]):
            stats.extend(calls)
        vecs = [s.vec for s in stats] + deltas
        extra = [pending["loss"]] if pending["loss"] is not None else []
        lr = pending["lr"]
        if isinstance(lr, torch.Tensor):
            extra.append(lr.detach().reshape(1).to(torch.float32))
        values = _read_back(torch, vecs + extra)
        by_stats = dict(zip(map(id, stats), values[: len(stats)], strict=True))
        self._count_non_finite(stats, by_stats)
        delta_values = [v[0] for v in values[len(stats) : len(stats) + len(deltas)]]
        tail = values[len(vecs) :]
        loss = tail.pop(0)[0] if pending["loss"] is not None else None
        if isinstance(lr, torch.Tensor):
            lr = tail.pop(0)[0]
        self._write(pending, by_stats, delta_values, loss, lr)

    def _count_non_finite(self, stats: list[_Stats], values: dict[int, list[float]]) -> None:
        """NaN/Inf counts for the tensors whose sum says they hold some; zeros elsewhere."""
        torch = self._torch
        todo = []
        for s in stats:
            vals = values[id(s)]
            if s.counted:
                continue
            if math.isfinite(vals[0]) or s.source is None:
                vals += [0.0, 0.0]
            else:
                todo.append(s)
        if todo:
            counts = _read_back(
                torch,
                [
                    torch.stack([torch.isnan(s.source).sum(), torch.isinf(s.source).sum()])
                    for s in todo
                ],
            )
            for s, c in zip(todo, counts, strict=True):
                values[id(s)] += c
        for s in stats:
            s.source = None

    def _write(
        self,
        pending: dict[str, Any],
        values: dict[int, list[float]],
        deltas: list[float],
        loss: float | None,
        lr: Any,
    ) -> None:
        step = pending["step"]
        common = {"time": time.time(), "node": self.node, "rank": identity.process_rank()}
        records: list[dict[str, Any]] = []

        def scalar(tag: str, value: float) -> None:
            records.append(
                {
                    "v": FORMAT_VERSION,
                    "kind": "scalar",
                    "step": step,
                    "tag": tag,
                    "value": _finite(value),
                    **common,
                }
            )

        def tensor(name: str, role: str, **fields: Any) -> None:
            records.append(
                {
                    "v": FORMAT_VERSION,
                    "kind": "tensor",
                    "step": step,
                    "name": name,
                    "role": role,
                    **fields,
                    **common,
                }
            )

        if loss is not None:
            scalar("loss", loss)
        if isinstance(lr, (int, float)):
            scalar("lr", float(lr))
        grad_sq = [values[id(e["gradient"])][1] ** 2 for e in pending["params"] if "gradient" in e]
        if grad_sq:
            scalar("grad_norm", math.sqrt(sum(grad_sq)))
        delta_iter = iter(deltas)
        for entry in pending["params"]:
            weight = _summary(entry["weight"].numel, values[id(entry["weight"])])
            tensor(entry["name"], "weight", **weight)
            if "gradient" in entry:
                tensor(
                    entry["name"],
                    "gradient",
                    **_summary(entry["gradient"].numel, values[id(entry["gradient"])]),
                )
                w_norm = weight["norm"]
                delta = next(delta_iter)
                if w_norm == 0.0 and math.isfinite(delta):
                    continue  # a zero-initialised tensor (a bias): the ratio is undefined, not Inf
                ratio = delta / w_norm if w_norm else math.nan
                tensor(entry["name"], "update_ratio", value=_finite(ratio))
        for role, measured in (
            ("activation", pending["activations"]),
            ("activation_input", pending["inputs"]),
        ):
            for name, cls, calls in measured:
                numel, vals = _merge([(s.numel, values[id(s)]) for s in calls])
                tensor(name, role, module=cls, **_summary(numel, vals))
        self._emit(records)

    def _emit(self, records: list[dict[str, Any]]) -> None:
        pid = os.getpid()
        if self.file is None or self.file_pid != pid:  # the first records, or a forked child's
            self.path = health_path(self.out_dir, self.node, identity.process_rank(), pid)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (open for the run)
            self.file_pid = pid
        text = "".join(
            json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in records
        )
        self.file.write(text)
        self.file.flush()
        self.lines_written += len(records)


def _compiling(torch: Any) -> bool:
    compiler = getattr(torch, "compiler", None)
    is_compiling = getattr(compiler, "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


#: this process's hooks, once torch.optim is imported under ``stepscope run --health``
recorder: HealthRecorder | None = None


def install(optimizer_module: Any) -> HealthRecorder | None:
    """Install the hooks on the just-imported ``torch.optim.optimizer``, if the launcher
    asked for them (``STEPSCOPE_RUN_HEALTH``); None (one line on stderr when the
    environment is damaged) otherwise."""
    global recorder
    if recorder is not None:
        return recorder
    out = os.environ.get(ENV_DIR)
    every_text = os.environ.get(ENV_HEALTH)
    if not out or not every_text:
        return None
    try:
        every = parse_every(every_text)
    except ValueError as exc:
        warn(f"training-health hooks off: {ENV_HEALTH}: {exc}; training goes on")
        return None
    node = os.environ.get(ENV_NODE) or identity.node_name()
    rec = HealthRecorder(Path(out), every, node)
    try:
        rec.hook(optimizer_module)
    except Exception:
        rec.close()
        raise
    recorder = rec
    return rec

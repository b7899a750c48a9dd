"""A small plain-PyTorch CPU training script with known training-health answers.

It carries no profiling code on purpose: the zero-code hooks of ``stepscope run --health``
must find the problems without touching it, and ``--tb DIR`` records the same run the way
ordinary scripts do (``torch.utils.tensorboard.SummaryWriter``), so both inputs are judged
against the same known answer:

* ``healthy``  -- a small ReLU MLP that learns a synthetic classification task;
* ``lr0``      -- the same with learning rate 0: the loss does not decrease;
* ``sigmoid``  -- a 12-layer sigmoid MLP: the early layers' gradients vanish;
* ``explode``  -- a regression with a far too high learning rate: loss and grads go Inf/NaN;
* ``deadrelu`` -- a large negative bias before every ReLU: the ReLUs output only zeros;
* ``poorinit`` -- a 6-layer ReLU MLP, Kaiming-initialised (the ReLU inputs keep their
  variance layer after layer) except its 4th Linear's weights, 100x too small: the ReLU
  inputs from there on have a few hundred times less variance than those before (10^4
  from the weights; the biases' own variance, at PyTorch's default init, floors it);
* ``saturated`` -- a +50 bias before a Tanh: every tanh input lies far beyond 9.4999.

Usage: ``python tests/support/health_train.py --case CASE --steps N [--tb DIR]``.
Seeded and single-threaded, so a case's numbers repeat run to run; each case runs in
well under 20 s on one CPU core.

SummaryWriter tags (the layout ``analyzer/ingest/tensorboard_events.py`` documents):
scalars ``train/loss``, ``train/lr``, ``train/grad_norm`` (every ``--log-every`` steps, as
scripts log the loss: Hugging Face's ``logging_steps``, Lightning's ``log_every_n_steps``),
``eval/loss`` (every ``--eval-every`` steps); per parameter ``gradients/<param>/norm``,
``weights/<param>/norm``, ``update_ratio/<param>`` scalars and, every ``--hist-every`` steps,
``gradients/<param>``, ``weights/<param>`` histograms (while finite: a histogram of NaN cannot
be binned); per ReLU/Sigmoid/Tanh module ``activations/<module>:<Class>/zero_fraction``
scalars and ``activations/<module>:<Class>`` histograms (the class after the colon, e.g.
``activations/1:ReLU``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

CASES = ("healthy", "lr0", "sigmoid", "explode", "deadrelu", "poorinit", "saturated")
#: poorinit: the hidden Linear (0-based among the six) initialised this much too small
POORINIT_LAYER, POORINIT_SCALE = 3, 0.01
_ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh)


def _data(
    case: str, n: int, w: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic task: 2-class labels from the fixed random linear rule ``w`` (a regression
    with large targets for ``explode``, where the squared error blows up fastest)."""
    x = torch.randn(n, 16, generator=gen)
    if case == "explode":
        return x, (x @ w) * 100.0
    return x, ((x @ w).squeeze(1) > 0).long()


def _model(case: str) -> nn.Sequential:
    if case == "sigmoid":
        layers: list[nn.Module] = []
        width = 16
        for _ in range(12):
            layers += [nn.Linear(width, 32), nn.Sigmoid()]
            width = 32
        layers.append(nn.Linear(width, 2))
        return nn.Sequential(*layers)
    if case == "poorinit":
        return _poorly_initialised()
    if case == "saturated":
        net = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 2))
        with torch.no_grad():
            net[0].bias.fill_(50.0)
        return net
    out = 1 if case == "explode" else 2
    net = nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, out)
    )
    if case == "deadrelu":
        with torch.no_grad():
            for layer in (net[0], net[2]):
                assert isinstance(layer, nn.Linear)
                layer.bias.fill_(-100.0)
    return net


def _poorly_initialised() -> nn.Sequential:
    """Six Linear+ReLU layers with Kaiming-normal weights (what keeps a ReLU net's signal
    variance constant over depth), one of them scaled by POORINIT_SCALE; biases at
    PyTorch's default."""
    layers: list[nn.Module] = []
    width = 16
    for i in range(6):
        linear = nn.Linear(width, 64)
        with torch.no_grad():
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            if i == POORINIT_LAYER:
                linear.weight.mul_(POORINIT_SCALE)
        layers += [linear, nn.ReLU()]
        width = 64
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


def _lr(case: str) -> float:
    return {"lr0": 0.0, "explode": 0.5, "saturated": 0.01}.get(case, 0.2)


def train(
    case: str,
    steps: int,
    tb_dir: str | None,
    eval_every: int = 10,
    hist_every: int = 10,
    log_every: int = 5,
) -> list[float]:
    """Run ``steps`` full-batch gradient-descent steps of ``case``; returns each step's loss.

    Full batch, so a healthy run's loss falls every step: minibatch noise would make a
    loss-not-decreasing check flip on a run that learns."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1234)
    w = torch.randn(16, 1, generator=gen)
    x_train, y_train = _data(case, 1024, w, gen)
    x_eval, y_eval = _data(case, 512, w, gen)
    net = _model(case)
    loss_fn: nn.Module = nn.MSELoss() if case == "explode" else nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=_lr(case))

    writer: Any = None
    activations: dict[str, torch.Tensor] = {}
    if tb_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=tb_dir)
        for mod_name, module in net.named_modules():
            if isinstance(module, _ACTIVATIONS):
                module.register_forward_hook(
                    lambda _m, _i, out, n=mod_name: activations.__setitem__(n, out.detach())
                )

    losses: list[float] = []
    for step in range(1, steps + 1):
        net.train()
        out = net(x_train)
        loss = loss_fn(out, y_train)
        opt.zero_grad()
        loss.backward()
        before = {n: p.detach().clone() for n, p in net.named_parameters()} if writer else {}
        grad_norm = math.sqrt(
            sum(float(p.grad.pow(2).sum()) for p in net.parameters() if p.grad is not None)
        )
        opt.step()
        losses.append(loss.item())
        if writer is not None:
            _log_step(
                writer,
                net,
                step,
                loss.item(),
                opt,
                grad_norm,
                before,
                activations,
                step % hist_every == 0,
                step % log_every == 0,
            )
            if step % eval_every == 0:
                net.eval()
                with torch.no_grad():
                    writer.add_scalar("eval/loss", float(loss_fn(net(x_eval), y_eval)), step)
    if writer is not None:
        writer.close()
    return losses


def _log_step(
    writer: Any,
    net: nn.Module,
    step: int,
    loss: float,
    opt: torch.optim.Optimizer,
    grad_norm: float,
    before: dict[str, torch.Tensor],
    activations: dict[str, torch.Tensor],
    histograms: bool,
    scalars: bool,
) -> None:
    """What a careful script logs per step: scalars, per-parameter norms/histograms, and the
    activation modules' output statistics."""
    if scalars:
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
        writer.add_scalar("train/grad_norm", grad_norm, step)
    for name, p in net.named_parameters():
        w = p.detach()
        if p.grad is not None:
            g = p.grad.detach()
            writer.add_scalar(f"gradients/{name}/norm", float(g.norm()), step)
            if histograms:
                _histogram(writer, f"gradients/{name}", g, step)
        writer.add_scalar(f"weights/{name}/norm", float(w.norm()), step)
        if histograms:
            _histogram(writer, f"weights/{name}", w, step)
        w_norm = float(before[name].norm())
        if w_norm > 0:
            writer.add_scalar(
                f"update_ratio/{name}", float((w - before[name]).norm()) / w_norm, step
            )
    for mod_name, out in activations.items():
        tag = f"activations/{mod_name}:{type(net.get_submodule(mod_name)).__name__}"
        writer.add_scalar(f"{tag}/zero_fraction", float((out == 0).float().mean()), step)
        if histograms:
            _histogram(writer, tag, out, step)


def _histogram(writer: Any, tag: str, values: torch.Tensor, step: int) -> None:
    """A histogram where one can be binned: NaN, Inf or values near the float limit make
    numpy's binning fail, and the per-step norm scalars carry those steps instead."""
    if not bool(torch.isfinite(values).all()) or float(values.abs().max()) > 1e30:
        return
    writer.add_histogram(tag, values, step)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--tb", metavar="DIR", help="also log to a SummaryWriter in DIR")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--hist-every", type=int, default=10, help="histograms every N steps")
    parser.add_argument(
        "--log-every", type=int, default=5, help="loss, lr and grad norm every N steps"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or min(args.eval_every, args.hist_every, args.log_every) < 1:
        parser.error("--steps and the --*-every intervals must be at least 1")
    losses = train(
        args.case,
        args.steps,
        str(Path(args.tb)) if args.tb else None,
        args.eval_every,
        args.hist_every,
        args.log_every,
    )
    print(
        f"case={args.case} steps={args.steps} first_loss={losses[0]:.6g} last_loss={losses[-1]:.6g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

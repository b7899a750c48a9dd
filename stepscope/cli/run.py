"""``stepscope run [options] -- COMMAND...``: profile a training command with no change to it.

The work is in :mod:`stepscope.collectors.launcher` (standard library only, so it also runs
as ``python -m stepscope.collectors.launcher`` where click is not installed); this is only
its command line. It exits as COMMAND did: the same code, or the same signal.
"""

from __future__ import annotations

import click

from stepscope.cli.common import Command, user_errors
from stepscope.collectors.hang import (
    DEFAULT_FR_BUFFER,
    DEFAULT_MIN_S,
    STEPS_PER_TIMEOUT,
    parse_stall_timeout,
)
from stepscope.collectors.health import DEFAULT_EVERY
from stepscope.collectors.launcher import DEFAULT_INTERVAL_MS, exit_with, run
from stepscope.collectors.trace import DEFAULT_STEPS, format_steps, parse_steps


class StepsType(click.ParamType):
    name = "WAIT:WARMUP:ACTIVE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int, int]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_steps(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class StallType(click.ParamType):
    name = "SECONDS|auto|off"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        try:
            parse_stall_timeout(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


@click.command(
    "run",
    short_help="Run COMMAND (e.g. torchrun ... train.py) with stepscope's collectors.",
    cls=Command,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default: on SageMaker the TensorBoard folder it uploads "
    "during the job, else ./stepscope-output).",
)
@click.option(
    "--steps",
    type=StepsType(),
    default=format_steps(DEFAULT_STEPS),
    show_default=True,
    help="Optimizer steps to skip, to warm up, and to record, in every process that trains.",
)
@click.option(
    "--interval-ms",
    type=click.IntRange(min=10),
    default=DEFAULT_INTERVAL_MS,
    show_default=True,
    help="System metrics sampling period.",
)
@click.option(
    "--health",
    is_flag=True,
    default=False,
    help=f"Also record training health (loss, lr, gradient and weight statistics, update "
    f"ratios, ReLU/Sigmoid/Tanh activations) every {DEFAULT_EVERY} optimizer steps.",
)
@click.option(
    "--health-every",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Record training health every N optimizer steps (implies --health).",
)
@click.option(
    "--stall-timeout",
    type=StallType(),
    default="auto",
    show_default=True,
    metavar="SECONDS|auto|off",
    help="Seconds without an optimizer step after which each rank writes its Flight Recorder "
    "buffer and the Python stacks of its threads into hangs/, once (auto: the larger of "
    f"{DEFAULT_MIN_S:.0f} s and {STEPS_PER_TIMEOUT} median steps). Nothing is stopped.",
)
@click.option(
    "--fr-buffer",
    type=click.IntRange(min=0),
    default=DEFAULT_FR_BUFFER,
    show_default=True,
    metavar="N",
    help="PyTorch Flight Recorder entries kept per process group (TORCH_FR_BUFFER_SIZE, "
    "unless the job sets it); 0 leaves the Flight Recorder as the job has it.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@user_errors
def run_command(
    out_dir: str | None,
    steps: tuple[int, int, int],
    interval_ms: int,
    health: bool,
    health_every: int | None,
    stall_timeout: str,
    fr_buffer: int,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND with stepscope's collectors: system metrics once per node, and a trace of
    a window of training steps from every Python process COMMAND starts.

    \b
    stepscope run -- torchrun --nproc-per-node 8 train.py --epochs 3
    stepscope run --out /tmp/prof --steps 5:1:10 -- python train.py
    stepscope run --health-every 20 -- python train.py

    Then: stepscope report DIR (or stepscope dashboard DIR). A failure of the collectors is
    one line on stderr and never stops the training.
    """
    every = health_every if health_every is not None else DEFAULT_EVERY if health else None
    exit_with(
        run(
            command,
            out_dir=out_dir,
            steps=steps,
            interval_ms=interval_ms,
            health_every=every,
            stall_timeout=stall_timeout,
            fr_buffer=fr_buffer,
        )
    )

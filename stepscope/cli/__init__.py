"""``stepscope``: the command group. Each command lives in its own module.

Commands are imported only when they run (a lazy group): ``stepscope ingest`` should not pay
for pydantic, plotly or the SageMaker SDK that other commands need.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from analyzer import __version__
from stepscope.cli.common import OneLineErrors

#: command name → "module:attribute", in the order ``stepscope --help`` lists them.
COMMANDS = {
    "ingest": "stepscope.cli.ingest:ingest_command",
    "report": "stepscope.cli.report:report_command",
    "export": "stepscope.cli.export:export_command",
    "dashboard": "stepscope.cli.dashboard:dashboard_command",
    "attach": "stepscope.cli.attach:attach_command",
    "run": "stepscope.cli.run:run_command",
}


class LazyGroup(OneLineErrors, click.Group):
    """Imports a command's module only when it runs; usage errors are one line
    (``OneLineErrors``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module), attr)
        return command if isinstance(command, click.Command) else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stepscope")
def cli() -> None:
    """Profiling analysis for distributed training jobs (SageMaker first).

    SOURCE is a local folder, an s3:// prefix, or a SageMaker training job name.
    """


def main() -> None:
    cli(prog_name="stepscope")

"""``smprof``: the command group. Each command lives in its own module."""

from __future__ import annotations

import click

from analyzer import __version__
from smprof.cli.attach import attach_command
from smprof.cli.dashboard import dashboard_command
from smprof.cli.ingest import ingest_command
from smprof.cli.report import report_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smprof")
def cli() -> None:
    """Profiling analysis for distributed training jobs (SageMaker first).

    SOURCE is a local folder, an s3:// prefix, or a SageMaker training job name.
    """


cli.add_command(ingest_command)
cli.add_command(report_command)
cli.add_command(dashboard_command)
cli.add_command(attach_command)


def main() -> None:
    cli(prog_name="smprof")

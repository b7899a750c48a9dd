"""``stepscope ingest SOURCE``: build (or refresh) the job dataset and summarise it."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from analyzer.ingest.no_pandas import keep_pandas_out
from analyzer.ingest.pipeline import ingest
from analyzer.sources import open_source
from stepscope.cli.common import progress_bar, setup_logging, user_errors


@click.command("ingest")
@click.argument("source")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Cache folder (default: $STEPSCOPE_CACHE or ~/.cache/stepscope).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Parallel parse workers.")
@click.option("--profile", default=None, help="AWS profile for S3 and SageMaker sources.")
@click.option("--region", default=None, help="AWS region for a SageMaker job name.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@user_errors
def ingest_command(source: str, cache_dir: str | None, as_json: bool, jobs: int,
                   profile: str | None, region: str | None, progress: bool | None,
                   verbose: int, quiet: bool) -> None:
    """Ingest every profiler output of SOURCE into the cached job dataset.

    Re-running reads only new or changed files. Damaged files are skipped and listed;
    their good records are kept.
    """
    keep_pandas_out()  # this command needs none (analyzer/ingest/no_pandas.py)
    setup_logging(verbose, quiet or as_json)
    show_bar = sys.stderr.isatty() if progress is None else progress
    src = open_source(source, profile=profile, region=region)
    with progress_bar(show_bar and not quiet) as on_progress:
        result = ingest(src, cache_dir=cache_dir, jobs=jobs, on_progress=on_progress, processes=True)
    if as_json:
        sys.stdout.write(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_summary(result.summary)


def _print_summary(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    job = s["job"]
    out.print(f"[bold]{job['name']}[/bold] ({s['kind']}: {s['source']})")
    if job.get("status"):
        out.print(f"status: {job['status']}  instances: {job.get('instance_type')} x {job.get('instance_count')}")
    t = Table(show_header=True, header_style="bold")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, rows in s["tables"].items():
        if rows:
            t.add_row(name, f"{rows:,}")
    out.print(t)
    span = s.get("time_span")
    if span:
        out.print(f"time span: {span['start']} → {span['end']} ({span['seconds']:.1f} s)")
    out.print(
        f"nodes: {s['nodes']}  ranks: {s['ranks']}  files: {s['files_ingested']} ingested, "
        f"{s['files_read']} read now, {s['files_from_cache']} from cache, {s['ignored']} ignored, "
        f"{len(s['skipped'])} skipped"
    )
    for sk in s["skipped"]:
        out.print(f"  [yellow]skipped[/yellow] {sk['path']}: {sk['reason']}", markup=True, highlight=False)
    out.print(f"cache: {s['cache']['dir']} ({s['duration_s']:.2f} s)")

"""``stepscope ingest SOURCE``: build (or refresh) the job dataset and summarise it."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from analyzer.errors import StepscopeError
from analyzer.ingest.no_pandas import keep_pandas_out
from analyzer.ingest.pipeline import ingest, no_profiler_data
from analyzer.sources import open_source
from stepscope.cli.common import (
    Command,
    aws_options,
    cache_option,
    console_options,
    engine_option,
    open_engine,
    progress_bar,
    setup_logging,
    user_errors,
)


@click.command("ingest", cls=Command)
@click.argument("source")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Parallel parse workers.",
)
@aws_options
@engine_option
@console_options
@user_errors
def ingest_command(
    source: str,
    cache_dir: str | None,
    as_json: bool,
    jobs: int,
    profile: str | None,
    region: str | None,
    engine: str | None,
    progress: bool | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Ingest every profiler output of SOURCE into the cached job dataset.

    Re-running reads only new or changed files. Damaged files are skipped and listed;
    their good records are kept.
    """
    keep_pandas_out()  # this command needs none (analyzer/ingest/no_pandas.py)
    setup_logging(verbose, quiet or as_json)
    show_bar = sys.stderr.isatty() if progress is None else progress
    src = open_source(source, profile=profile, region=region)
    with open_engine(engine) as cluster, progress_bar(show_bar and not quiet) as on_progress:
        result = ingest(
            src,
            cache_dir=cache_dir,
            jobs=jobs,
            on_progress=on_progress,
            processes=True,
            engine=cluster,
        )
    if as_json:
        sys.stdout.write(orjson.dumps(result.summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _print_summary(result.summary)
    empty = no_profiler_data(result.summary)
    if empty is not None:  # the summary above says what was found; the exit says it is nothing
        raise StepscopeError(empty)


def _print_summary(s: dict[str, Any]) -> None:
    """The summary for a person: one fact per short line, so it reads in a terminal and in a
    CI log alike. ``soft_wrap``: a long path runs past the edge rather than being broken into
    a second line mid-phrase (rich wraps at 80 columns when stdout is not a terminal)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Console(soft_wrap=True, highlight=False)
    job = s["job"]
    out.print(f"[bold]{escape(job['name'])}[/bold] ({s['kind']}: {escape(s['source'])})")
    if job.get("status"):
        out.print(
            f"status: {job['status']}, "
            f"instances: {job.get('instance_type')} × {job.get('instance_count')}"
        )
    t = Table(show_header=True, header_style="bold")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, rows in s["tables"].items():
        if rows:
            t.add_row(name, f"{rows:,}")
    out.print(t)
    span = s.get("time_span")
    if span:
        out.print(f"time span: {_span(span['start'], span['end'])} ({span['seconds']:.1f} s)")
    out.print(f"nodes: {s['nodes']}, ranks: {s['ranks']}")
    skipped = s["skipped"]
    out.print(f"files: {s['files_listed']} found")
    for n, what in (
        (s["files_ingested"], "with profiler data"),
        (s["ignored"], "not profiler output (ignored)"),
        (len(skipped), "damaged (skipped)"),
    ):
        out.print(f"  {n:>{_width(s)}} {what}")
    out.print(f"  {s['files_read']:>{_width(s)}} read now, {s['files_from_cache']} from the cache")
    for sk in skipped:
        out.print(f"  [yellow]skipped[/yellow] {escape(sk['path'])}: {escape(sk['reason'])}")
    out.print(f"cache: {escape(s['cache']['dir'])} ({s['duration_s']:.2f} s)")


def _width(s: dict[str, Any]) -> int:
    """Digits of the largest file count: the counts line up in a column."""
    return len(str(s["files_listed"]))


def _span(start: str, end: str) -> str:
    """``2026-11-23 03:17:21 → 03:17:37 UTC``: whole seconds, the date once when it is one day."""
    from datetime import UTC, datetime

    a, b = (datetime.fromisoformat(x).astimezone(UTC) for x in (start, end))
    tail = b.strftime("%H:%M:%S") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M:%S")
    return f"{a:%Y-%m-%d %H:%M:%S} → {tail} UTC"

"""``stepscope export SOURCE --perfetto OUT``: every rank on one timeline, for Perfetto's UI.

The timeline itself is built by :mod:`stepscope.present.perfetto` (the dashboard's download
uses the same function); this module opens the source, judges it for the findings' markers,
picks the output file and reports what it wrote.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import sys
from pathlib import Path

import click

from analyzer.errors import StepscopeError
from stepscope.cli.common import (
    Command,
    aws_options,
    cache_option,
    console_options,
    engine_option,
    open_engine,
    progress_bar,
    rules_option,
    setup_logging,
    user_errors,
)

#: gzip level: 1 compresses ~2.5x faster than the default 6, the file ~20 % larger (8x, not
#: 10x, smaller than the JSON); at 512 ranks that is ~10 s (docs/cli-export.md)
GZIP_LEVEL = 1
_RANK_PART = re.compile(r"^(\d+)(?:-(\d+))?$")
_STEPS = re.compile(r"^(\d*):(\d*)$|^(\d+)$")


def parse_ranks(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> tuple[int, ...] | None:
    """``0,1,8-15`` → (0, 1, 8, ..., 15); a malformed entry is a usage error naming it."""
    if value is None:
        return None
    out: set[int] = set()
    for part in value.split(","):
        m = _RANK_PART.match(part.strip())
        if m is None:
            raise click.BadParameter(
                f"{part.strip()!r} is not a rank or a range; give e.g. 0,1,8-15"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise click.BadParameter(f"{part.strip()!r}: the range ends before it starts")
        out.update(range(lo, hi + 1))
    return tuple(sorted(out))


def parse_steps(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> tuple[int | None, int | None] | None:
    """``A:B`` (inclusive), ``A:``, ``:B`` or ``A`` → (first, last), None for an open end."""
    if value is None:
        return None
    m = _STEPS.match(value.strip())
    if m is None:
        raise click.BadParameter(f"{value!r} is not a step window; give A:B, A:, :B or A")
    if m.group(3) is not None:
        return int(m.group(3)), int(m.group(3))
    lo, hi = (int(g) if g else None for g in m.group(1, 2))
    if lo is not None and hi is not None and hi < lo:
        raise click.BadParameter(f"{value!r}: the window ends before it starts")
    return lo, hi


def output_path(out: str) -> Path:
    """OUT as given, or with ``.json.gz`` added when it has no suffix."""
    path = Path(out).expanduser()
    if not path.suffix:
        path = path.with_name(path.name + ".json.gz")
    return path


def _rules_key(rules_file: str | None) -> str:
    """What the cached evaluated report depends on besides the data: the rule file's bytes."""
    if not rules_file:
        return "export:default"
    try:
        return "export:" + hashlib.sha256(Path(rules_file).expanduser().read_bytes()).hexdigest()
    except OSError:
        return "export:unreadable"  # load_ruleset has raised the user-facing error already


@click.command("export", cls=Command)
@click.argument("source")
@click.option(
    "--perfetto",
    "out",
    required=True,
    metavar="OUT",
    help=(
        "File to write: Chrome trace JSON that https://ui.perfetto.dev opens; gzipped when "
        "OUT ends with .gz, '.json.gz' added when OUT has no suffix."
    ),
)
@click.option(
    "--steps",
    callback=parse_steps,
    metavar="A:B",
    default=None,
    help="Only profiler steps A to B (inclusive; A:, :B or one step A), each rank by its own "
    "step annotations.",
)
@click.option(
    "--ranks",
    callback=parse_ranks,
    metavar="0,1,8-15",
    default=None,
    help="Only these ranks (comma-separated ranks and ranges; default: every rank).",
)
@click.option(
    "--findings/--no-findings",
    default=True,
    show_default=True,
    help="Judge the job with the rule set and mark the findings on the timeline.",
)
@rules_option
@cache_option
@aws_options
@engine_option
@console_options
@user_errors
def export_command(
    source: str,
    out: str,
    steps: tuple[int | None, int | None] | None,
    ranks: tuple[int, ...] | None,
    findings: bool,
    rules_file: str | None,
    cache_dir: str | None,
    profile: str | None,
    region: str | None,
    engine: str | None,
    progress: bool | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Write every rank of SOURCE on one clock-corrected timeline that Perfetto opens.

    One process per rank, the clock offsets between hosts corrected, a track naming the rank
    the others waited for in each step and each rank's waits, and the findings as markers.
    Exit code: 0 written, 2 bad usage or unreadable input.
    """
    from analyzer.ingest import no_profiler_data
    from analyzer.job import Job
    from analyzer.sources import open_source
    from stepscope.present.perfetto import write_timeline

    setup_logging(verbose, quiet)
    if "://" in out:
        raise StepscopeError(f"--perfetto {out}: give a local file (copy it elsewhere after)")
    path = output_path(out)
    if path.is_dir():
        raise StepscopeError(f"--perfetto {out}: is a folder; give a file name")
    show_bar = (sys.stderr.isatty() if progress is None else progress) and not quiet
    marks = []
    with open_engine(engine) as cluster, progress_bar(show_bar) as on_progress:
        if findings:
            from rules.ruleset import load_ruleset
            from stepscope.report.analyze import analyze

            analysis = analyze(
                source,
                load_ruleset(rules_file),
                cache_dir=cache_dir,
                profile=profile,
                region=region,
                on_progress=on_progress,
                processes=True,
                cache_key=_rules_key(rules_file),
                detail=False,
                engine=cluster,
            )
            job, marks = analysis.job, list(analysis.report.findings)
        else:
            job = Job.open(
                open_source(source, profile=profile, region=region),
                cache_dir=cache_dir,
                on_progress=on_progress,
                processes=True,
                engine=cluster,
            )
        empty = no_profiler_data(job.summary)
        if empty is not None:
            raise StepscopeError(empty)
        # written beside OUT and renamed at the end: an interrupted export leaves no half file
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            raw_file = tmp.open("wb")
        except OSError as exc:
            raise StepscopeError(f"cannot write {path}: {exc.strerror}") from None
        try:
            with raw_file as raw:
                if path.name.endswith(".gz"):
                    with gzip.GzipFile(
                        filename=path.name.removesuffix(".gz"),
                        fileobj=raw,
                        mode="wb",
                        compresslevel=GZIP_LEVEL,
                    ) as gz:
                        summary = write_timeline(
                            job,
                            gz,
                            findings=marks,
                            ranks=ranks,
                            steps=steps,
                            on_progress=on_progress,
                        )
                else:
                    summary = write_timeline(
                        job, raw, findings=marks, ranks=ranks, steps=steps, on_progress=on_progress
                    )
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StepscopeError(f"cannot write {path}: {exc.strerror or exc}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    if not quiet:
        size = path.stat().st_size
        window = (
            f", steps {summary.steps[0]}-{summary.steps[1]}" if summary.steps is not None else ""
        )
        clock = (
            f"clock offsets up to {summary.skew_ns / 1e6:.3f} ms corrected"
            if summary.skew_ns
            else "one clock (no offset to correct)"
        )
        click.echo(
            f"wrote {path} ({size / 2**20:.1f} MiB): {len(summary.ranks)} rank"
            f"{'s' if len(summary.ranks) != 1 else ''}{window}, {summary.events:,} events, "
            f"{summary.culprit_steps} culprit step{'s' if summary.culprit_steps != 1 else ''}, "
            f"{summary.findings} finding{'s' if summary.findings != 1 else ''}; {clock} — "
            "open it in https://ui.perfetto.dev",
            err=True,
        )

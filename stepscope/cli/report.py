"""``stepscope report SOURCE``: rules → Markdown, HTML, JSON and JUnit; exit 1 when one fires."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from analyzer.errors import StepscopeError
from rules.ruleset import load_ruleset
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

FORMATS = ("md", "html", "json", "junit")
MAX_LISTED = 20  # findings listed on stderr; the report files hold them all
FILES = {
    "md": "report.md",
    "html": "report.html",
    "json": "report.json",
    "junit": "report.junit.xml",
}


def _formats(ctx: click.Context | None, param: click.Parameter | None, value: str) -> list[str]:
    """``--format md,html`` → ``["md", "html"]``: case-insensitive, duplicates dropped, and an
    empty entry (``md,`` or ``''``) rejected like an unknown one, so a typo never silently
    writes fewer files than asked for."""
    names = [f.strip().lower() for f in value.split(",")]
    if not any(names):
        raise click.BadParameter(
            f"no format given; choose one or more of {', '.join(FORMATS)} (comma-separated)"
        )
    if "" in names:
        raise click.BadParameter(
            f"{value!r} has an empty entry; give formats separated by single commas, e.g. md,html"
        )
    bad = [f.strip() for f in value.split(",") if f.strip().lower() not in FORMATS]
    if bad:
        raise click.BadParameter(
            f"unknown format{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
            f"choose from {', '.join(FORMATS)}"
        )
    return list(dict.fromkeys(names))


@click.command("report", cls=Command)
@click.argument("source")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="stepscope-report",
    show_default=True,
    help="Folder the report files are written to.",
)
@click.option(
    "--format",
    "formats",
    default=",".join(FORMATS),
    show_default=True,
    callback=_formats,
    help="Comma-separated formats: md, html, json, junit.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning", "info", "never"], case_sensitive=False),
    default="error",
    show_default=True,
    help="Exit 1 when a finding of this severity or worse exists.",
)
@click.option(
    "--fail-on-cost",
    type=click.FloatRange(min=0),
    default=None,
    metavar="USD",
    help="Exit 1 when the findings' cost over the run exceeds USD (needs a known price).",
)
@click.option(
    "--instance-type",
    default=None,
    metavar="ml.TYPE",
    help="Instance type the cost is counted with (default: the job's, from DescribeTrainingJob "
    "or resourceconfig.json).",
)
@click.option(
    "--instance-count",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Instances the job ran on (default: the job's, else the nodes in the data).",
)
@click.option(
    "--price-per-hour",
    type=click.FloatRange(min=0),
    default=None,
    metavar="USD",
    help="On-demand USD per instance-hour (default: the shipped price table).",
)
@click.option(
    "--baseline",
    default=None,
    help="Another run (folder, s3:// prefix or job name) to compare against.",
)
@rules_option
@cache_option
@aws_options
@engine_option
@console_options
@user_errors
def report_command(
    source: str,
    out_dir: str,
    formats: list[str],
    fail_on: str,
    fail_on_cost: float | None,
    instance_type: str | None,
    instance_count: int | None,
    price_per_hour: float | None,
    baseline: str | None,
    rules_file: str | None,
    cache_dir: str | None,
    profile: str | None,
    region: str | None,
    engine: str | None,
    progress: bool | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Judge SOURCE with the rule set and write the report files.

    Exit code: 0 clean, 1 a finding at or above --fail-on or findings costing more than
    --fail-on-cost, 2 bad usage or unreadable input.
    """
    from analyzer.ingest import no_profiler_data
    from stepscope.render import document, junit, markdown
    from stepscope.render import html as html_report
    from stepscope.render.verdict import Verdict
    from stepscope.report.analyze import analyze
    from stepscope.report.cost import Pricing, headline, num

    chosen = formats
    fail_on = fail_on.lower()
    setup_logging(verbose, quiet)
    ruleset = load_ruleset(rules_file)
    show_bar = (sys.stderr.isatty() if progress is None else progress) and not quiet
    flags = (instance_type, instance_count, price_per_hour)
    pricing = (
        Pricing(instance_type, instance_count, price_per_hour, region)
        if any(v is not None for v in flags) or region
        else None
    )
    with open_engine(engine) as cluster, progress_bar(show_bar) as on_progress:
        analysis = analyze(
            source,
            ruleset,
            baseline=baseline or None,
            cache_dir=cache_dir,
            profile=profile,
            region=region,
            on_progress=on_progress,
            processes=True,
            detail=False,
            engine=cluster,
            pricing=pricing,
        )
    # a source with nothing to judge is an error, never a PASS a CI gate would take
    for label, job in (("", analysis.job), ("--baseline: ", analysis.job.baseline)):
        empty = no_profiler_data(job.summary) if job is not None else None
        if empty is not None:
            raise StepscopeError(label + empty)
    report = analysis.report
    verdict = Verdict.of(report, fail_on)  # --fail-on is this command's policy, not the report's
    over_budget = False
    if fail_on_cost is not None:
        cost = report.cost
        if cost is None or (cost.lost_usd is None and cost.findings):
            why = (cost.note if cost is not None else None) or "no price known"
            raise StepscopeError(f"--fail-on-cost needs the findings' cost in dollars: {why}")
        over_budget = (cost.lost_usd or 0.0) > fail_on_cost

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StepscopeError(f"cannot create output folder {out}: {exc.strerror}") from None
    written = []
    for fmt in chosen:
        if fmt == "json":
            text = document.render(report, verdict)
        elif fmt == "md":
            text = markdown.render(report, verdict)
        elif fmt == "junit":
            text = junit.render(report, verdict)
        else:
            text = html_report.render(report, verdict)
        path = out / FILES[fmt]
        path.write_text(text, encoding="utf-8")
        written.append(str(path))
    # a folder holds one run's files: an earlier run's other formats would read as this run's
    stale = [out / name for fmt, name in FILES.items() if fmt not in chosen]
    removed = []
    for path in stale:
        if path.is_file():
            path.unlink()
            removed.append(path.name)
    if not quiet:
        # the findings themselves, worst first, so a CI log says what fired without the files;
        # one line per group ("all 64 ranks: ..."), not one per rank
        groups = report.finding_groups
        shown = groups[:MAX_LISTED]
        for g in shown:
            click.echo(
                f"  {g.severity:<7} {g.rule:<22} {g.where}: {g.message}", err=True
            )  # the place once
        if len(groups) > len(shown):
            click.echo(f"  … and {len(groups) - len(shown)} more in the report", err=True)
        if report.cost is not None and report.cost.findings:
            click.echo(headline(report.cost), err=True)
        if over_budget:
            assert report.cost is not None
            click.echo(
                f"FAIL: the findings cost ${num(report.cost.lost_usd or 0.0)} over the run "
                f"(--fail-on-cost {fail_on_cost:g})",
                err=True,
            )
        click.echo(f"{verdict.line()} — wrote {', '.join(written)}", err=True)
        if removed:
            click.echo(
                f"stepscope: removed {', '.join(removed)} of an earlier run from {out}", err=True
            )
    sys.exit(1 if verdict.verdict == "fail" or over_budget else 0)

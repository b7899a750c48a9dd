"""One call from a source and a rule set to the report: what ``stepscope report`` and the
dashboard both run (open the source, ingest, evaluate the rules, build the report).

Evaluating the rules takes a minute on a large job, so a caller that reopens jobs (the
dashboard) may keep evaluated reports as JSON in the source's cache folder: keyed by the
dataset fingerprint, the job metadata, the stepscope version and what the caller says the
rules are (``cache_key``: the rule file's content), reopening an unchanged job never
re-evaluates.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from analyzer import __version__
from analyzer.ingest.cache import atomic_write_bytes
from analyzer.job import Job
from analyzer.sources import open_source
from rules.engine import evaluate
from rules.ruleset import RuleSet
from stepscope.report.build import build
from stepscope.report.model import Report

if TYPE_CHECKING:
    from analyzer.engines import DaskEngine
    from analyzer.ingest.pipeline import ProgressFn

log = logging.getLogger("stepscope.report")

#: bump when the cached report's content or key changes meaning
REPORT_CACHE_VERSION = 3
#: evaluated reports kept per source cache folder (older ones are removed)
REPORT_CACHE_KEEP = 8


class Analysis(NamedTuple):
    job: Job
    report: Report
    #: the report was read from the cache folder (no rule was evaluated)
    from_cache: bool


def analyze(source: str | Job, ruleset: RuleSet, *, baseline: str | Job | None = None, cache_dir: str | None = None,
            profile: str | None = None, region: str | None = None, on_progress: ProgressFn | None = None,
            processes: bool = False, cache_key: str | None = None, detail: bool = True,
            engine: DaskEngine | None = None) -> Analysis:
    """Open ``source`` (and ``baseline``, the run it is compared with), judge it with
    ``ruleset`` and build the report. Either may be a Job already open (the dashboard
    compares the job it holds with another run without reading it twice). With
    ``cache_key`` the evaluated report is read from, or written to, the source's cache folder.
    ``detail``: build the report's detail tables too (:class:`~stepscope.report.model.Charts`).
    ``engine``: the Dask cluster that parses and maps the sources it opens (None: this machine).

    Raises :class:`~analyzer.errors.StepscopeError` when a source cannot be read.
    """

    def open_job(s: str | Job) -> Job:
        if isinstance(s, Job):
            return s
        return Job.open(open_source(s, profile=profile, region=region), cache_dir=cache_dir,
                        on_progress=on_progress, processes=processes, engine=engine)

    job = open_job(source)
    if baseline is not None:
        base = open_job(baseline)
        job = Job(job.dataset, job.summary, baseline=base, engine=job.engine)  # never changes a Job the caller holds
    path = cached_report_path(job, f"{cache_key}\x00detail={detail}") if cache_key is not None else None
    if path is not None:
        try:
            return Analysis(job, Report.model_validate_json(path.read_bytes()), True)
        except (OSError, ValueError):  # absent, or written by another version: evaluate again
            pass
    report = build(job, ruleset, evaluate(job, ruleset), detail=detail)  # reuses the rules' analyses
    if path is not None:
        _keep(path, report)
    return Analysis(job, report, False)


def dataset_fingerprint(job: Job) -> str | None:
    """The fingerprint ingest wrote beside the merged tables (``merged/merged.json``)."""
    try:
        doc = orjson.loads((Path(job.summary["cache"]["dir"]) / "merged" / "merged.json").read_bytes())
    except (OSError, KeyError, TypeError, orjson.JSONDecodeError):
        return None
    fp = doc.get("fingerprint") if isinstance(doc, dict) else None
    return fp if isinstance(fp, str) else None


def cached_report_path(job: Job, cache_key: str) -> Path | None:
    """Where the evaluated report of ``job`` (and its baseline) is kept; None when a dataset
    has no fingerprint to key it by."""
    parts: list[Any] = [str(REPORT_CACHE_VERSION), __version__, cache_key]
    for j in (job, job.baseline):
        if j is None:
            continue
        fp = dataset_fingerprint(j)
        if fp is None:
            return None
        parts += [fp, j.dataset.meta.to_dict()]
    h = hashlib.sha256()
    for part in parts:
        h.update(orjson.dumps(part, option=orjson.OPT_SORT_KEYS, default=str))
        h.update(b"\x00")
    return Path(job.summary["cache"]["dir"]) / "dashboard" / f"report-{h.hexdigest()[:40]}.json"


def _keep(path: Path, report: Report) -> None:
    try:
        atomic_write_bytes(path, report.model_dump_json().encode())
        old = sorted(path.parent.glob("report-*.json"), key=lambda q: q.stat().st_mtime, reverse=True)
        for stale in old[REPORT_CACHE_KEEP:]:
            stale.unlink(missing_ok=True)
    except (OSError, ValueError) as exc:  # a read-only cache (or odd evidence) only costs speed
        log.warning("could not cache the evaluated report: %s", exc)

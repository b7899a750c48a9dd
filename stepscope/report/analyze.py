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
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from analyzer import __version__
from analyzer.errors import StepscopeError
from analyzer.ingest.cache import LocalStore, Store, store_at
from analyzer.job import Job
from analyzer.sources import open_source
from rules.engine import evaluate
from rules.ruleset import RuleSet
from stepscope.report.build import build
from stepscope.report.cost import Pricing
from stepscope.report.model import Report

if TYPE_CHECKING:
    from analyzer.engines import DaskEngine
    from analyzer.ingest.pipeline import ProgressFn

log = logging.getLogger("stepscope.report")

#: bump when the cached report's content or key changes meaning
REPORT_CACHE_VERSION = 4  # 4: training rules checked against AWS's page, idle_ms
#: evaluated reports kept per source cache folder (older ones are removed)
REPORT_CACHE_KEEP = 8


class Analysis(NamedTuple):
    job: Job
    report: Report
    #: the report was read from the cache folder (no rule was evaluated)
    from_cache: bool


def analyze(
    source: str | Job,
    ruleset: RuleSet,
    *,
    baseline: str | Job | None = None,
    cache_dir: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    on_progress: ProgressFn | None = None,
    processes: bool = False,
    cache_key: str | None = None,
    detail: bool = True,
    engine: DaskEngine | None = None,
    pricing: Pricing | None = None,
) -> Analysis:
    """Open ``source`` (and ``baseline``, the run it is compared with), judge it with
    ``ruleset`` and build the report. Either may be a Job already open (the dashboard
    compares the job it holds with another run without reading it twice). With
    ``cache_key`` the evaluated report is read from, or written to, the source's cache folder.
    ``detail``: build the report's detail tables too (:class:`~stepscope.report.model.Charts`).
    ``engine``: the Dask cluster that parses and maps the sources it opens (None: this machine).
    ``pricing``: the instance type, count and price the findings' cost is counted with (None:
    the job's own, from its metadata and the shipped price table).

    Raises :class:`~analyzer.errors.StepscopeError` when a source cannot be read.
    """

    def open_job(s: str | Job) -> Job:
        if isinstance(s, Job):
            return s
        return Job.open(
            open_source(s, profile=profile, region=region),
            cache_dir=cache_dir,
            on_progress=on_progress,
            processes=processes,
            engine=engine,
            group_names=ruleset.parallelism.groups,
        )

    job = open_job(source)
    if baseline is not None:
        base = open_job(baseline)
        job = Job(
            job.dataset,
            job.summary,
            baseline=base,
            engine=job.engine,
            group_names=job.group_names,
        )  # never changes a Job the caller holds
    key = f"{cache_key}\x00detail={detail}" + (f"\x00{pricing}" if pricing is not None else "")
    found = cached_report(job, key) if cache_key is not None else None
    if found is not None:
        store, name = found
        try:
            data = store.get(name)
            if data is not None:
                return Analysis(job, Report.model_validate_json(data), True)
        except (
            OSError,
            ValueError,
            StepscopeError,
        ):  # unreadable, or written by another version: evaluate again
            pass
    report = build(
        job, ruleset, evaluate(job, ruleset), detail=detail, pricing=pricing
    )  # reuses the rules' analyses
    if found is not None:
        _keep(*found, report)
    return Analysis(job, report, False)


def _store(job: Job) -> Store | None:
    """The store of the job's cache (a folder or an ``s3://`` prefix), from its ingest summary."""
    location = (
        (job.summary.get("cache") or {}).get("dir") if isinstance(job.summary, dict) else None
    )
    if not isinstance(location, str) or not location:
        return None
    try:
        return store_at(location)
    except (OSError, StepscopeError):
        return None


def dataset_fingerprint(job: Job) -> str | None:
    """The fingerprint ingest wrote beside the merged tables (``merged/merged.json``)."""
    store = _store(job)
    try:
        data = store.get("merged/merged.json") if store is not None else None
        doc = orjson.loads(data) if data is not None else None
    except (OSError, StepscopeError, orjson.JSONDecodeError):
        return None
    fp = doc.get("fingerprint") if isinstance(doc, dict) else None
    return fp if isinstance(fp, str) else None


def cached_report(job: Job, cache_key: str) -> tuple[Store, str] | None:
    """Where the evaluated report of ``job`` (and its baseline) is kept in the job's cache
    (its store and the name in it); None when a dataset has no fingerprint to key it by."""
    parts: list[Any] = [str(REPORT_CACHE_VERSION), __version__, cache_key]
    for j in (job, job.baseline):
        if j is None:
            continue
        fp = dataset_fingerprint(j)
        if fp is None:
            return None
        parts += [fp, j.dataset.meta.to_dict()]
    store = _store(job)
    if store is None:
        return None
    h = hashlib.sha256()
    for part in parts:
        h.update(orjson.dumps(part, option=orjson.OPT_SORT_KEYS, default=str))
        h.update(b"\x00")
    return store, f"dashboard/report-{h.hexdigest()[:40]}.json"


def _keep(store: Store, name: str, report: Report) -> None:
    """Keep the evaluated report, and only the newest REPORT_CACHE_KEEP of a local cache
    (an S3 cache keeps them all: an S3 lifecycle rule on ``*/dashboard/`` ages them out)."""
    try:
        store.put(name, report.model_dump_json().encode())
        if isinstance(store, LocalStore):
            folder = store.path(name).parent
            old = sorted(
                folder.glob("report-*.json"), key=lambda q: q.stat().st_mtime, reverse=True
            )
            for stale in old[REPORT_CACHE_KEEP:]:
                stale.unlink(missing_ok=True)
    except (
        OSError,
        ValueError,
        StepscopeError,
    ) as exc:  # a read-only cache (or odd evidence) only costs speed
        log.warning("could not cache the evaluated report: %s", exc)

"""Loading a job for the dashboard: ingest → rules → report model, cached per process.

Why a process-level cache (not only ``st.cache_resource``): the launcher
(:mod:`dashboards.serve`) warms it in a background thread while Streamlit starts, so the
first browser session finds the dataset and the evaluated report already in memory.
Evaluating the rules takes a minute on a large job, so the evaluated report is also kept
as JSON in the source's cache folder, keyed by the dataset fingerprint, the rule file's
content and the job metadata: reopening an unchanged job never re-evaluates.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from analyzer import __version__
from analyzer.errors import StepscopeError
from analyzer.ingest.cache import atomic_write_bytes
from analyzer.job import Job
from analyzer.sources import open_source
from rules import params as p
from rules.ruleset import RuleSet, load_ruleset

log = logging.getLogger("stepscope.dashboard")

#: bump when the report cache's content or key changes meaning
REPORT_CACHE_VERSION = 1
#: evaluated reports kept per source cache folder (older ones are removed)
REPORT_CACHE_KEEP = 8
#: jobs (source x rules x refresh generation) kept in memory per process
MAX_JOBS = 4


@dataclass(frozen=True)
class AppConfig:
    """What the dashboard was started on (the arguments after ``--``)."""

    source: str
    cache_dir: str | None = None
    rules_file: str | None = None
    profile: str | None = None
    region: str | None = None
    baseline: str | None = None
    #: seconds between refreshes; None = every 30 s while a SageMaker job is InProgress
    refresh_s: float | None = None

    def with_source(self, source: str) -> AppConfig:
        return AppConfig(source, self.cache_dir, self.rules_file, self.profile, self.region, None, self.refresh_s)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # never exit the server thread: raise a user error
        raise StepscopeError(f"dashboard arguments: {message}")


def parse_args(argv: list[str]) -> AppConfig:
    """Parse the app's own arguments (``streamlit run app.py -- SOURCE [options]``)."""
    ap = _Parser(prog="stepscope dashboard", add_help=False)
    ap.add_argument("source", nargs="?")
    ap.add_argument("--cache", dest="cache_dir")
    ap.add_argument("--rules", dest="rules_file")
    ap.add_argument("--profile")
    ap.add_argument("--region")
    ap.add_argument("--baseline")
    ap.add_argument("--refresh", dest="refresh_s", type=float)
    ns = ap.parse_args(argv)
    if not ns.source:
        raise StepscopeError("no SOURCE given: start it as `stepscope dashboard SOURCE` (job name, s3:// prefix or folder)")
    return AppConfig(ns.source, ns.cache_dir, ns.rules_file, ns.profile, ns.region, ns.baseline, ns.refresh_s)


def to_argv(cfg: AppConfig) -> list[str]:
    """The inverse of :func:`parse_args` (the CLI passes these to the app)."""
    out = [cfg.source]
    for flag, value in (("--cache", cfg.cache_dir), ("--rules", cfg.rules_file), ("--profile", cfg.profile),
                        ("--region", cfg.region), ("--baseline", cfg.baseline), ("--refresh", cfg.refresh_s)):
        if value is not None:
            out += [flag, str(value)]
    return out


# --------------------------------------------------------------------------- report cache


def rules_digest(rules_file: str | None) -> str:
    """Content hash of the rule file (``default`` without one): the report depends on it."""
    if not rules_file:
        return "default"
    try:
        return hashlib.sha256(Path(rules_file).expanduser().read_bytes()).hexdigest()
    except OSError:
        return "unreadable"  # load_ruleset raises the user-facing error


def dataset_fingerprint(summary: dict[str, Any]) -> str | None:
    """The fingerprint ingest wrote beside the merged tables (``merged/merged.json``)."""
    try:
        doc = orjson.loads((Path(summary["cache"]["dir"]) / "merged" / "merged.json").read_bytes())
    except (OSError, KeyError, TypeError, orjson.JSONDecodeError):
        return None
    fp = doc.get("fingerprint") if isinstance(doc, dict) else None
    return fp if isinstance(fp, str) else None


def report_key(fingerprint: str, rules_key: str, meta: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for part in (str(REPORT_CACHE_VERSION), __version__, fingerprint, rules_key):
        h.update(part.encode())
        h.update(b"\x00")
    h.update(orjson.dumps(meta, option=orjson.OPT_SORT_KEYS, default=str))
    return h.hexdigest()


def evaluated_report(job: Job, ruleset: RuleSet, rules_key: str) -> tuple[dict[str, Any], bool]:
    """The report dict (rules evaluated), from the cache folder when the job is unchanged.

    Returns (report, from_cache).
    """
    from rules.engine import evaluate
    from stepscope.report import model

    dataset, summary = job.dataset, job.summary
    fp = dataset_fingerprint(summary)
    path = None
    if fp is not None:
        key = report_key(fp, rules_key, dataset.meta.to_dict())
        path = Path(summary["cache"]["dir"]) / "dashboard" / f"report-{key[:40]}.json"
        try:
            return orjson.loads(path.read_bytes()), True
        except (OSError, orjson.JSONDecodeError):
            pass
    results = evaluate(job, ruleset)  # the report reuses the analyses the rules computed
    report = model.build(job, ruleset, results, fail_on="error")
    if path is not None:
        try:
            atomic_write_bytes(path, orjson.dumps(report, default=str, option=orjson.OPT_SERIALIZE_NUMPY))
            old = sorted(path.parent.glob("report-*.json"), key=lambda q: q.stat().st_mtime, reverse=True)
            for stale in old[REPORT_CACHE_KEEP:]:
                stale.unlink(missing_ok=True)
        except OSError as exc:  # a read-only cache only costs speed
            log.warning("could not cache the evaluated report: %s", exc)
    return report, False


# --------------------------------------------------------------------------- the job


class JobData:
    """One loaded job: dataset, ingest summary, report, and the analyses the pages show.

    Analyses are computed on first use and memoised on the object, which is shared by all
    sessions of the process (a benign race at worst computes one twice).
    """

    def __init__(self, cfg: AppConfig, job: Job, ruleset: RuleSet,
                 report: dict[str, Any], key: str, report_from_cache: bool, load_s: float) -> None:
        self.cfg = cfg
        self.job = job
        self.dataset = job.dataset
        self.summary = job.summary
        self.ruleset = ruleset
        self.report = report
        self.key = key
        self.report_from_cache = report_from_cache
        self.load_s = load_s

    def step_timeline(self, step: int, ranks: tuple[int, ...]) -> pd.DataFrame:
        """One step's events on the given ranks (a drill-down the job memoises)."""
        return self.job.step_timeline(step, ranks)

    # -- identity -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.report["job"].get("name") or self.cfg.source)

    @property
    def status(self) -> str | None:
        return self.report["job"].get("status")

    @property
    def running(self) -> bool:
        return self.status in ("InProgress", "Stopping")

    @property
    def nodes(self) -> list[str]:
        return [str(n) for n in self.summary.get("node_names") or []]

    @property
    def ranks(self) -> list[int]:
        return [int(r) for r in self.summary.get("rank_ids") or []]

    @property
    def span(self) -> tuple[float, float] | None:
        """Job time span, epoch seconds."""
        ts = self.summary.get("time_span")
        if not ts:
            return None
        return ts["start_ns"] / 1e9, ts["end_ns"] / 1e9

    @cached_property
    def rank_node(self) -> dict[int, str | None]:
        return {int(r["rank"]): r.get("node") for r in self.report["metrics"]["ranks"]}

    def params(self, rule: str) -> Any:
        return self.ruleset.params(rule)

    # -- analyses (memoised on the job, shared with the rules and the report) ------------
    @property
    def steps(self) -> pd.DataFrame:
        return self.job.steps()

    @property
    def waits(self) -> pd.DataFrame:
        return self.job.dataloader_waits()

    @property
    def step_stats(self) -> pd.DataFrame:
        return self.job.step_stats()

    @cached_property
    def outliers(self) -> pd.DataFrame:
        from analyzer.analyses import steps as s

        prm = self.params("StepOutlier")
        stddev = prm.stddev if isinstance(prm, p.StepOutlierParams) else 3
        mode = prm.mode if isinstance(prm, p.StepOutlierParams) else None
        return s.step_outliers(self.steps, stddev=stddev, mode=mode)

    @property
    def breakdown(self) -> pd.DataFrame:
        return self.job.rank_step_breakdown()

    @cached_property
    def stragglers(self) -> pd.DataFrame:
        from analyzer.analyses import steps as s

        prm = self.params("StragglerRank")
        if isinstance(prm, p.StragglerRankParams):
            return s.stragglers(self.breakdown, threshold_pct=prm.threshold_pct, min_steps=prm.min_steps)
        return s.stragglers(self.breakdown)

    @property
    def temporal(self) -> pd.DataFrame:
        return self.job.temporal_breakdown()

    @property
    def comm_summary(self) -> pd.DataFrame:
        return self.job.communication_summary()

    @property
    def collectives(self) -> pd.DataFrame:
        return self.job.collective_summary()

    @property
    def kernel_types(self) -> pd.DataFrame:
        return self.job.kernel_type_breakdown()

    @property
    def idle_breakdown(self) -> pd.DataFrame:
        return self.job.idle_time_breakdown()

    @property
    def kernel_launches(self) -> pd.DataFrame:
        return self.job.kernel_launch_summary()

    @property
    def gpu_annotations(self) -> pd.DataFrame:
        return self.job.gpu_annotation_breakdown()

    @property
    def step_memory(self) -> pd.DataFrame:
        return self.job.allocator_memory_by_step()

    @property
    def top_kernels(self) -> pd.DataFrame:
        return self.job.top_kernels(15)


# --------------------------------------------------------------------------- process cache

_JOBS: OrderedDict[tuple[Any, ...], JobData] = OrderedDict()
_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}
_REGISTRY = threading.Lock()
_GENERATION: dict[AppConfig, int] = {}
_LAST_REFRESH: dict[AppConfig, float] = {}


def generation(cfg: AppConfig) -> int:
    return _GENERATION.get(cfg, 0)


def bump_generation(cfg: AppConfig) -> int:
    """Ask for a fresh ingest of ``cfg`` (incremental: only new or changed files are read)."""
    with _REGISTRY:
        _GENERATION[cfg] = _GENERATION.get(cfg, 0) + 1
        return _GENERATION[cfg]


def refresh_due(cfg: AppConfig, interval_s: float) -> bool:
    """Bump the generation when the last refresh of ``cfg`` is older than ``interval_s``.

    Process-wide, so ten open browser tabs still re-read the source once per interval.
    """
    import time

    now = time.monotonic()
    with _REGISTRY:
        last = _LAST_REFRESH.setdefault(cfg, now)
        if now - last < interval_s * 0.9:
            return False
        _LAST_REFRESH[cfg] = now
        _GENERATION[cfg] = _GENERATION.get(cfg, 0) + 1
        return True


def _build(cfg: AppConfig, rules_key: str, on_progress: Callable[[str, int, int], None] | None) -> JobData:
    import time

    started = time.perf_counter()
    ruleset = load_ruleset(cfg.rules_file)
    job = Job.open(open_source(cfg.source, profile=cfg.profile, region=cfg.region),
                   cache_dir=cfg.cache_dir, on_progress=on_progress)
    report, cached = evaluated_report(job, ruleset, rules_key)
    fp = dataset_fingerprint(job.summary) or str(id(job))
    key = hashlib.sha256(f"{fp}\x00{rules_key}\x00{cfg.source}".encode()).hexdigest()[:20]
    return JobData(cfg, job, ruleset, report, key, cached, time.perf_counter() - started)


def load_job(cfg: AppConfig, *, on_progress: Callable[[str, int, int], None] | None = None) -> JobData:
    """The job for ``cfg`` at its current refresh generation (loaded once per process).

    Raises :class:`StepscopeError` (one line, for the page) when the source cannot be read.
    """
    key = (cfg, rules_digest(cfg.rules_file), generation(cfg))
    with _REGISTRY:
        if key in _JOBS:
            _JOBS.move_to_end(key)
            return _JOBS[key]
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:  # a second session (or the warm-up) waits instead of loading twice
        with _REGISTRY:
            if key in _JOBS:
                return _JOBS[key]
        job = _build(cfg, key[1], on_progress)
        with _REGISTRY:
            _JOBS[key] = job
            while len(_JOBS) > MAX_JOBS:
                old, _ = _JOBS.popitem(last=False)
                _LOCKS.pop(old, None)
        return job


def loaded(cfg: AppConfig) -> JobData | None:
    """The job if it is already in memory at its current generation (never loads)."""
    with _REGISTRY:
        return _JOBS.get((cfg, rules_digest(cfg.rules_file), generation(cfg)))


def latest(cfg: AppConfig) -> JobData | None:
    """The newest in-memory version of ``cfg`` at any generation (shown while refreshing)."""
    with _REGISTRY:
        found = [(k[2], j) for k, j in _JOBS.items() if k[0] == cfg]
    return max(found, key=lambda kv: kv[0])[1] if found else None


def warm(cfg: AppConfig) -> None:
    """Load ``cfg`` now (the launcher calls this before any browser connects)."""
    try:
        load_job(cfg)
    except Exception as exc:  # the page shows the error itself
        log.info("warm-up of %s failed: %s", cfg.source, exc)


def clear() -> None:
    """Forget every loaded job (tests)."""
    with _REGISTRY:
        _JOBS.clear()
        _LOCKS.clear()
        _GENERATION.clear()
        _LAST_REFRESH.clear()

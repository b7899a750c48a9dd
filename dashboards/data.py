"""Loading a job for the dashboard: the report layer's one call, cached per process.

Why a process-level cache (not only ``st.cache_resource``): the launcher
(:mod:`dashboards.serve`) warms it in a background thread while Streamlit starts, so the
first browser session finds the job and its report already in memory. The evaluated report
is also kept in the source's cache folder (``stepscope.report.analyze``), keyed here by the
rule file's content: reopening an unchanged job never re-evaluates the rules. With
``--engine dask://HOST:PORT`` the ingest and the Job's per-rank map run on a Dask cluster,
through one client per process (:func:`engine`) kept as long as the jobs that use it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.job import Job
from rules.ruleset import load_ruleset
from stepscope.present.dashboard_options import DashboardOptions
from stepscope.report.analyze import analyze, dataset_fingerprint
from stepscope.report.model import Report

if TYPE_CHECKING:
    from analyzer.engines import DaskEngine

log = logging.getLogger("stepscope.dashboard")

#: jobs (source x rules x baseline x refresh generation) kept in memory per process
MAX_JOBS = 4


#: what the dashboard was started on: the CLI's typed options, read back once
AppConfig = DashboardOptions


def parse_args(argv: list[str]) -> AppConfig:
    """The app's arguments (``streamlit run app.py -- --options JSON``, as ``stepscope
    dashboard`` passes them) -> its options."""
    return DashboardOptions.from_app_args(argv)


def rules_digest(rules_file: str | None) -> str:
    """Content hash of the rule file (``default`` without one): the report depends on it."""
    if not rules_file:
        return "default"
    try:
        return hashlib.sha256(Path(rules_file).expanduser().read_bytes()).hexdigest()
    except OSError:
        return "unreadable"  # load_ruleset raises the user-facing error


# --------------------------------------------------------------------------- the job


class JobData:
    """One loaded job: the Job (for the pages' drill-downs) and its report (everything else
    the pages show). Shared by all sessions of the process."""

    def __init__(
        self,
        cfg: AppConfig,
        job: Job,
        report: Report,
        key: str,
        report_from_cache: bool,
        load_s: float,
    ) -> None:
        self.cfg = cfg
        self.job = job
        self.report = report
        self.key = key
        self.report_from_cache = report_from_cache
        self.load_s = load_s
        self.rank_node: dict[int, str | None] = {r.rank: r.node for r in report.metrics.ranks}

    @property
    def name(self) -> str:
        return self.report.job.name or self.cfg.source

    @property
    def status(self) -> str | None:
        return self.report.job.status

    @property
    def running(self) -> bool:
        return self.status in ("InProgress", "Stopping")

    @property
    def nodes(self) -> list[str]:
        return self.report.job.node_names

    @property
    def ranks(self) -> list[int]:
        return self.report.job.rank_ids

    @property
    def span(self) -> tuple[float, float] | None:
        """Job time span, epoch seconds."""
        ts = self.report.job.time_span
        return None if ts is None else (ts.start_ns / 1e9, ts.end_ns / 1e9)


# --------------------------------------------------------------------------- process cache

_JOBS: OrderedDict[tuple[Any, ...], JobData] = OrderedDict()
_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}
_REGISTRY = threading.Lock()
_GENERATION: dict[AppConfig, int] = {}
_LAST_REFRESH: dict[AppConfig, float] = {}
_ENGINES: dict[str, DaskEngine] = {}
_ENGINE_LOCK = threading.Lock()


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


def engine(spec: str | None) -> DaskEngine | None:
    """The Dask cluster ``spec`` names (``--engine``; None: ``$DASK_SCHEDULER_ADDRESS``, else
    this machine), connected once per process and kept: a loaded Job maps its ranks on it
    whenever a page first asks for an analysis, long after the load.

    Raises :class:`~analyzer.engines.EngineError` (one line) when it cannot be reached."""
    from analyzer.engines import DaskEngine, parse_engine

    address = parse_engine(spec)
    if address is None:
        return None
    with _ENGINE_LOCK:
        found = _ENGINES.get(address)
        if found is None:
            found = DaskEngine(address)
            found.connect()  # before it is kept: an unreachable scheduler is tried again next time
            _ENGINES[address] = found
        return found


def _build(
    cfg: AppConfig,
    rules_key: str,
    on_progress: Callable[[str, int, int], None] | None,
    reuse: Job | None,
) -> JobData:
    import time

    started = time.perf_counter()
    job, report, cached = analyze(
        cfg.source if reuse is None else reuse,
        load_ruleset(cfg.rules_file),
        baseline=cfg.baseline,
        cache_dir=cfg.cache_dir,
        profile=cfg.profile,
        region=cfg.region,
        on_progress=on_progress,
        cache_key=rules_key,
        engine=engine(cfg.engine),
    )
    fp = dataset_fingerprint(job) or str(id(job))
    key = hashlib.sha256(f"{fp}\x00{rules_key}\x00{cfg.source}".encode()).hexdigest()[:20]
    return JobData(cfg, job, report, key, cached, time.perf_counter() - started)


def load_job(
    cfg: AppConfig,
    *,
    on_progress: Callable[[str, int, int], None] | None = None,
    reuse: Job | None = None,
) -> JobData:
    """The job for ``cfg`` at its current refresh generation (loaded once per process);
    ``reuse``: the job of ``cfg.source`` already open, to judge instead of reading it again.

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
        job = _build(cfg, key[1], on_progress, reuse)
        with _REGISTRY:
            _JOBS[key] = job
            while len(_JOBS) > MAX_JOBS:
                old, _ = _JOBS.popitem(last=False)
                _LOCKS.pop(old, None)
        return job


def compare(job: JobData, baseline: str) -> JobData:
    """``job`` judged against ``baseline`` (the Compare page's choice): its report built
    with that baseline, on the dataset already in memory."""
    if baseline == job.cfg.baseline:
        return job
    return load_job(job.cfg.with_baseline(baseline), reuse=job.job)


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
    """Forget every loaded job and close the Dask clients (tests)."""
    with _REGISTRY:
        _JOBS.clear()
        _LOCKS.clear()
        _GENERATION.clear()
        _LAST_REFRESH.clear()
    with _ENGINE_LOCK:
        for cluster in _ENGINES.values():
            cluster.close()
        _ENGINES.clear()

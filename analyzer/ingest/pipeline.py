"""Ingest = list → (cache check) → read → parse each object → merge. A map plus a merge.

Each object is parsed on its own into Arrow tables (the map), those tables are cached as
Parquet parts keyed by the object's fingerprint, and the parts are concatenated per table
(the merge). Nothing here needs the whole job in one process, so the map can later run on
a distributed engine unchanged. Bad objects become counted, logged skips; the good ones
always make it into the dataset.

``kineto_events`` is never merged: its parts stay per rank (:class:`RankParts`), since the
events of all ranks together grow with the rank count, and the analyses map over ranks
(:mod:`analyzer.analyses.rank_map`). Workers hand back only the small tables and each
part's row count, rank and time span, so ingest memory does not grow with the ranks either.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.errors import SourceError
from analyzer.ingest.cache import SourceCache, default_cache_root, object_digest
from analyzer.ingest.dataset import JobDataset, RankParts, event_span
from analyzer.ingest.formats import FORMATS, Format, classify, format_by_id
from analyzer.ingest.no_pandas import keep_pandas_out
from analyzer.ingest.parsed import NotAProfilerFile, ParsedFile, UnreadableFile
from analyzer.ingest.tables import TABLE_NAMES
from analyzer.sources.base import Source, SourceObject, WorkerReader, worker_reader

if TYPE_CHECKING:
    import pyarrow as pa

    from analyzer.engines import DaskEngine

# pyarrow is imported only where tables are built: a refresh that finds nothing new (list,
# compare fingerprints, reopen) imports none of the columnar stack.

log = logging.getLogger("stepscope.ingest")

#: on_progress(phase, done, total): phase is "list", "read" or "merge".
ProgressFn = Callable[[str, int, int], None]

#: tables kept in their per-object parts, by rank, instead of merged (see the module docstring)
PER_RANK_TABLES = ("kineto_events",)

TF_METADATA_RE = re.compile(r"^(?P<dir>.*/)[^/]*_(?P<start>\d{16})_(?P<end>\d{16})\.metadata$")


@dataclass
class IngestResult:
    dataset: JobDataset
    summary: dict[str, Any]


@dataclass
class _Outcome:
    obj: SourceObject
    fmt: Format
    digest: str
    parsed: ParsedFile | None = None
    parts: dict[str, str] = field(
        default_factory=dict
    )  # table -> cache part, written by the worker
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows, the per-rank tables' too
    kineto: dict[str, Any] | None = None  # the kineto_events part's rank and span (see _rank_info)
    skip_reason: str | None = None
    ignore_reason: str | None = None
    # The object could not be *fetched* (throttled, access denied, network): unlike damaged
    # content, that says nothing about the object, so the next run tries it again.
    read_failed: bool = False


@dataclass
class _Plan:
    to_read: list[tuple[SourceObject, Format, str, int | None]] = field(default_factory=list)
    cached: list[tuple[SourceObject, dict[str, Any]]] = field(default_factory=list)
    ignored: list[SourceObject] = field(default_factory=list)


def _origin_hints(keys: Iterable[str]) -> dict[str, int]:
    """TensorFlow profile start times from ``.metadata`` file *names* (no read needed)."""
    by_dir: dict[str, int] = {}
    for k in keys:
        m = TF_METADATA_RE.match(k)
        if m:
            by_dir[m.group("dir")] = int(m.group("start")) * 1000
    return by_dir


def _hint_for(key: str, by_dir: dict[str, int]) -> int | None:
    if "/plugins/profile/" not in key:
        return None
    step_dir = key.split("plugins/profile/", 1)[0]
    return by_dir.get(step_dir)


def ingest(
    source: Source,
    *,
    cache_dir: str | Path | None = None,
    jobs: int = 4,
    on_progress: ProgressFn | None = None,
    processes: bool = False,
    engine: DaskEngine | None = None,
) -> IngestResult:
    """Ingest a source into a :class:`JobDataset`, reusing the cache for unchanged objects.

    ``processes=True`` parses GIL-bound formats (Kineto and framework traces) in ``jobs``
    worker processes when there are many of them (see :data:`PROCESS_FORMATS`). The command
    line turns it on; library callers inside other servers (the dashboard) keep the
    default, threads, since worker processes re-import the caller's ``__main__`` module.
    ``engine``: a Dask cluster parses the files instead (:mod:`analyzer.engines`): its
    workers read each object themselves when the source has a worker reader
    (:func:`~analyzer.sources.base.worker_reader`), and write their parts into the cache,
    which they must share: a folder they all mount, or an ``s3://`` cache.
    ``cache_dir``: a folder or an ``s3://bucket/prefix`` (default :func:`default_cache_root`).
    """
    started = time.perf_counter()
    progress = on_progress or (lambda phase, done, total: None)
    meta = source.metadata()
    cache = SourceCache(cache_dir if cache_dir else default_cache_root(), source.identity)

    objects = list(_listing(source, progress))
    if not objects:
        raise SourceError(f"no files found in {meta.source}: check the path or job name")

    manifest = cache.load_manifest()
    hints = _origin_hints(o.key for o in objects)
    plan = _plan(objects, manifest, hints, cache)

    new_manifest: dict[str, Any] = {}
    skipped: list[dict[str, str]] = []
    warnings: list[dict[str, str]] = []
    ignored = len(plan.ignored)
    fresh_tables: dict[str, dict[str, pa.Table]] = {}  # key -> table -> data, parsed this run

    for obj in plan.ignored:
        new_manifest[obj.key] = {
            "fp": obj.fingerprint,
            "status": "ignored",
            "reason": "unknown file type",
        }
    entry: dict[str, Any]
    for obj, entry in plan.cached:
        new_manifest[obj.key] = entry
        if entry["status"] == "skipped":
            skipped.append({"path": obj.location, "reason": entry["reason"]})
        elif entry["status"] == "ignored":
            ignored += 1
        for w in entry.get("warnings", []):
            warnings.append({"path": obj.location, "warning": w})

    total_read = len(plan.to_read)
    progress("read", 0, total_read)
    for done, outcome in enumerate(
        _read_and_parse(source, plan.to_read, jobs, cache, processes, engine), 1
    ):
        progress("read", done, total_read)
        obj = outcome.obj
        entry = {"fp": obj.fingerprint, "format": outcome.fmt.id, "digest": outcome.digest}
        if outcome.skip_reason is not None:
            log.warning("skipped %s: %s", obj.location, outcome.skip_reason)
            skipped.append({"path": obj.location, "reason": outcome.skip_reason})
            # "unread" is never reused from the cache (see _plan): read again next time
            entry.update(
                status="unread" if outcome.read_failed else "skipped", reason=outcome.skip_reason
            )
        elif outcome.ignore_reason is not None:
            ignored += 1
            entry.update(status="ignored", reason=outcome.ignore_reason)
        else:
            assert outcome.parsed is not None
            fresh_tables[obj.key] = outcome.parsed.tables  # the per-rank tables are not among them
            entry.update(
                status="ok",
                parts=outcome.parts,
                rows=outcome.rows,
                warnings=outcome.parsed.warnings,
            )
            if outcome.kineto is not None:
                entry["kineto"] = outcome.kineto
            for w in outcome.parsed.warnings:
                log.info("%s: %s", obj.location, w)
                warnings.append({"path": obj.location, "warning": w})
        new_manifest[obj.key] = entry

    fingerprint = _dataset_fingerprint(new_manifest)
    found = None if fresh_tables else cache.read_merged(fingerprint)
    reopened = found is not None
    tables: MutableMapping[str, pa.Table]
    if found is not None:
        tables, stats, layout = found
        rank_parts = _rank_parts(cache, layout, processes, jobs)
    else:
        tables, layout = _merge(cache, new_manifest, fresh_tables, progress)
        rank_parts = _rank_parts(cache, layout, processes, jobs)
        stats = JobDataset(meta=meta, tables=tables, rank_parts=rank_parts).compute_stats()
        cache.write_merged(tables, fingerprint, stats, layout)
    cache.save_manifest(new_manifest, {"source": meta.source})
    cache.save_json("job.json", meta.to_dict())

    if meta.rule_statuses:
        tables["rule_statuses"] = _rule_status_table(
            meta.rule_statuses
        )  # counted from the table itself
    dataset = JobDataset(meta=meta, tables=tables, stats=stats, rank_parts=rank_parts)
    ok_files = sum(1 for e in new_manifest.values() if e.get("status") == "ok")
    summary: dict[str, Any] = {
        "source": meta.source,
        "kind": meta.kind,
        "job": meta.to_dict(),
        "tables": dataset.row_counts,
        "nodes": len(dataset.nodes),
        "ranks": len(dataset.ranks),
        "node_names": dataset.nodes,
        "rank_ids": dataset.ranks,
        "time_span": dataset.time_span(),
        "files_listed": len(objects),
        "files_read": total_read,
        "files_from_cache": len(plan.cached),
        "files_ingested": ok_files,
        "ignored": ignored,
        # SageMaker Debugger writes training_job_end.ts when the training ends: a job without
        # it and without an end in its status may still be running (StalledTrainingRule)
        "end_markers": sorted(
            k for k in new_manifest if k.rsplit("/", 1)[-1] == DEBUGGER_END_MARKER
        )[:MAX_IGNORED_KEYS],
        "ignored_keys": sorted(k for k, e in new_manifest.items() if e.get("status") == "ignored")[
            :MAX_IGNORED_KEYS
        ],
        "skipped": skipped,
        "warnings": warnings,
        "cache": {"dir": cache.location, "reopened": reopened},
        "duration_s": round(time.perf_counter() - started, 3),
    }
    return IngestResult(dataset=dataset, summary=summary)


#: the file SageMaker Debugger's hook writes at the end of the training
DEBUGGER_END_MARKER = "training_job_end.ts"
#: how many ignored keys the summary names (the count is always whole)
MAX_IGNORED_KEYS = 20
#: tables that hold profiler data: a source with rows in none of them has nothing to judge
#: (rule statuses and exit records alone say nothing about the training's time or health)
DATA_TABLES = tuple(t for t in TABLE_NAMES if t not in ("rule_statuses", "process_exits"))


def no_profiler_data(summary: dict[str, Any]) -> str | None:
    """The one line that says why a source has nothing to judge (None when it has data):
    what was found, what was skipped and why, what is not a format stepscope reads."""
    tables = summary.get("tables") or {}
    if any(tables.get(t, 0) for t in DATA_TABLES):
        return None
    parts = [f"{summary.get('files_listed', 0)} file(s) found"]
    skipped = summary.get("skipped") or []
    if skipped:
        first = skipped[0]
        more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        parts.append(f"{len(skipped)} skipped ({first.get('path')}: {first.get('reason')}{more})")
    ignored = summary.get("ignored", 0)
    if ignored:
        names = summary.get("ignored_keys") or []
        shown = ", ".join(names[:3]) + (", ..." if ignored > 3 else "")
        parts.append(f"{ignored} not a format stepscope reads ({shown})")
    return (
        f"no profiler data in {summary.get('source')}: {'; '.join(parts)}. "
        "stepscope reads SageMaker Debugger output, PyTorch profiler traces "
        "(*.pt.trace.json[.gz]), TensorBoard event files and stepscope run's output "
        "(docs/cli-ingest.md)"
    )


def _listing(source: Source, progress: ProgressFn) -> Iterator[SourceObject]:
    n = 0
    for obj in source.list_objects():
        n += 1
        if n % 500 == 0:
            progress("list", n, 0)
        yield obj
    progress("list", n, n)


def _plan(
    objects: list[SourceObject], manifest: dict[str, Any], hints: dict[str, int], cache: SourceCache
) -> _Plan:
    plan = _Plan()
    for obj in objects:
        fmt = classify(obj.key)
        if fmt is None:
            plan.ignored.append(obj)
            continue
        hint = _hint_for(obj.key, hints) if fmt.id == "sagemaker_framework_trace" else None
        digest = object_digest(obj.key, obj.fingerprint, "" if hint is None else str(hint))
        entry = manifest.get(obj.key)
        if (
            isinstance(entry, dict)
            and entry.get("fp") == obj.fingerprint
            and entry.get("digest", digest) == digest
            and entry.get("status") in ("ok", "skipped", "ignored")
            and all(cache.has_part(p) for p in entry.get("parts", {}).values())
        ):
            plan.cached.append((obj, entry))
        else:
            plan.to_read.append((obj, fmt, digest, hint))
    return plan


def _parse_one(
    obj: SourceObject, data: bytes, fmt: Format, digest: str, hint: int | None, cache: SourceCache
) -> _Outcome:
    """The map step: one object's bytes → its tables, written to the cache as Parquet parts.

    Runs in a worker; parsing and Parquet encoding release the GIL, so workers overlap.
    """
    out = _Outcome(obj=obj, fmt=fmt, digest=digest)
    try:
        out.parsed = fmt.parse(data, obj.key, hint)
        out.parts = {
            t: cache.write_part(digest, t, table) for t, table in out.parsed.tables.items()
        }
        out.rows = {t: table.num_rows for t, table in out.parsed.tables.items()}
        if "kineto_events" in out.parsed.tables:
            out.kineto = _rank_info(
                out.parsed.tables["kineto_events"], out.parsed.tables.get("kineto_traces")
            )
        # the per-rank tables stay in their parts: nothing of them goes back to the caller
        out.parsed = ParsedFile(
            tables={t: v for t, v in out.parsed.tables.items() if t not in PER_RANK_TABLES},
            warnings=out.parsed.warnings,
        )
    except UnreadableFile as exc:
        out.skip_reason = str(exc) or "unreadable"
    except NotAProfilerFile as exc:
        out.ignore_reason = str(exc) or "not a profiler file"
    except Exception as exc:  # a parser bug must not lose the rest of the job
        # the skip (one line) is logged by the caller; the traceback only with -vv
        log.debug("parser failed on %s", obj.location, exc_info=True)
        out.skip_reason = (
            f"parser error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
    return out


#: Formats whose parsers decode JSON in Python (msgspec, orjson) and so hold the GIL: with
#: many such files they are parsed in worker processes, as HTA does, so a job of hundreds of
#: ranks uses every core. pyarrow's JSON reader (system metrics) and Parquet encoding release
#: the GIL, so threads serve those. ``STEPSCOPE_INGEST_PROCESSES=0`` keeps everything in threads.
PROCESS_FORMATS = frozenset({"kineto_trace", "json_trace_candidate", "sagemaker_framework_trace"})
PROCESS_MIN_FILES = 8  # below this, starting worker processes costs more than it saves


#: what a worker hands back: (could-not-read reason, parsed small tables, parts, rows, the
#: kineto part's rank info, skip reason, ignore reason); no Format (it holds lambdas)
WorkerResult = tuple[
    str | None,
    ParsedFile | None,
    dict[str, str],
    dict[str, int],
    dict[str, Any] | None,
    str | None,
    str | None,
]


def _parse_worker_init() -> None:
    """A parse worker process: no pandas, and the collector paused during each trace parse."""
    keep_pandas_out()
    # imported here: the columnar stack comes only into processes that parse
    from analyzer.ingest.kineto import pause_gc_while_parsing

    pause_gc_while_parsing()


def _parse_in_worker(
    obj: SourceObject, data: bytes, fmt_id: str, digest: str, hint: int | None, cache: SourceCache
) -> WorkerResult:
    """_parse_one in a worker process (a local pool's or a Dask worker), given the object's
    bytes."""
    from analyzer.ingest.kineto import pause_gc_while_parsing

    pause_gc_while_parsing()  # a process that runs these tasks exists to parse
    out = _parse_one(obj, data, format_by_id(fmt_id), digest, hint, cache)
    return None, out.parsed, out.parts, out.rows, out.kineto, out.skip_reason, out.ignore_reason


def _fetch_and_parse_in_worker(
    reader: WorkerReader,
    obj: SourceObject,
    fmt_id: str,
    digest: str,
    hint: int | None,
    cache: SourceCache,
) -> WorkerResult:
    """The object read on the worker itself (the client sent no bytes), then parsed there;
    a read that fails is the same counted "could not read" skip as on this machine."""
    try:
        data = reader.read(obj)
    except Exception as exc:  # reported per object, by design
        return _unread_reason(exc), None, {}, {}, None, None, None
    return _parse_in_worker(obj, data, fmt_id, digest, hint, cache)


def _unread_reason(exc: BaseException) -> str:
    """The one line of a skipped object that could not be fetched."""
    reason = getattr(exc, "message", None) or f"could not read: {exc}"
    return str(reason).splitlines()[0]


def _process_pool(
    tasks: list[tuple[SourceObject, Format, str, int | None]], jobs: int
) -> Executor | None:
    heavy = sum(1 for t in tasks if t[1].id in PROCESS_FORMATS)
    workers = min(jobs, os.cpu_count() or 1)
    if (
        heavy < PROCESS_MIN_FILES
        or workers < 2
        or os.environ.get("STEPSCOPE_INGEST_PROCESSES", "1") == "0"
    ):
        return None
    ctx = multiprocessing.get_context("forkserver")  # no fork of a threaded parent
    ctx.set_forkserver_preload(
        ["analyzer.ingest.pipeline", *(f.parser.split(":")[0] for f in FORMATS)]
    )
    try:
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_parse_worker_init
        )
        log.info("parsing %d trace files in %d worker processes", heavy, workers)
        return pool
    except (OSError, ValueError) as exc:  # e.g. no /dev/shm: threads still work
        log.info("parsing in threads: cannot start worker processes (%s)", exc)
        return None


def _read_and_parse(
    source: Source,
    tasks: list[tuple[SourceObject, Format, str, int | None]],
    jobs: int,
    cache: SourceCache,
    processes: bool = False,
    engine: DaskEngine | None = None,
) -> Iterator[_Outcome]:
    if not tasks:
        return
    by_key = {t[0].key: t for t in tasks}
    # the GIL-bound parses: on the Dask cluster when there is one (any number of files),
    # else in local worker processes when there are enough of them
    lost: tuple[type[BaseException], ...] = (BrokenProcessPool,)
    reader: WorkerReader | None = None
    window = 4 * max(1, jobs)  # bound memory: bytes in flight
    if engine is not None:
        procs: Executor | None = engine.executor()
        lost += engine.lost_errors
        reader = worker_reader(source)
        log.info(
            "parsing trace files on the Dask cluster at %s%s",
            engine.address,
            " (its workers read the objects)" if reader is not None else "",
        )
    else:
        procs = _process_pool(tasks, jobs) if processes else None
    threads = ThreadPoolExecutor(max(1, jobs))
    # (object, bytes, future, in a worker process): the bytes stay until the result is in,
    # so a file whose worker process died is parsed again in a thread, not lost; None when
    # a Dask worker reads the object itself (then it is read here only if Dask gave up)
    pending: list[tuple[SourceObject, bytes | None, Future[Any], bool]] = []

    told: list[str] = []

    def read_here(
        obj: SourceObject, fmt: Format, digest: str, hint: int | None, worker_reason: str
    ) -> _Outcome:
        """An object a Dask worker could not read, read and parsed in this process. What a
        worker cannot read usually says more about the worker than the object (a source
        folder it does not mount, a --profile or credentials it lacks), so this machine
        tries it before it counts as a skip; said once in the log."""
        if not told:
            told.append(worker_reason)
            log.warning(
                "Dask workers could not read %s (%s); this machine reads such files itself",
                obj.location,
                worker_reason,
            )
        try:
            data = source.read(obj)
        except Exception as exc:  # unreadable here too: the object's own skip
            return _Outcome(
                obj=obj, fmt=fmt, digest=digest, skip_reason=_unread_reason(exc), read_failed=True
            )
        return _parse_one(obj, data, fmt, digest, hint, cache)

    def collect(item: tuple[SourceObject, bytes | None, Future[Any], bool]) -> _Outcome:
        obj, data, fut, in_process = item
        if not in_process:
            outcome: _Outcome = fut.result()
            return outcome
        _, fmt, digest, hint = by_key[obj.key]
        try:
            unread, parsed, parts, rows, kineto, skip, ignore = fut.result()
        except lost:
            log.warning("a parser process died; parsing %s in this process", obj.location)
            if data is None:
                try:
                    data = source.read(obj)
                except Exception as exc:  # reported per object, by design
                    return _Outcome(
                        obj=obj,
                        fmt=fmt,
                        digest=digest,
                        skip_reason=_unread_reason(exc),
                        read_failed=True,
                    )
            return _parse_one(obj, data, fmt, digest, hint, cache)
        if unread is not None:
            if data is None:  # a Dask worker could not fetch it: read and parse it here instead
                return read_here(obj, fmt, digest, hint, unread)
            return _Outcome(obj=obj, fmt=fmt, digest=digest, skip_reason=unread, read_failed=True)
        if engine is not None:  # a worker wrote these parts: they must be where this process reads
            for rel in parts.values():
                if cache.shared:
                    cache.note_part(rel)
                elif not cache.has_part(rel):
                    from analyzer.engines import EngineError, unshared

                    raise EngineError(
                        unshared(FileNotFoundError(2, "no such file", cache.abspath(rel)))
                    )
        return _Outcome(
            obj=obj,
            fmt=fmt,
            digest=digest,
            parsed=parsed,
            parts=parts,
            rows=rows,
            kineto=kineto,
            skip_reason=skip,
            ignore_reason=ignore,
        )

    try:
        remote = [t for t in tasks if reader is not None and reader.handles(t[0])]
        if remote:
            assert engine is not None and procs is not None and reader is not None
            in_flight = max(window, 2 * engine.slots)  # no bytes held here: keep every worker busy
            for obj, fmt, digest, hint in remote:
                task = procs.submit(
                    _fetch_and_parse_in_worker, reader, obj, fmt.id, digest, hint, cache
                )
                pending.append((obj, None, task, True))
                if len(pending) >= in_flight:
                    yield collect(pending.pop(0))
        sent = {t[0].key for t in remote}
        for obj, data in source.read_many(t[0] for t in tasks if t[0].key not in sent):
            _, fmt, digest, hint = by_key[obj.key]
            if isinstance(data, Exception):
                yield _Outcome(
                    obj=obj,
                    fmt=fmt,
                    digest=digest,
                    skip_reason=_unread_reason(data),
                    read_failed=True,
                )
                continue
            fut: Future[Any] | None = None
            if procs is not None and fmt.id in PROCESS_FORMATS:
                try:
                    fut = procs.submit(_parse_in_worker, obj, data, fmt.id, digest, hint, cache)
                except BrokenProcessPool:
                    log.warning("worker processes unavailable; parsing the rest in threads")
                    procs.shutdown(cancel_futures=False)
                    procs = None
            if fut is not None:
                pending.append((obj, data, fut, True))
            else:
                pending.append(
                    (
                        obj,
                        data,
                        threads.submit(_parse_one, obj, data, fmt, digest, hint, cache),
                        False,
                    )
                )
            if len(pending) >= window:
                yield collect(pending.pop(0))
        for item in pending:
            yield collect(item)
    finally:
        threads.shutdown(cancel_futures=True)
        if procs is not None:
            procs.shutdown(cancel_futures=True)


def _dataset_fingerprint(manifest: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for key in sorted(manifest):
        e = manifest[key]
        h.update(
            f"{key}\x00{e.get('digest', e.get('fp'))}\x00{e.get('status')}\n".encode(
                "utf-8", "surrogateescape"
            )
        )
    return h.hexdigest()


def _rank_info(events: pa.Table, traces: pa.Table | None) -> dict[str, Any]:
    """What the dataset needs of a ``kineto_events`` part without reading it again: its
    rank (the Kineto parser writes one per file) and the span of its absolute times."""
    import pyarrow.compute as pc

    ranks: list[int] = []
    for t in (traces, events):
        if t is not None and t.num_rows:
            ranks = sorted(int(r) for r in pc.unique(t.column("rank")).to_pylist() if r is not None)
            break
    span = event_span(events)
    return {"ranks": ranks, "span": None if span is None else list(span)}


def _rank_parts(
    cache: SourceCache, layout: dict[str, Any], processes: bool, jobs: int
) -> RankParts:
    parts = {
        int(rank): tuple(cache.abspath(p) for p in paths)
        for rank, paths in layout.get("parts", {}).items()
    }
    span = layout.get("span")
    rows_by_rank = {int(rank): int(n) for rank, n in layout.get("rows_by_rank", {}).items()}
    return RankParts(
        parts=parts,
        rows=int(layout.get("rows", 0)),
        rows_by_rank=rows_by_rank,
        span=None if span is None else (int(span[0]), int(span[1])),
        processes=processes,
        jobs=jobs,
    )


def _merge(
    cache: SourceCache,
    manifest: dict[str, Any],
    fresh: dict[str, dict[str, pa.Table]],
    progress: ProgressFn,
) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """The merged small tables, and where each rank's per-rank parts are (``layout``:
    rank → cache-relative parts in key order, their rows and span)."""
    pieces: dict[str, list[pa.Table]] = {}
    by_rank: dict[int, list[str]] = {}
    rank_rows: dict[int, int] = {}
    rows = 0
    lo: int | None = None
    hi: int | None = None
    keys = sorted(k for k, e in manifest.items() if e.get("status") == "ok")
    for i, key in enumerate(keys, 1):
        entry = manifest[key]
        for tname, rel in entry.get("parts", {}).items():
            if tname in PER_RANK_TABLES:
                continue
            table = fresh.get(key, {}).get(tname)
            if table is None:
                table = cache.read_part(rel)
            pieces.setdefault(tname, []).append(table)
        rel = entry.get("parts", {}).get("kineto_events")
        if rel is not None:
            info = entry.get("kineto")
            if not isinstance(info, dict):  # parsed by an earlier version: learn it once, keep it
                info = entry["kineto"] = _rank_info(cache.read_part(rel), None)
            n = int(entry.get("rows", {}).get("kineto_events", 0))
            for rank in info["ranks"]:
                by_rank.setdefault(int(rank), []).append(rel)
                rank_rows[int(rank)] = rank_rows.get(int(rank), 0) + n
            rows += n
            if info.get("span") is not None:
                lo = info["span"][0] if lo is None else min(lo, info["span"][0])
                hi = info["span"][1] if hi is None else max(hi, info["span"][1])
        if i % 200 == 0:
            progress("merge", i, len(keys))
    progress("merge", len(keys), len(keys))
    layout = {
        "parts": {str(r): p for r, p in sorted(by_rank.items())},
        "rows": rows,
        "rows_by_rank": {str(r): n for r, n in sorted(rank_rows.items())},
        "span": None if lo is None or hi is None else [lo, hi],
    }
    import pyarrow as pa

    from analyzer.ingest.schemas import SCHEMAS

    merged: dict[str, pa.Table] = {}
    for tname, parts in pieces.items():
        schema = SCHEMAS.get(tname)
        if schema is not None:
            parts = [p.cast(schema) if p.schema != schema else p for p in parts]
        merged[tname] = pa.concat_tables(parts).unify_dictionaries()
    if "system_metrics" in merged:  # a node's own files win over its CloudWatch metrics
        from analyzer.ingest.cloudwatch_metrics import prefer_files

        merged["system_metrics"] = prefer_files(merged["system_metrics"])
    return merged, layout


def _rule_status_table(statuses: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    from analyzer.ingest.schemas import RULE_STATUSES

    rows = [
        {
            "rule": s.get("RuleConfigurationName"),
            "kind": s.get("kind"),
            "status": s.get("RuleEvaluationStatus"),
            "details": s.get("StatusDetails"),
            "last_modified": None
            if s.get("LastModifiedTime") is None
            else str(s.get("LastModifiedTime")),
        }
        for s in statuses
    ]
    return pa.Table.from_pylist(rows, schema=RULE_STATUSES)

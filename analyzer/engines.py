"""Where the map runs: this machine's worker processes (the default) or an existing Dask
cluster (``--engine dask://HOST:PORT``, issue 12 part 2).

Why a module of its own: the analyses and ingest's parse are pure, picklable, top-level
functions (:func:`analyzer.analyses.rank_map.rank_summary`, ``pipeline._parse_in_worker``);
*which* executor runs them is a deployment choice, kept out of both. The local engine needs
no Dask: ``distributed`` is imported only when a Dask engine connects.

The workers read the job's objects themselves (the client sends each a small task: the
source's :class:`~analyzer.sources.base.WorkerReader`, the object, its format and digest;
never its bytes), straight from S3 with their own AWS credentials, or from a folder every
worker mounts at the same path. They write their Parquet parts to the job's cache, which
they must all reach: ``--cache s3://bucket/prefix``, or a folder on a shared file system
(docs/scale.md, "Dask engine"); the per-rank map's workers read the parts from there.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from analyzer.errors import StepscopeError

log = logging.getLogger("stepscope.engine")

#: the environment variable Dask itself reads for a scheduler address
DASK_ENV = "DASK_SCHEDULER_ADDRESS"
#: seconds to wait for the scheduler before saying it cannot be reached
CONNECT_TIMEOUT_S = 10
#: reruns of a task that raised on a worker (a flaky read); a worker that dies mid-task is
#: Dask's own reschedule, up to ``distributed.scheduler.allowed-failures``
TASK_RETRIES = 1
MISSING = "--engine dask:// needs the 'distributed' package (pip install 'stepscope[dask]')"


class EngineError(StepscopeError):
    """The engine cannot run the map (no Dask installed, no scheduler, unreadable cache)."""


def parse_engine(spec: str | None) -> str | None:
    """``--engine`` (or ``$DASK_SCHEDULER_ADDRESS`` when it is not given) → the Dask
    scheduler's address, or None for the local engine. ``dask://HOST:PORT`` means
    ``tcp://HOST:PORT``; ``dask://tls://HOST:PORT`` keeps its protocol."""
    if not spec:
        env = os.environ.get(DASK_ENV, "").strip()
        if not env:
            return None
        return env if "://" in env else f"tcp://{env}"
    spec = spec.strip()
    if spec == "local":
        return None
    if spec.startswith("dask://"):
        rest = spec[len("dask://") :]
        host = rest.split("://", 1)[-1]
        if not host or ":" not in host or not host.rsplit(":", 1)[1].isdigit():
            raise EngineError(f"engine {spec!r} has no HOST:PORT; give e.g. dask://10.0.0.5:8786")
        return rest if "://" in rest else f"tcp://{rest}"
    raise EngineError(f"unknown engine {spec!r}; give local or dask://HOST:PORT")


class DaskEngine:
    """A client of an existing Dask cluster: the map's tasks go to its workers, the results
    come back here, where the reduce runs. One connection per command (``with`` closes it)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Any = None

    def __enter__(self) -> DaskEngine:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> Any:
        """The client, connected on first use; a missing package or an unreachable scheduler
        is one line (:class:`EngineError`), never a traceback."""
        if self._client is not None:
            return self._client
        try:
            from distributed import Client
        except ImportError:
            raise EngineError(MISSING) from None
        try:
            self._client = Client(self.address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise EngineError(
                f"cannot reach the Dask scheduler at {self.address}: {detail[:200]}"
            ) from None
        workers = len(self._client.scheduler_info().get("workers", {}))
        log.info("Dask engine: scheduler %s, %d workers", self.address, workers)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                client.close()
            except Exception as exc:  # a scheduler gone by now: nothing left to release
                log.debug("closing the Dask client: %s", exc)

    @property
    def lost_errors(self) -> tuple[type[BaseException], ...]:
        """What a task's result raises when Dask gave up on it after its workers died (the
        caller then runs it here, as it does when a local worker process dies)."""
        from distributed.scheduler import KilledWorker

        return (KilledWorker, cf.CancelledError)

    def map(
        self,
        fn: Callable[[Any], Any],
        tasks: Iterable[Any],
        *,
        local: Callable[[Any], Any] | None = None,
    ) -> list[Any]:
        """``fn`` over ``tasks`` on the workers, results in task order. A task whose workers
        kept dying runs here (``local``, default ``fn``); one that cannot open a file says the
        cache must be shared; any other exception is the task's own, raised as it is locally."""
        client = self.connect()
        items = list(tasks)
        futures = client.map(fn, items, pure=False, retries=TASK_RETRIES)
        out: list[Any] = []
        for task, fut in zip(items, futures, strict=True):
            try:
                out.append(fut.result())
            except self.lost_errors as exc:
                log.warning(
                    "Dask workers died on a task (%s); running it in this process",
                    type(exc).__name__,
                )
                out.append((local or fn)(task))
            except FileNotFoundError as exc:
                client.cancel(futures)
                raise EngineError(unshared(exc)) from None
        return out

    @property
    def slots(self) -> int:
        """How many tasks the cluster runs at once (its workers' threads, at least 1)."""
        try:
            return max(1, sum(self.connect().nthreads().values()))
        except (OSError, TimeoutError):
            return 1

    def executor(self) -> cf.Executor:
        """A ``concurrent.futures`` executor over the cluster (ingest's per-file parse)."""
        return _ClusterExecutor(self.connect())


def unshared(exc: BaseException) -> str:
    """The one line for a file a worker cannot open: the cache is not where workers read."""
    name = getattr(exc, "filename", None) or str(exc).splitlines()[0]
    if str(name).startswith("s3://"):
        return (
            f"a Dask worker cannot find {name} in the cache: delete the cache prefix and "
            "ingest again"
        )
    return (
        f"a Dask worker cannot open {name}: the cache folder (--cache) must be on a file system "
        "every worker mounts at the same path (docs/scale.md)"
    )


class _ClusterExecutor(cf.Executor):
    """Dask's ``ClientExecutor`` with the ``shutdown(cancel_futures=...)`` of the standard
    executors, so ingest drives it exactly like its process pool."""

    def __init__(self, client: Any) -> None:
        self._inner = client.get_executor(pure=False, retries=TASK_RETRIES)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        fut: cf.Future[Any] = self._inner.submit(fn, *args, **kwargs)
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait and not cancel_futures)

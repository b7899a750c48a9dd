"""The one interface every source implements.

A source is a read-only view of a job's output: a flat list of objects, each with a
*logical key* (a ``/``-separated path relative to the job's root, e.g.
``profiler-output/system/incremental/2020060300/1591160699.algo-1.json``) and a
*fingerprint* (ETag, or size + mtime) that changes whenever the content does. Ingest only
ever sees this interface, so a local folder, an S3 prefix and a SageMaker job look the same
to it.

A source may also offer ``worker_reader()``: a :class:`WorkerReader`, the small picklable
thing a Dask worker reads the source's objects with itself, so the client ships a task per
object instead of its bytes (:mod:`analyzer.engines`). A source without one (or objects its
reader does not handle) is read by the client, as on the local engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class SourceObject:
    """One raw file of the job's output."""

    key: str  # logical key, relative to the job root, '/'-separated, never absolute
    size: int
    fingerprint: str  # changes whenever the content changes (ETag or size+mtime_ns)
    location: str  # where it really lives (absolute path or s3://bucket/key), for messages


@dataclass
class JobMetadata:
    """What is known about the job itself (from DescribeTrainingJob, or nothing locally)."""

    name: str
    source: str  # the SOURCE argument as given
    kind: str  # 'local' | 's3' | 'sagemaker-job'
    status: str | None = None
    secondary_status: str | None = None
    failure_reason: str | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    creation_time: str | None = None
    training_start_time: str | None = None
    training_end_time: str | None = None
    # One entry per rule: {"RuleConfigurationName", "RuleEvaluationStatus", "StatusDetails",
    # "LastModifiedTime", "kind": "profiler"|"debug"}
    rule_statuses: list[dict[str, Any]] = field(default_factory=list)
    # The S3 prefixes (or folders) the data was read from, by role.
    locations: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "status": self.status,
            "secondary_status": self.secondary_status,
            "failure_reason": self.failure_reason,
            "instance_type": self.instance_type,
            "instance_count": self.instance_count,
            "creation_time": self.creation_time,
            "training_start_time": self.training_start_time,
            "training_end_time": self.training_end_time,
            "rule_statuses": self.rule_statuses,
            "locations": self.locations,
            "extra": self.extra,
        }


@runtime_checkable
class Source(Protocol):
    """Lists and reads the objects of one job's output."""

    #: stable identity of the source (used to name its cache folder)
    identity: str

    def metadata(self) -> JobMetadata:
        """The job's metadata; raises SourceError when the job cannot be found."""
        ...

    def list_objects(self) -> Iterator[SourceObject]:
        """Every object under the source (all pages). Raises SourceError on failure."""
        ...

    def read(self, obj: SourceObject) -> bytes:
        """The object's bytes. Raises SourceError (or OSError) when it cannot be read."""
        ...

    def read_many(
        self, objs: Iterable[SourceObject]
    ) -> Iterator[tuple[SourceObject, bytes | Exception]]:
        """Read objects, possibly in parallel; yields each with its bytes or the error."""
        ...


@runtime_checkable
class WorkerReader(Protocol):
    """Reads a source's objects in another process (a Dask worker): picklable, holds no
    open client or credential; it makes what it needs on first use in that process."""

    def handles(self, obj: SourceObject) -> bool:
        """Whether this reader can read ``obj`` (e.g. not a source's CloudWatch objects)."""
        ...

    def read(self, obj: SourceObject) -> bytes:
        """The object's bytes; raises SourceError (or OSError) as :meth:`Source.read` does."""
        ...


def worker_reader(source: Source) -> WorkerReader | None:
    """The source's worker reader, or None when its objects can only be read here."""
    make = getattr(source, "worker_reader", None)
    reader = make() if callable(make) else None
    return reader if isinstance(reader, WorkerReader) else None

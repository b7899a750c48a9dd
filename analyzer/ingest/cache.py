"""The cache: one Parquet part per (object, fingerprint, table), plus merged tables as
uncompressed Arrow IPC files (reopened by memory map).

Why per object: re-ingesting a running job then reads only the objects whose fingerprint
changed, and the parse stays a map over files. File names inside the cache are hashes,
never keys, and every path goes through :func:`safe_join`, so no key can write outside it.

Where it lives is a :class:`Store`: a local folder (:class:`LocalStore`, also what a Dask
cluster on a shared file system uses) or an ``s3://bucket/prefix`` (:class:`S3Store`, what
Dask workers without a shared file system write their parts to). The cache's names are the
same in both; on S3 they are keys under the prefix, checked like folder names, so no key
leaves it either.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from analyzer.errors import StepscopeError, UnsafePathError

if TYPE_CHECKING:
    import pyarrow as pa

# 3: system_metrics gained the source and resolution_s columns (CloudWatch metrics); 6:
# kineto_traces gained process_groups (distributedInfo.pg_config, issue 20); 7: kineto_events
# gained wait_on_stream and wait_on_correlation (CUDA event syncs, the critical path); 8:
# process_exits gained exception and exception_frames (the exception a rank raised)
CACHE_VERSION = 8
#: what ``merged/`` holds; 2: kineto_events stays in its per-rank parts (``rank_parts``)
MERGED_LAYOUT = 2


def default_cache_root() -> Path | str:
    """``$STEPSCOPE_CACHE`` (a folder or an ``s3://bucket/prefix``), else the user's cache
    folder."""
    env = os.environ.get("STEPSCOPE_CACHE")
    if env:
        return env if is_s3_url(env) else Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "stepscope"


def is_s3_url(root: object) -> bool:
    return isinstance(root, str) and root.startswith("s3://")


def check_component(part: str, root: object) -> None:
    """Refuse a cache name that could leave ``root`` (a folder or an S3 prefix)."""
    if not part or part.startswith(("/", "\\")) or ".." in Path(part).parts or "\x00" in part:
        raise UnsafePathError(f"refusing cache path component {part!r}: it would leave {root}")


def safe_join(root: Path, *parts: str) -> Path:
    """``root/parts...``, refusing anything that would resolve outside ``root``."""
    root_resolved = root.resolve()
    for p in parts:
        check_component(p, root)
    path = root_resolved.joinpath(*parts).resolve()
    if not path.is_relative_to(root_resolved):
        raise UnsafePathError(f"refusing cache path {path}: it is outside {root_resolved}")
    return path


def object_digest(key: str, fingerprint: str, hint: str = "") -> str:
    h = hashlib.sha256()
    for part in (str(CACHE_VERSION), key, fingerprint, hint):
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\x00")
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store(Protocol):
    """Where one source's cache lives. Names are ``/``-separated and relative to it; every
    name is checked (:func:`check_component`) before it becomes a path or a key."""

    def url(self, rel: str = "") -> str:
        """The absolute path or ``s3://`` URL of a name (what a map worker opens)."""
        ...

    def get(self, rel: str) -> bytes | None:
        """The bytes stored under ``rel``, None when there are none."""
        ...

    def put(self, rel: str, data: bytes) -> None:
        """Store ``data`` under ``rel`` whole or not at all (a reader never sees half)."""
        ...

    def exists(self, rel: str) -> bool: ...

    def names(self, folder: str) -> list[str]:
        """The names of the files directly in ``folder``."""
        ...

    def remove(self, rel: str) -> None: ...

    def write_parquet(self, rel: str, table: pa.Table) -> None: ...

    def read_parquet(self, rel: str) -> pa.Table: ...

    def write_ipc(self, rel: str, table: pa.Table) -> None: ...

    def open_ipc(self, rel: str) -> pa.Table:
        """A merged table: memory-mapped from a local file, downloaded from S3."""
        ...


class LocalStore:
    """A cache folder (today's layout, byte for byte); on a Dask cluster, a shared one."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        return safe_join(self.dir, *rel.split("/")) if rel else self.dir

    def url(self, rel: str = "") -> str:
        return str(self.path(rel))

    def get(self, rel: str) -> bytes | None:
        try:
            return self.path(rel).read_bytes()
        except OSError:
            return None

    def put(self, rel: str, data: bytes) -> None:
        atomic_write_bytes(self.path(rel), data)

    def exists(self, rel: str) -> bool:
        try:
            return self.path(rel).is_file()
        except UnsafePathError:
            return False

    def names(self, folder: str) -> list[str]:
        return sorted(
            p.name
            for p in self.path(folder).glob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def remove(self, rel: str) -> None:
        self.path(rel).unlink(missing_ok=True)

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        pq.write_table(table, tmp, compression="snappy")
        os.replace(tmp, path)

    def read_parquet(self, rel: str) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self.path(rel))

    def write_ipc(self, rel: str, table: pa.Table) -> None:
        import pyarrow as pa

        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=1 << 20)
        os.replace(tmp, path)

    def open_ipc(self, rel: str) -> pa.Table:
        import pyarrow as pa

        # Uncompressed Arrow IPC: reopening the job is a memory map, not a decode
        return pa.ipc.open_file(pa.memory_map(str(self.path(rel)))).read_all()


class S3Store:
    """A cache under ``s3://bucket/prefix/``: what Dask workers write their parts to when
    they share no file system. Reached with the default AWS credential chain of the process
    that uses it (the client's, each worker's own), ``AWS_ENDPOINT_URL(_S3)`` honoured;
    retries are the project's (:func:`analyzer.sources.s3.aws_client`).

    Picklable: the boto3 client is made on first use in each process, never pickled.
    Which parts exist is listed once (one paginated listing instead of a request per part)
    and kept up to date with the parts this process writes.
    """

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix  # '' or ends with '/'
        self._parts: set[str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["bucket"], state["prefix"])  # type: ignore[misc]

    @classmethod
    def at(cls, url: str) -> S3Store:
        from analyzer.sources.s3 import parse_s3_url

        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix)

    def key(self, rel: str) -> str:
        for part in rel.split("/"):
            check_component(part, self.url())
        return self.prefix + rel

    def url(self, rel: str = "") -> str:
        return f"s3://{self.bucket}/{self.key(rel) if rel else self.prefix}"

    def _client(self) -> Any:
        from analyzer.sources.s3 import cached_client

        return cached_client()

    def _error(self, exc: Exception, rel: str) -> StepscopeError:
        from analyzer.sources.s3 import aws_error

        # the cache is reached with this process's default credentials (AWS_PROFILE, the
        # instance's role), never the source's --profile: say so beside AWS's own advice
        return aws_error(
            exc,
            what=f"the cache {self.url(rel)} (reached with the default AWS credentials: "
            "AWS_PROFILE or the instance role, not --profile)",
        )

    def get(self, rel: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        from analyzer.sources.s3 import read_body

        key = self.key(rel)
        try:
            return read_body(self._client(), Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._error(exc, rel) from None
        except BotoCoreError as exc:
            raise self._error(exc, rel) from None

    def put(self, rel: str, data: bytes) -> None:
        """One PutObject: S3 shows an object whole or not at all."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key(rel)
        try:
            self._client().put_object(Bucket=self.bucket, Key=key, Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, rel) from None
        if self._parts is not None and rel.startswith("parts/"):
            self._parts.add(rel)

    def _list(self, folder: str) -> list[str]:
        """Names under ``folder`` (all depths), relative to the store."""
        from botocore.exceptions import BotoCoreError, ClientError

        start = self.key(folder) + "/" if folder else self.prefix  # "": the store's top level
        found: list[str] = []
        try:
            for page in (
                self._client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.bucket, Prefix=start)
            ):
                found.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, folder) from None
        return found

    def exists(self, rel: str) -> bool:
        try:
            self.key(rel)
        except UnsafePathError:
            return False
        if rel.startswith("parts/"):
            if self._parts is None:
                self._parts = set(self._list("parts"))
            return rel in self._parts
        folder, _, name = rel.rpartition("/")
        return name in self.names(folder)

    def note(self, rel: str) -> None:
        """A part another process (a worker) wrote: it exists, without asking S3."""
        if self._parts is not None:
            self._parts.add(rel)

    def names(self, folder: str) -> list[str]:
        depth = folder.count("/") + 1 if folder else 0
        return sorted(n.rsplit("/", 1)[-1] for n in self._list(folder) if n.count("/") == depth)

    def remove(self, rel: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client().delete_object(Bucket=self.bucket, Key=self.key(rel))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, rel) from None

    def write_parquet(self, rel: str, table: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="snappy")
        self.put(rel, sink.getvalue().to_pybytes())

    def read_parquet(self, rel: str) -> pa.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = self.get(rel)
        if data is None:
            raise FileNotFoundError(2, "no such cache object", self.url(rel))
        return pq.read_table(pa.BufferReader(data))

    def write_ipc(self, rel: str, table: pa.Table) -> None:
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=1 << 20)
        self.put(rel, sink.getvalue().to_pybytes())

    def open_ipc(self, rel: str) -> pa.Table:
        import pyarrow as pa

        data = self.get(rel)  # the merged tables are the small ones: downloaded whole
        if data is None:
            raise OSError(2, "no such cache object", self.url(rel))
        return pa.ipc.open_file(pa.BufferReader(data)).read_all()


def open_store(root: Path | str, identity: str) -> LocalStore | S3Store:
    """The store of one source's cache: ``<root>/<identity>``, a folder or an S3 prefix."""
    if is_s3_url(root):
        base = S3Store.at(str(root))
        check_component(identity, base.url())
        if "/" in identity:
            raise UnsafePathError(
                f"refusing cache path component {identity!r}: it would leave {base.url()}"
            )
        return S3Store(base.bucket, f"{base.prefix}{identity}/")
    return LocalStore(safe_join(Path(root).expanduser(), identity))


def store_at(location: str) -> LocalStore | S3Store:
    """The store at a cache's location as :attr:`SourceCache.location` gives it (a folder or
    an ``s3://`` URL): what a later layer reopens a job's cache by (e.g. the dashboard's
    evaluated reports, kept beside the dataset)."""
    return S3Store.at(location) if is_s3_url(location) else LocalStore(Path(location))


def read_parquet_at(location: str) -> pa.Table:
    """A Parquet part by the location the cache gave for it (:meth:`SourceCache.abspath`):
    a local path, or an ``s3://`` URL read with this process's own AWS credentials (what
    the rank map's workers do)."""
    if is_s3_url(location):
        store = S3Store.at(location.rsplit("/", 1)[0])
        return store.read_parquet(location.rsplit("/", 1)[1])
    import pyarrow.parquet as pq

    return pq.read_table(location)


class SourceCache:
    """The cache of one source (``<root>/<source identity>``, a folder or an S3 prefix)."""

    def __init__(self, root: Path | str, identity: str) -> None:
        self.root = root if is_s3_url(root) else Path(root).expanduser()
        self.store: LocalStore | S3Store = open_store(self.root, identity)

    @property
    def location(self) -> str:
        """The cache's folder or ``s3://`` URL, for messages and the ingest summary."""
        return self.store.url()

    @property
    def shared(self) -> bool:
        """Every worker reads what any worker wrote, whatever it mounts (S3)."""
        return isinstance(self.store, S3Store)

    # -- manifest: key -> what we learned from that object at that fingerprint ----------
    def load_manifest(self) -> dict[str, Any]:
        data = self.store.get("manifest.json")
        try:
            doc = orjson.loads(data) if data is not None else None
        except orjson.JSONDecodeError:
            return {}
        if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION:
            return {}
        objects = doc.get("objects")
        return objects if isinstance(objects, dict) else {}

    def save_manifest(self, objects: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        doc = {"version": CACHE_VERSION, "objects": objects, **(extra or {})}
        self.store.put("manifest.json", orjson.dumps(doc))

    # -- parts ----------------------------------------------------------------------------
    @staticmethod
    def part_name(digest: str, table: str) -> str:
        if not digest.isalnum() or not table.replace("_", "").isalnum():
            raise UnsafePathError(f"refusing cache part name {digest!r}/{table!r}")
        return f"parts/{digest[:2]}/{digest}.{table}.parquet"

    def write_part(self, digest: str, table_name: str, table: pa.Table) -> str:
        rel = self.part_name(digest, table_name)
        self.store.write_parquet(rel, table)
        return rel

    def read_part(self, relpath: str) -> pa.Table:
        return self.store.read_parquet(relpath)

    def has_part(self, relpath: str) -> bool:
        return self.store.exists(relpath)

    def note_part(self, relpath: str) -> None:
        """A part a worker wrote to a shared store (S3): known to exist without a request."""
        if isinstance(self.store, S3Store):
            self.store.note(relpath)

    # -- merged tables ----------------------------------------------------------------------
    def write_merged(
        self,
        tables: dict[str, pa.Table],
        fingerprint: str,
        stats: dict[str, Any] | None = None,
        rank_parts: dict[str, Any] | None = None,
    ) -> None:
        """Write the merged tables, then ``merged.json`` (fingerprint, table names, stats,
        and ``rank_parts``: the tables kept per rank, as cache-relative part paths) last: a
        crash half-way leaves no ``merged.json`` that names missing tables."""
        for old in self.store.names("merged"):  # e.g. a merged kineto_events of an earlier version
            if old.endswith(".arrow") and old.removesuffix(".arrow") not in tables:
                self.store.remove(f"merged/{old}")
        # Uncompressed Arrow IPC: reopening the job is a memory map, not a decode (a big job
        # reopens in milliseconds); the compact copy of the data is the Parquet parts.
        for name, table in tables.items():
            self.store.write_ipc(f"merged/{name}.arrow", table)
        doc = {
            "version": CACHE_VERSION,
            "layout": MERGED_LAYOUT,
            "fingerprint": fingerprint,
            "tables": sorted(tables),
            "stats": stats,
            "rank_parts": rank_parts or {},
        }
        self.store.put("merged/merged.json", orjson.dumps(doc))

    def read_merged(
        self, fingerprint: str
    ) -> tuple[LazyTables, dict[str, Any] | None, dict[str, Any]] | None:
        """The merged tables written for ``fingerprint`` (opened when first read), their
        stats and rank parts, or None when the cache holds another version of the job."""
        data = self.store.get("merged/merged.json")
        try:
            doc = orjson.loads(data) if data is not None else None
        except orjson.JSONDecodeError:
            return None
        if (
            not isinstance(doc, dict)
            or doc.get("fingerprint") != fingerprint
            or doc.get("version") != CACHE_VERSION
        ):
            return None
        if (
            doc.get("layout") != MERGED_LAYOUT
        ):  # merged by an earlier version: merge the parts again
            return None
        names = [n for n in doc.get("tables", []) if isinstance(n, str)]
        present = set(self.store.names("merged"))
        if not all(f"{name}.arrow" in present for name in names):
            return None
        stats = doc.get("stats")
        rank_parts = doc.get("rank_parts")
        if not isinstance(rank_parts, dict) or not all(
            self.has_part(p) for p in _part_paths(rank_parts)
        ):
            return None
        tables = LazyTables(self.store, {name: f"merged/{name}.arrow" for name in names})
        return tables, stats if isinstance(stats, dict) else None, rank_parts

    def abspath(self, relpath: str) -> str:
        """A part's absolute path or ``s3://`` URL (what a map worker opens)."""
        return self.store.url(relpath)

    def save_json(self, name: str, obj: Any) -> None:
        self.store.put(name, orjson.dumps(obj, default=str))


def _part_paths(rank_parts: dict[str, Any]) -> list[str]:
    parts = rank_parts.get("parts")
    if not isinstance(parts, dict):
        return []
    return [
        p
        for paths in parts.values()
        if isinstance(paths, list)
        for p in paths
        if isinstance(p, str)
    ]


class LazyTables(MutableMapping[str, "pa.Table"]):
    """Merged tables by name, each opened from its Arrow IPC file on first access (memory
    mapped from a folder, downloaded from S3).

    A report that needs two tables of a job opens two files; a summary of an unchanged job
    opens none. Tables set on it (e.g. the job's rule statuses) are kept in memory.
    """

    def __init__(self, store: Store, names: dict[str, str]) -> None:
        self._store = store
        self._paths = dict(names)  # table -> its name in the store
        self._open: dict[str, pa.Table] = {}

    def __getitem__(self, name: str) -> pa.Table:
        if name not in self._open:
            rel = self._paths[name]  # KeyError for unknown names, as a dict
            import pyarrow as pa

            try:
                self._open[name] = self._store.open_ipc(rel)
            except (OSError, pa.ArrowInvalid) as exc:
                where = self._store.url(rel)
                raise StepscopeError(
                    f"cache file {where} is unreadable ({exc}); delete the cache folder and "
                    "ingest again"
                ) from None
        return self._open[name]

    def __setitem__(self, name: str, table: pa.Table) -> None:
        self._open[name] = table
        self._paths.pop(name, None)

    def __delitem__(self, name: str) -> None:
        if name not in self._open and name not in self._paths:
            raise KeyError(name)
        self._open.pop(name, None)
        self._paths.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._open
        yield from (n for n in self._paths if n not in self._open)

    def __len__(self) -> int:
        return len(self._open.keys() | self._paths.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._open or name in self._paths

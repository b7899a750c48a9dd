"""The cache: one Parquet part per (object, fingerprint, table), plus merged tables as
uncompressed Arrow IPC files (reopened by memory map).

Why per object: re-ingesting a running job then reads only the objects whose fingerprint
changed, and the parse stays a map over files. File names inside the cache are hashes,
never keys, and every path goes through :func:`safe_join`, so no key can write outside it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from analyzer.errors import StepscopeError, UnsafePathError

if TYPE_CHECKING:
    import pyarrow as pa

# 3: system_metrics gained the source and resolution_s columns (CloudWatch metrics)
CACHE_VERSION = 3
#: what ``merged/`` holds; 2: kineto_events stays in its per-rank parts (``rank_parts``)
MERGED_LAYOUT = 2


def default_cache_root() -> Path:
    env = os.environ.get("STEPSCOPE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "stepscope"


def safe_join(root: Path, *parts: str) -> Path:
    """``root/parts...``, refusing anything that would resolve outside ``root``."""
    root_resolved = root.resolve()
    for p in parts:
        if not p or p.startswith(("/", "\\")) or ".." in Path(p).parts or "\x00" in p:
            raise UnsafePathError(f"refusing cache path component {p!r}: it would leave {root}")
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


class SourceCache:
    """The cache folder of one source (``<root>/<source identity>``)."""

    def __init__(self, root: Path, identity: str) -> None:
        self.root = Path(root).expanduser()
        self.dir = safe_join(self.root, identity)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._manifest_path = safe_join(self.dir, "manifest.json")

    # -- manifest: key -> what we learned from that object at that fingerprint ----------
    def load_manifest(self) -> dict[str, Any]:
        try:
            doc = orjson.loads(self._manifest_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION:
            return {}
        objects = doc.get("objects")
        return objects if isinstance(objects, dict) else {}

    def save_manifest(self, objects: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        doc = {"version": CACHE_VERSION, "objects": objects, **(extra or {})}
        atomic_write_bytes(self._manifest_path, orjson.dumps(doc))

    # -- parts ----------------------------------------------------------------------------
    def part_path(self, digest: str, table: str) -> Path:
        if not digest.isalnum() or not table.replace("_", "").isalnum():
            raise UnsafePathError(f"refusing cache part name {digest!r}/{table!r}")
        return safe_join(self.dir, "parts", digest[:2], f"{digest}.{table}.parquet")

    def write_part(self, digest: str, table_name: str, table: pa.Table) -> str:
        import pyarrow.parquet as pq

        path = self.part_path(digest, table_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        pq.write_table(table, tmp, compression="snappy")
        os.replace(tmp, path)
        return path.relative_to(self.dir).as_posix()

    def read_part(self, relpath: str) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(safe_join(self.dir, *relpath.split("/")))

    def has_part(self, relpath: str) -> bool:
        try:
            return safe_join(self.dir, *relpath.split("/")).is_file()
        except UnsafePathError:
            return False

    # -- merged tables ----------------------------------------------------------------------
    def merged_path(self, table: str) -> Path:
        return safe_join(self.dir, "merged", f"{table}.arrow")

    def write_merged(self, tables: dict[str, pa.Table], fingerprint: str, stats: dict[str, Any] | None = None,
                     rank_parts: dict[str, Any] | None = None) -> None:
        """Write the merged tables, then ``merged.json`` (fingerprint, table names, stats,
        and ``rank_parts``: the tables kept per rank, as cache-relative part paths) last: a
        crash half-way leaves no ``merged.json`` that names missing tables."""
        import pyarrow as pa

        mdir = safe_join(self.dir, "merged")
        mdir.mkdir(parents=True, exist_ok=True)
        for old in mdir.glob("*.arrow"):  # e.g. a merged kineto_events of an earlier version
            if old.stem not in tables:
                old.unlink(missing_ok=True)
        # Uncompressed Arrow IPC: reopening the job is a memory map, not a decode (a big job
        # reopens in milliseconds); the compact copy of the data is the Parquet parts.
        for name, table in tables.items():
            path = self.merged_path(name)
            tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=1 << 20)
            os.replace(tmp, path)
        doc = {"version": CACHE_VERSION, "layout": MERGED_LAYOUT, "fingerprint": fingerprint, "tables": sorted(tables),
               "stats": stats, "rank_parts": rank_parts or {}}
        atomic_write_bytes(safe_join(mdir, "merged.json"), orjson.dumps(doc))

    def read_merged(self, fingerprint: str) -> tuple[LazyTables, dict[str, Any] | None, dict[str, Any]] | None:
        """The merged tables written for ``fingerprint`` (opened when first read), their
        stats and rank parts, or None when the cache holds another version of the job."""
        try:
            doc = orjson.loads(safe_join(self.dir, "merged", "merged.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(doc, dict) or doc.get("fingerprint") != fingerprint or doc.get("version") != CACHE_VERSION:
            return None
        if doc.get("layout") != MERGED_LAYOUT:  # merged by an earlier version: merge the parts again
            return None
        names = [n for n in doc.get("tables", []) if isinstance(n, str)]
        paths = {name: self.merged_path(name) for name in names}
        if not all(p.is_file() for p in paths.values()):
            return None
        stats = doc.get("stats")
        rank_parts = doc.get("rank_parts")
        if not isinstance(rank_parts, dict) or not all(self.has_part(p) for p in _part_paths(rank_parts)):
            return None
        return LazyTables(paths), stats if isinstance(stats, dict) else None, rank_parts

    def abspath(self, relpath: str) -> str:
        """A part's absolute path (what a map worker opens)."""
        return str(safe_join(self.dir, *relpath.split("/")))

    def save_json(self, name: str, obj: Any) -> None:
        atomic_write_bytes(safe_join(self.dir, name), orjson.dumps(obj, default=str))


def _part_paths(rank_parts: dict[str, Any]) -> list[str]:
    parts = rank_parts.get("parts")
    if not isinstance(parts, dict):
        return []
    return [p for paths in parts.values() if isinstance(paths, list) for p in paths if isinstance(p, str)]


class LazyTables(MutableMapping[str, "pa.Table"]):
    """Merged tables by name, each memory-mapped from its Arrow IPC file on first access.

    A report that needs two tables of a job maps two files; a summary of an unchanged job
    maps none. Tables set on it (e.g. the job's rule statuses) are kept in memory.
    """

    def __init__(self, paths: dict[str, Path]) -> None:
        self._paths = dict(paths)
        self._open: dict[str, pa.Table] = {}

    def __getitem__(self, name: str) -> pa.Table:
        if name not in self._open:
            path = self._paths[name]  # KeyError for unknown names, as a dict
            import pyarrow as pa

            try:
                self._open[name] = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
            except (OSError, pa.ArrowInvalid) as exc:
                raise StepscopeError(f"cache file {path} is unreadable ({exc}); delete the cache folder and ingest again") from None
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

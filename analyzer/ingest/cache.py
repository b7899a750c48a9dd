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
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from analyzer.errors import UnsafePathError

CACHE_VERSION = 2


def default_cache_root() -> Path:
    env = os.environ.get("SMPROF_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "smprof"


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
        path = self.part_path(digest, table_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        pq.write_table(table, tmp, compression="snappy")
        os.replace(tmp, path)
        return path.relative_to(self.dir).as_posix()

    def read_part(self, relpath: str) -> pa.Table:
        return pq.read_table(safe_join(self.dir, *relpath.split("/")))

    def has_part(self, relpath: str) -> bool:
        try:
            return safe_join(self.dir, *relpath.split("/")).is_file()
        except UnsafePathError:
            return False

    # -- merged tables ----------------------------------------------------------------------
    def merged_path(self, table: str) -> Path:
        return safe_join(self.dir, "merged", f"{table}.arrow")

    def write_merged(self, tables: dict[str, pa.Table], fingerprint: str) -> None:
        mdir = safe_join(self.dir, "merged")
        mdir.mkdir(parents=True, exist_ok=True)
        # Uncompressed Arrow IPC: reopening the job is a memory map, not a decode (a big job
        # reopens in milliseconds); the compact copy of the data is the Parquet parts.
        for name, table in tables.items():
            path = self.merged_path(name)
            tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table, max_chunksize=1 << 20)
            os.replace(tmp, path)
        atomic_write_bytes(
            safe_join(mdir, "merged.json"),
            orjson.dumps({"fingerprint": fingerprint, "tables": sorted(tables)}),
        )

    def read_merged(self, fingerprint: str) -> dict[str, pa.Table] | None:
        try:
            doc = orjson.loads(safe_join(self.dir, "merged", "merged.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if doc.get("fingerprint") != fingerprint:
            return None
        out: dict[str, pa.Table] = {}
        for name in doc.get("tables", []):
            try:
                out[name] = pa.ipc.open_file(pa.memory_map(str(self.merged_path(name)))).read_all()
            except (OSError, pa.ArrowInvalid):
                return None
        return out

    def save_json(self, name: str, obj: Any) -> None:
        atomic_write_bytes(safe_join(self.dir, name), orjson.dumps(obj, default=str))

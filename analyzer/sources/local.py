"""A job's output in a local folder (SageMaker layout, or any folder of traces)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from analyzer.errors import SourceError
from analyzer.sources.base import JobMetadata, SourceObject

#: SageMaker's description of the cluster, which ``stepscope run`` copies into its output
RESOURCE_CONFIG = "resourceconfig.json"


def resource_config(path: Path) -> tuple[str | None, int | None]:
    """The instance type (``current_instance_type``) and count (``hosts``) a copy of
    SageMaker's resourceconfig.json names; (None, None) when there is none or it is damaged:
    the job's cost then needs ``--instance-type``, never a failed report."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    itype = doc.get("current_instance_type")
    hosts = doc.get("hosts")
    return (
        itype if isinstance(itype, str) and itype else None,
        len(hosts) if isinstance(hosts, list) and hosts else None,
    )


class LocalSource:
    """Walks a folder; the fingerprint is size + mtime, so edits are noticed cheaply."""

    kind = "local"

    def __init__(self, root: str | os.PathLike[str], *, threads: int = 4) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.exists():
            raise SourceError(f"no such folder: {root}")
        if not self.root.is_dir():
            raise SourceError(f"not a folder: {root}")
        self.identity = "local-" + hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        self._threads = threads

    def metadata(self) -> JobMetadata:
        itype, count = resource_config(self.root / RESOURCE_CONFIG)
        return JobMetadata(
            name=self.root.name,
            source=str(self.root),
            kind=self.kind,
            instance_type=itype,
            instance_count=count,
            locations={"root": str(self.root)},
            extra={"instance_source": RESOURCE_CONFIG} if itype or count else {},
        )

    def list_objects(self) -> Iterator[SourceObject]:
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames.sort()
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for fname in sorted(filenames):
                path = Path(dirpath) / fname
                try:
                    st = path.stat()
                except OSError:
                    continue
                if not path.is_file():
                    continue
                key = path.relative_to(self.root).as_posix()
                yield SourceObject(
                    key=key,
                    size=st.st_size,
                    fingerprint=f"{st.st_size}-{st.st_mtime_ns}",
                    location=str(path),
                )

    def read(self, obj: SourceObject) -> bytes:
        return Path(obj.location).read_bytes()

    def worker_reader(self) -> LocalReader:
        """Dask workers open the files by their absolute paths: the folder must be mounted
        at the same path on every worker (a shared file system), as the cache must."""
        return LocalReader()

    def read_many(
        self, objs: Iterable[SourceObject]
    ) -> Iterator[tuple[SourceObject, bytes | Exception]]:
        def _one(o: SourceObject) -> tuple[SourceObject, bytes | Exception]:
            try:
                return o, self.read(o)
            except OSError as exc:
                return o, exc

        with ThreadPoolExecutor(self._threads) as pool:
            yield from pool.map(_one, objs)


@dataclass(frozen=True, slots=True)
class LocalReader:
    """Opens a local source's files by their absolute path, in whichever process runs it."""

    def handles(self, obj: SourceObject) -> bool:
        return True

    def read(self, obj: SourceObject) -> bytes:
        return Path(obj.location).read_bytes()

"""The Parquet cache: incremental refresh, reopen, and paths that cannot escape it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from analyzer.errors import SourceError, UnsafePathError
from analyzer.ingest import ingest
from analyzer.ingest.cache import SourceCache, safe_join
from analyzer.sources import open_source

LINE = (
    '{{"Type":"gpu","Name":"gpu{g}","Dimension":"GPUUtilization","Value":{v},'
    '"NodeId":"{node}","Timestamp":{ts}}}\n'
)


def _write_minute(root: Path, node: str, minute: int, samples: int = 4) -> Path:
    epoch = 1_700_000_000 + 60 * minute
    folder = root / "profiler-output" / "system" / "incremental" / "2023111422"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{epoch}.{node}.json"
    path.write_text(
        "".join(
            LINE.format(g=g, v=50 + g, node=node, ts=epoch + s * 0.5)
            for s in range(samples)
            for g in range(2)
        )
    )
    return path


def test_reingest_reads_only_new_or_changed(tmp_path: Path) -> None:
    job = tmp_path / "job"
    for m in range(3):
        _write_minute(job, "algo-1", m)
    cache = tmp_path / "cache"
    first = ingest(open_source(str(job)), cache_dir=cache).summary
    assert first["files_read"] == 3 and first["tables"]["system_metrics"] == 24

    again = ingest(open_source(str(job)), cache_dir=cache).summary
    assert again["files_read"] == 0 and again["files_from_cache"] == 3
    assert again["cache"]["reopened"] is True
    assert again["tables"] == first["tables"]

    # A running job: one new file and one rewritten file.
    _write_minute(job, "algo-1", 3)
    changed = _write_minute(job, "algo-1", 0, samples=6)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    refreshed = ingest(open_source(str(job)), cache_dir=cache).summary
    assert refreshed["files_read"] == 2 and refreshed["files_from_cache"] == 2
    assert refreshed["tables"]["system_metrics"] == 12 + 8 + 8 + 8

    # Deleted objects drop out of the dataset too.
    changed.unlink()
    after_delete = ingest(open_source(str(job)), cache_dir=cache).summary
    assert after_delete["tables"]["system_metrics"] == 24


def test_skips_are_cached_and_still_reported(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _write_minute(job, "algo-1", 0)
    bad = (
        job / "profiler-output" / "system" / "incremental" / "2023111422" / "1700000060.algo-1.json"
    )
    bad.write_text("{not json at all\n")
    cache = tmp_path / "cache"
    first = ingest(open_source(str(job)), cache_dir=cache).summary
    second = ingest(open_source(str(job)), cache_dir=cache).summary
    for s in (first, second):
        assert [sk["path"] for sk in s["skipped"]] == [str(bad)]
        assert "malformed" in s["skipped"][0]["reason"]
        assert s["tables"]["system_metrics"] == 8
    assert second["files_read"] == 0


def test_truncated_gzip_trace_is_a_clean_skip(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _write_minute(job, "algo-1", 0)
    (job / "tb").mkdir()
    (job / "tb" / "host_1.1700000000000.pt.trace.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    s = ingest(open_source(str(job)), cache_dir=tmp_path / "c").summary
    assert len(s["skipped"]) == 1 and "gzip" in s["skipped"][0]["reason"]
    assert s["tables"]["system_metrics"] == 8


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no files found"):
        ingest(open_source(str(tmp_path / "empty")), cache_dir=tmp_path / "c")


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b", "..", "x\x00y"])
def test_safe_join_refuses_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, bad)


def test_cache_identity_cannot_escape(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        SourceCache(tmp_path / "cache", "../../outside")
    assert not (tmp_path / "outside").exists()


def test_hostile_keys_never_become_cache_paths(tmp_path: Path) -> None:
    """Object keys are only hashed into cache names: a key full of ../ stays inside."""
    job = tmp_path / "job"
    _write_minute(job, "..%2F..%2Fevil", 0)
    cache = tmp_path / "cache"
    ingest(open_source(str(job)), cache_dir=cache)
    for path in tmp_path.rglob("*"):
        assert path.resolve().is_relative_to(tmp_path.resolve())
    written = [p for p in cache.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(cache.resolve()) for p in written)
    manifest = json.loads(next(cache.rglob("manifest.json")).read_text())
    assert any("evil" in k for k in manifest["objects"])


def test_unchanged_refresh_reads_no_table_and_imports_no_pyarrow(tmp_path: Path) -> None:
    """An unchanged job's refresh is a listing plus a cache check: the summary comes from the
    stats kept beside the merged tables, no table is opened, and (in a fresh process) the
    columnar stack is never imported. The reopened dataset still reads its tables on demand."""
    import subprocess
    import sys

    job = tmp_path / "job"
    for m in range(3):
        _write_minute(job, "algo-1", m)
        _write_minute(job, "algo-2", m)
    cache = tmp_path / "cache"
    first = ingest(open_source(str(job)), cache_dir=cache)

    again = ingest(open_source(str(job)), cache_dir=cache)
    assert again.summary["cache"]["reopened"] is True
    for key in ("tables", "nodes", "ranks", "node_names", "time_span"):
        assert again.summary[key] == first.summary[key], key
    tables = again.dataset.tables
    assert "system_metrics" in tables and not getattr(tables, "_open", {})  # nothing mapped yet
    sm = again.dataset.table("system_metrics")
    assert sm.num_rows == first.dataset.table("system_metrics").num_rows == 48
    assert again.dataset.compute_stats() == first.dataset.compute_stats()

    code = (
        "import json, sys\n"
        "from stepscope.cli import main\n"
        "sys.argv = ['stepscope', 'ingest', sys.argv[1], '--cache', sys.argv[2], '--json', '-q']\n"
        "try:\n    main()\n"
        "finally:\n"
        "    print('PYARROW' if any(m == 'pyarrow' or m.startswith('pyarrow.') "
        "for m in sys.modules) else 'NO-PYARROW', file=sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(job), str(cache)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "NO-PYARROW", out.stderr
    doc = json.loads(out.stdout)
    assert doc["cache"]["reopened"] is True and doc["tables"] == first.summary["tables"]
    assert doc["nodes"] == 2 and doc["time_span"] == first.summary["time_span"]

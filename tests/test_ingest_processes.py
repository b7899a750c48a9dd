"""Parsing in worker processes (what `stepscope ingest` does for many Kineto traces) gives the
very dataset that parsing in threads gives, and a worker that dies loses no file."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.ingest import ingest, pipeline
from analyzer.sources import open_source

REPO = Path(__file__).resolve().parents[1]
SAMPLE_TRACES = sorted((REPO / "samples" / "sample-job").glob("*.pt.trace.json.gz"))


@pytest.fixture(scope="module")
def many_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 ranks: the bundled sample's two real traces, renumbered."""
    if not SAMPLE_TRACES:
        pytest.skip("samples/sample-job has no traces")
    root = tmp_path_factory.mktemp("ranks") / "job"
    root.mkdir()
    docs = [json.loads(gzip.decompress(p.read_bytes())) for p in SAMPLE_TRACES]
    for r in range(12):
        doc = docs[r % len(docs)]
        doc["distributedInfo"] = {**doc.get("distributedInfo", {}), "rank": r, "world_size": 12}
        (root / f"algo-1_rank{r}.{1000 + r}.pt.trace.json.gz").write_bytes(
            gzip.compress(json.dumps(doc).encode())
        )
    assert sum(1 for _ in root.iterdir()) >= pipeline.PROCESS_MIN_FILES
    return root


def _tables(cache: Path, job: Path) -> dict[str, list[dict]]:
    ds = ingest(open_source(str(job)), cache_dir=cache).dataset  # reopens what was written
    out = {}
    for name in ("kineto_events", "kineto_traces", "steps"):
        t = ds.table(name)
        rows = t.drop_columns([c for c in ("file",) if c in t.column_names]).to_pylist()
        out[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return out


def test_processes_and_threads_give_the_same_dataset(many_ranks: Path, tmp_path: Path) -> None:
    cli = [
        sys.executable,
        "-m",
        "stepscope",
        "ingest",
        str(many_ranks),
        "-v",
        "--jobs",
        "2",
        "--no-progress",
    ]
    by_process = subprocess.run(
        [*cli, "--cache", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert by_process.returncode == 0, by_process.stderr
    assert "parsing 12 trace files in 2 worker processes" in by_process.stderr
    summary = ingest(
        open_source(str(many_ranks)), cache_dir=tmp_path / "p"
    ).summary  # reopened, nothing re-read
    assert summary["files_read"] == 0 and summary["files_from_cache"] == 12
    assert summary["ranks"] == 12 and summary["skipped"] == []

    threads = ingest(open_source(str(many_ranks)), cache_dir=tmp_path / "t", jobs=2).summary
    assert threads["tables"] == summary["tables"]
    assert _tables(tmp_path / "p", many_ranks) == _tables(tmp_path / "t", many_ranks)


def test_a_dead_worker_process_loses_no_file(
    many_ranks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the worker processes cannot be used, every file is still parsed (in threads)."""
    from concurrent.futures.process import BrokenProcessPool

    class Broken:
        def submit(self, *a: object, **k: object) -> None:
            raise BrokenProcessPool("simulated")

        def shutdown(self, *a: object, **k: object) -> None:
            pass

    monkeypatch.setattr(pipeline, "_process_pool", lambda tasks, jobs: Broken())
    s = ingest(
        open_source(str(many_ranks)), cache_dir=tmp_path / "c", jobs=2, processes=True
    ).summary
    assert s["files_read"] == 12 and s["skipped"] == [] and s["ranks"] == 12


def test_damaged_traces_in_worker_processes_are_counted_skips(
    many_ranks: Path, tmp_path: Path
) -> None:
    """A truncated trace among many: one line on stderr naming it, its neighbours kept, no
    traceback, exit 0."""
    import shutil

    job = tmp_path / "job"
    shutil.copytree(many_ranks, job)
    victim = sorted(job.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepscope",
            "ingest",
            str(job),
            "--cache",
            str(tmp_path / "c"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert [s["path"] for s in summary["skipped"]] == [str(victim)]
    assert summary["ranks"] == 11 and summary["files_ingested"] == 11

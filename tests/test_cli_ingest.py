"""``stepscope ingest`` as a user runs it: a real subprocess, exit codes, JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.fixtures import fixtures_dir

REQUIRED_KEYS = {"tables", "nodes", "ranks", "time_span", "files_read", "skipped"}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepscope", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_ingest_json_summary_contract(tmp_path: Path) -> None:
    root = fixtures_dir("sagemaker-debugger")
    proc = run("ingest", str(root), "--cache", str(tmp_path / "c"), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc.keys() >= REQUIRED_KEYS
    assert isinstance(doc["nodes"], int) and isinstance(doc["ranks"], int)
    assert doc["tables"]["system_metrics"] == 78
    assert doc["time_span"]["start"].startswith("2020-")
    # a cold cache reads every file it recognises; Debugger tensor files are read, then ignored
    assert doc["files_read"] >= doc["files_ingested"] > 0
    assert doc["files_from_cache"] == 0
    assert all({"path", "reason"} <= s.keys() for s in doc["skipped"])
    assert "Traceback" not in proc.stderr


def test_ingest_human_summary(tmp_path: Path) -> None:
    proc = run(
        "ingest", str(fixtures_dir("kineto", "resnet_single")), "--cache", str(tmp_path / "c")
    )
    assert proc.returncode == 0, proc.stderr
    assert "kineto_events" in proc.stdout and "ranks: 1" in proc.stdout


def test_human_summary_reads_in_a_pipe(tmp_path: Path) -> None:
    """Issue 14: "files: 3 ingested, 4 read now, 0 from cache, 1 ignored" wrapped mid-phrase at
    80 columns when piped. Now one count per short line, each saying what it counts, and a
    long path stays on its line. The numbers are the --json summary's (its keys unchanged)."""
    root = fixtures_dir("sagemaker-debugger")
    cache = tmp_path / ("a-cache-folder-with-a-long-name-" * 3)
    proc = run("ingest", str(root), "--cache", str(cache))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(
        run("ingest", str(root), "--cache", str(tmp_path / "cold"), "--json").stdout
    )  # cold too
    lines = [ln.strip() for ln in proc.stdout.splitlines()]
    assert f"files: {doc['files_listed']} found" in lines
    for n, what in (
        (doc["files_ingested"], "with profiler data"),
        (doc["ignored"], "not profiler output (ignored)"),
        (len(doc["skipped"]), "damaged (skipped)"),
    ):
        assert f"{n} {what}" in lines, proc.stdout
    assert f"{doc['files_read']} read now, 0 from the cache" in lines  # a cold cache
    assert any(ln.startswith(f"cache: {cache}/") for ln in lines)  # not broken at column 80
    long = [ln for ln in proc.stdout.splitlines() if len(ln) > 80]
    assert all(str(cache) in ln or str(root) in ln for ln in long), long


def test_missing_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = run("ingest", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("stepscope: error: no such folder")


def test_empty_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run("ingest", str(tmp_path / "empty"), "--cache", str(tmp_path / "c"))
    assert proc.returncode == 2
    assert "no files found" in proc.stderr and "Traceback" not in proc.stderr


def test_not_a_source_is_one_line_exit_2() -> None:
    proc = run("ingest", "not a job name!")
    assert proc.returncode == 2 and "s3:// prefix" in proc.stderr

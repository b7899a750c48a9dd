"""Bad usage of any command is one line, ``stepscope: error: ...``, exit 2 (issue 14, items 3-4).

Click's own format is three lines (Usage / Try / Error); the CLI promises one, the same
line every other stepscope error is, so a CI log can grep for it.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from stepscope.cli import COMMANDS, cli
from stepscope.cli.common import OneLineErrors
from stepscope.cli.dashboard import check_source

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepscope", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_one_line_errors(name: str) -> None:
    """A command added without ``cls=Command`` would show click's three lines when run alone."""
    module, attr = COMMANDS[name].split(":")
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, OneLineErrors), f"{name}: use @click.command(..., cls=Command)"
    assert isinstance(cli, OneLineErrors)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report"], "missing argument 'SOURCE' (see stepscope report --help)"),
        (["ingest"], "missing argument 'SOURCE' (see stepscope ingest --help)"),
        (["dashboard"], "missing argument 'SOURCE'"),
        (["run"], "missing argument 'COMMAND...'"),
        (["attach", "--sdk", "v9"], "invalid value for '--sdk'"),
        (["ingest", "x", "--jobs", "0"], "invalid value for '--jobs'"),
        (["report", "x", "--fromat", "md"], "no such option '--fromat'"),
        (["reprt", "x"], "no such command 'reprt' (see stepscope --help)"),
        (["export", "x"], "missing option '--perfetto' (see stepscope export --help)"),
    ],
)
def test_usage_error_is_one_line_exit_2(args: list[str], message: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("stepscope: error: ") and proc.stderr.count("\n") == 1, (
        proc.stderr
    )
    assert message in proc.stderr
    assert "Usage:" not in proc.stderr and proc.stdout == ""


def test_a_command_run_on_its_own_is_one_line_too() -> None:
    """``CliRunner().invoke(report_command)``, as the tests and ``python -c`` callers do."""
    from stepscope.cli.report import report_command

    res = CliRunner().invoke(report_command, [])
    assert (
        res.exit_code == 2
        and res.stderr == "stepscope: error: missing argument 'SOURCE' (see report --help)\n"
    )


def test_help_version_and_bare_group_are_unchanged() -> None:
    ok = run("report", "--help")
    assert ok.returncode == 0 and ok.stdout.startswith("Usage: stepscope report [OPTIONS] SOURCE")
    assert "-v, --verbose" in ok.stdout  # as on ingest
    assert run("--version").stdout.startswith("stepscope, version ")
    bare = run()
    assert (
        bare.returncode == 2 and "Commands:" in bare.stdout + bare.stderr
    )  # click's help, as before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["dashboard", "/nonexistent/job-folder"],
            "stepscope: error: no such folder: /nonexistent/job-folder\n",
        ),
        (
            ["dashboard", "samples/sample-job", "--baseline", "./no-such-run"],
            "stepscope: error: --baseline: no such folder: no-such-run\n",
        ),
        (["dashboard", "not a job name!"], "stepscope: error: cannot read 'not a job name!'"),
    ],
)
def test_dashboard_on_a_missing_folder_fails_at_once(args: list[str], message: str) -> None:
    """Issue 14: the server started and said "ready" on a folder that does not exist."""
    start = time.monotonic()
    proc = run(*args)
    assert proc.returncode == 2 and proc.stderr.startswith(message), proc.stderr
    assert proc.stderr.count("\n") == 1 and "starting" not in proc.stderr and proc.stdout == ""
    assert time.monotonic() - start < 30  # no server: the ready wait alone is 90 s


def test_dashboard_leaves_remote_sources_to_the_server() -> None:
    """S3 prefixes and job names need AWS to check: the page reports them (no call here)."""
    assert check_source("s3://bucket/prefix/") is None
    assert check_source("pytorch-training-2026-11-23-01-02-03-456") is None
    assert check_source(str(REPO / "samples" / "sample-job")) is None


def test_the_command_list_shows_whole_sentences() -> None:
    """``stepscope --help`` lists each command with a whole first sentence, never one cut
    mid-sentence with "..." (click's default)."""
    proc = subprocess.run(
        [sys.executable, "-m", "stepscope", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    listing = proc.stdout.split("Commands:", 1)[1]
    assert "..." not in listing.replace("torchrun ... train.py", "")
    entries: list[str] = []
    for line in listing.strip("\n").splitlines():
        if line.startswith("  ") and not line.startswith("   "):  # a command's first line
            entries.append(line.strip())
        elif entries:
            entries[-1] += " " + line.strip()
    assert len(entries) == len(COMMANDS) and all(e.endswith(".") for e in entries), entries

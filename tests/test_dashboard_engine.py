"""``stepscope dashboard SOURCE --engine dask://HOST:PORT`` (issue 12 part 2): the app's ingest
and the Job's per-rank map run on an existing Dask cluster.

A real ``distributed.LocalCluster`` (a scheduler and two worker processes on loopback), as in
``tests/test_engine_dask.py``. The dashboard's loaded job (``dashboards.data.load_job``, no
browser) must give the same findings on the cluster as on this machine, with the parse and
the map seen in the cluster's task stream; a bad ``--engine`` is one line, exit 2, and no
server is started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytest.importorskip("distributed")

from dashboards import data

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as lc:
        yield lc.scheduler_address


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(
        "DASK_SCHEDULER_ADDRESS", raising=False
    )  # "without the engine" means this machine
    data.clear()
    yield
    data.clear()


def _findings(job: data.JobData) -> list[dict[str, Any]]:
    return [f.model_dump(mode="json") for f in job.report.findings]


def test_the_dashboards_job_on_the_cluster_has_the_same_findings(
    cluster: str, tmp_path: Path
) -> None:
    from distributed import get_task_stream

    here = data.load_job(data.AppConfig(str(SAMPLE), cache_dir=str(tmp_path / "here")))
    assert here.job.engine is None
    cfg = data.AppConfig(
        str(SAMPLE),
        cache_dir=str(tmp_path / "dask"),  # its own cache: no report reused
        engine="dask://" + cluster.removeprefix("tcp://"),
    )
    client = data.engine(cfg.engine)
    assert client is not None
    with get_task_stream(client=client.connect()) as stream:
        there = data.load_job(cfg)
    assert not there.report_from_cache and there.job.engine is client
    keys = [str(t["key"]) for t in stream.data]
    assert (
        sum("parse_in_worker" in k for k in keys) >= 2
    )  # the two ranks' traces (at least) parsed there
    assert any("rank_summary" in k for k in keys)  # the per-rank map ran there too
    assert {t["worker"] for t in stream.data} <= set(client.connect().scheduler_info()["workers"])
    assert _findings(there) == _findings(here)
    assert {f["rule"] for f in _findings(there)} >= {"DataLoaderStall", "StragglerRank"}
    assert data.engine(cfg.engine) is client  # one connection per process, kept for later pages


def test_app_arguments_carry_the_engine() -> None:
    from stepscope.present.dashboard_options import DashboardOptions

    argv = DashboardOptions("SRC", engine="dask://10.0.0.5:8786").app_args()
    assert data.parse_args(argv).engine == "dask://10.0.0.5:8786"
    assert data.parse_args(DashboardOptions("SRC").app_args()).engine is None


def test_an_unreachable_engine_is_one_line_in_the_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import analyzer.engines as engines
    from analyzer.errors import StepscopeError

    monkeypatch.setattr(engines, "CONNECT_TIMEOUT_S", 1)
    cfg = data.AppConfig(str(SAMPLE), cache_dir=str(tmp_path), engine="dask://127.0.0.1:1")
    with pytest.raises(
        StepscopeError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1"
    ):
        data.load_job(cfg)


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        (
            "spark://h:1",
            "stepscope: error: unknown engine 'spark://h:1'; give local or dask://HOST:PORT",
        ),
        (
            "dask://host",
            "stepscope: error: engine 'dask://host' has no HOST:PORT; give e.g. dask://10.0.0.5:8786",
        ),
    ],
)
def test_a_bad_engine_starts_no_server(
    spec: str, line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stepscope.cli.dashboard as cli

    def no_server(*_a: object, **_k: object) -> None:
        raise AssertionError("the server was started")

    monkeypatch.setattr(cli.subprocess, "Popen", no_server)
    res = CliRunner().invoke(cli.dashboard_command, [str(SAMPLE), "--port", "0", "--engine", spec])
    assert res.exit_code == 2
    assert res.stderr.strip() == line


def test_an_unreachable_scheduler_fails_before_the_server(tmp_path: Path) -> None:
    """The command line itself: one line on stderr, exit 2, no "starting" line (no server)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepscope",
            "dashboard",
            str(SAMPLE),
            "--port",
            "0",
            "--cache",
            str(tmp_path),
            "--engine",
            "dask://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "DASK_SCHEDULER_ADDRESS": ""},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "stepscope: error: cannot reach the Dask scheduler at tcp://127.0.0.1:1"
    ), proc.stderr
    assert proc.stdout == ""

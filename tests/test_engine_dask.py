"""The per-rank map on an existing Dask cluster (issue 12 part 2): ``--engine dask://HOST:PORT``.

A real ``distributed.LocalCluster`` (a scheduler and two worker processes on loopback); the
cache is a local folder, which every worker of that cluster shares. The same job must give
the same report.json on both engines, a damaged file must be the same counted skip on a
worker as locally, and a missing package, an unreachable scheduler, a part the workers
cannot open or a task that kills its workers must each be one clear outcome.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("distributed")

from analyzer.analyses import rank_map
from analyzer.engines import DaskEngine, EngineError, parse_engine
from analyzer.job import Job
from analyzer.sources import open_source
from tests.support.golden import normalise

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-job"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Two worker processes that give up on a task after the first worker it kills (so the
    killed-worker test takes one restart, not Dask's default three)."""
    import dask
    from distributed import LocalCluster

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as lc,
    ):
        yield lc.scheduler_address


def _renumbered(doc: dict[str, Any], path: Path, rank: int, world: int) -> None:
    doc = {
        **doc,
        "distributedInfo": {
            **(doc.get("distributedInfo") or {}),
            "rank": rank,
            "world_size": world,
        },
    }
    path.write_bytes(gzip.compress(json.dumps(doc).encode(), 1))


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample (system metrics, ranks 0 and 1, real torch traces), its two traces
    again renumbered as ranks 2 and 3 of a second node, and one damaged trace (a counted skip).
    Small traces on purpose: the test is about the engine, not the size (test_scale.py)."""
    root = tmp_path_factory.mktemp("dask") / "job"
    shutil.copytree(SAMPLE, root)
    traces = sorted(SAMPLE.glob("*.pt.trace.json.gz"))
    assert len(traces) == 2
    for i, path in enumerate(traces):
        _renumbered(
            json.loads(gzip.decompress(path.read_bytes())),
            root / f"algo-2_rank{2 + i}.{1002 + i}.pt.trace.json.gz",
            2 + i,
            4,
        )
    whole = traces[0].read_bytes()
    (root / "algo-2_rank9.1009.pt.trace.json.gz").write_bytes(
        whole[: len(whole) // 3]
    )  # cut mid-file
    return root


def _report(source: Path, work: Path, name: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    out, cache = work / name / "out", work / name / "cache"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepscope",
            "report",
            str(source),
            "--out",
            str(out),
            "--format",
            "json",
            "--cache",
            str(cache),
            "-q",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "DASK_SCHEDULER_ADDRESS": ""},
    )
    assert proc.returncode in (0, 1), proc.stderr
    doc = orjson.loads((out / "report.json").read_bytes())
    return proc.returncode, normalise(doc, work / name), proc.stderr


def _local_report(source: Path, work: Path) -> tuple[int, dict[str, Any]]:
    """What ``stepscope report`` writes on the local engine, computed in this process (it
    has the whole stack imported already: a second command line would only add start-up)."""
    from rules.ruleset import load_ruleset
    from stepscope.render import document
    from stepscope.render.verdict import Verdict
    from stepscope.report.analyze import analyze

    report = analyze(
        str(source), load_ruleset(None), cache_dir=str(work / "local" / "cache"), detail=False
    ).report
    verdict = Verdict.of(report, "error")
    return (1 if verdict.verdict == "fail" else 0), normalise(
        orjson.loads(document.render(report, verdict)), work / "local"
    )


def test_both_engines_give_the_same_report(cluster: str, job_dir: Path, tmp_path: Path) -> None:
    """``stepscope report --engine dask://...`` against the local engine on the same job."""
    rc_local, local = _local_report(job_dir, tmp_path)
    rc_dask, dask_doc, err = _report(
        job_dir, tmp_path, "dask", "--engine", "dask://" + cluster.removeprefix("tcp://")
    )
    assert err == ""
    assert rc_dask == rc_local == 1  # the sample's stall and straggler are errors
    assert dask_doc == local
    # the job is what it should be: four ranks analysed, the damaged file a counted skip
    assert local["job"]["ranks"] == 4
    assert [s["path"].rsplit("/", 1)[-1] for s in local["job"]["skipped_files"]] == [
        "algo-2_rank9.1009.pt.trace.json.gz"
    ]


def test_the_map_runs_on_the_workers(
    cluster: str, job_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file read and parsed on the workers; several batches of ranks mapped there: the same
    frames as this process's map, and the tasks did run on the workers (their task stream)."""
    monkeypatch.setattr(rank_map, "BATCH_EVENTS", 1)  # one rank per task
    from distributed import get_task_stream

    with DaskEngine(cluster) as engine:
        with get_task_stream(client=engine.connect()) as parsing:
            on_dask = Job.open(
                open_source(str(job_dir)), cache_dir=str(tmp_path / "c"), engine=engine
            )
        parsed = [t for t in parsing.data if "_fetch_and_parse_in_worker" in str(t["key"])]
        # every file, read and parsed on a worker (the folder is shared), the damaged trace
        # too (its skip came back from a worker)
        assert len(parsed) == on_dask.summary["files_read"] == 7
        assert [s["path"].rsplit("/", 1)[-1] for s in on_dask.summary["skipped"]] == [
            "algo-2_rank9.1009.pt.trace.json.gz"
        ]
        assert len(on_dask._rank_tasks()) == 4
        with get_task_stream(client=engine.connect()) as stream:
            remote = on_dask.rank_summaries()
        ran = [t for t in stream.data if "rank_summary" in str(t["key"])]
        assert len(ran) == 4 and {t["worker"] for t in ran} <= set(
            engine.connect().scheduler_info()["workers"]
        )
    here = Job(on_dask.dataset, on_dask.summary).rank_summaries()
    for name in rank_map.SUMMARY_NAMES:
        assert remote[name].equals(here[name]), name
    assert set(remote["rank_step_breakdown"]["rank"]) == {0, 1, 2, 3}


def test_a_part_the_workers_cannot_open_is_one_clear_error(cluster: str, tmp_path: Path) -> None:
    with DaskEngine(cluster) as engine:
        job = Job.open(open_source(str(SAMPLE)), cache_dir=str(tmp_path / "c"), engine=engine)
        assert job.dataset.rank_parts is not None
        gone = job.dataset.rank_parts.parts[1][0]
        os.remove(gone)
        with pytest.raises(
            EngineError, match=r"cannot open .*must be on a file system every worker mounts"
        ):
            job.rank_summaries()


def _die_on_a_worker(x: int) -> int:
    """Kills the worker process that runs it; returns ``x * 2`` anywhere else."""
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:  # not on a worker: the client's own rerun
        return x * 2
    os._exit(1)


def test_a_task_that_kills_its_workers_runs_here(cluster: str) -> None:
    with DaskEngine(cluster) as engine:
        assert engine.map(_die_on_a_worker, [21]) == [42]
        assert engine.map(abs, [-1, -2]) == [
            1,
            2,
        ]  # the cluster still serves (the nanny restarted it)


def test_unreachable_scheduler_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzer.engines as engines

    monkeypatch.setattr(engines, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(
        EngineError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:1: "
    ):
        DaskEngine("tcp://127.0.0.1:1").connect()


def test_missing_package_is_one_line(tmp_path: Path) -> None:
    """A Python without ``distributed`` (a package that fails to import stands in for it)."""
    fake = tmp_path / "site" / "distributed"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named distributed')\n")
    env = {
        **os.environ,
        "PYTHONPATH": f"{fake.parent}{os.pathsep}{REPO}",
        "DASK_SCHEDULER_ADDRESS": "",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stepscope",
            "ingest",
            str(SAMPLE),
            "--cache",
            str(tmp_path / "c"),
            "--engine",
            "dask://127.0.0.1:8786",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "stepscope: error: --engine dask:// needs the 'distributed' package "
        "(pip install 'stepscope[dask]')"
    )
    assert not (tmp_path / "c").exists() or not any(
        (tmp_path / "c").rglob("*.parquet")
    )  # before any work


@pytest.mark.parametrize(
    ("spec", "env", "address"),
    [
        (None, "", None),
        ("local", "tcp://10.0.0.5:8786", None),
        (None, "10.0.0.5:8786", "tcp://10.0.0.5:8786"),
        (None, "tls://10.0.0.5:8786", "tls://10.0.0.5:8786"),
        ("dask://10.0.0.5:8786", "", "tcp://10.0.0.5:8786"),
        ("dask://tls://sched.internal:8786", "", "tls://sched.internal:8786"),
    ],
)
def test_engine_choice(
    spec: str | None, env: str, address: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", env)
    assert parse_engine(spec) == address


@pytest.mark.parametrize(
    "spec", ["dask://", "dask://host", "dask://host:port", "spark://h:1", "Dask"]
)
def test_bad_engine_is_a_usage_error(spec: str) -> None:
    with pytest.raises(EngineError, match="engine"):
        parse_engine(spec)

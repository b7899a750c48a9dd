"""The Dask engine against S3 (issue 12 part 2): workers read the job's objects from S3
themselves and write the dataset (Parquet parts, merged tables, manifest) under an
``s3://`` cache; the client sends tasks, not bytes, and does the reduce.

A real ``distributed.LocalCluster`` (a scheduler and two worker processes on loopback)
against moto's S3 server on 127.0.0.1; the workers reach the server through the
environment they inherit (``AWS_ENDPOINT_URL``, test credentials), as real workers use
their own credential chain. The cluster reschedules a task once after its worker died
(``allowed-failures: 1``), so a worker killed mid-task loses no file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

pytest.importorskip("distributed")
pytest.importorskip("moto.server", reason="moto[server] is not installed (dev extra)")

import analyzer.sources.s3 as s3_source
from analyzer.engines import DaskEngine
from analyzer.job import Job
from analyzer.sources import open_source
from analyzer.sources.base import SourceObject
from analyzer.sources.s3 import S3Reader, S3Source
from tests.support.aws_fixtures import ACCESS_KEY, REGION, SECRET_KEY, AwsEndpoint
from tests.support.golden import normalise
from tests.test_engine_dask import SAMPLE, _renumbered

pytestmark = pytest.mark.timeout(240)

DAMAGED = "algo-2_rank9.1009.pt.trace.json.gz"
#: the trace whose first worker dies while it holds it
DOOMED = "algo-2_rank2.1002.pt.trace.json.gz"


@pytest.fixture(scope="module")
def s3_env(
    aws_server: AwsEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AwsEndpoint]:
    """This process's AWS environment pointed at the server for the whole module, before the
    cluster starts, so its worker processes inherit it (what ``aws_endpoint`` does per test)."""
    from tests.support.aws_fixtures import _CLEARED

    folder = tmp_path_factory.mktemp("aws-home")
    for name in ("config", "credentials"):
        (folder / name).write_text("")
    with pytest.MonkeyPatch.context() as mp:
        for var in _CLEARED:
            mp.delenv(var, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(folder / "config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_ENDPOINT_URL", aws_server.url)
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("DASK_SCHEDULER_ADDRESS", "")
        yield aws_server


@pytest.fixture(scope="module")
def cluster(s3_env: AwsEndpoint) -> Iterator[str]:
    import dask
    from distributed import LocalCluster

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as lc,
    ):
        yield lc.scheduler_address


@pytest.fixture(scope="module")
def bucket(s3_env: AwsEndpoint, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sample job (system metrics, ranks 0 and 1), its two traces again as ranks 2 and 3
    of a second node, and one damaged trace, uploaded under ``s3://<bucket>/job/``."""
    import gzip
    import json

    root = tmp_path_factory.mktemp("dask-s3") / "job"
    root.mkdir()
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
    (root / DAMAGED).write_bytes(whole[: len(whole) // 3])  # cut mid-file
    name = s3_env.create_bucket()
    for base in (SAMPLE, root):
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            s3_env.s3.put_object(
                Bucket=name, Key=f"job/{path.relative_to(base).as_posix()}", Body=path.read_bytes()
            )
    return name


@pytest.fixture
def client_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every source object whose bytes this (the client's) process fetched from S3."""
    fetched: list[str] = []
    real = s3_source.get_object

    def counting(client: Any, obj: SourceObject) -> bytes:
        fetched.append(obj.key)
        return real(client, obj)

    monkeypatch.setattr(s3_source, "get_object", counting)
    return fetched


def _keys(s3: AwsEndpoint, bucket: str, prefix: str) -> list[str]:
    pages = s3.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _local_report(source: str, cache: str, work: Path) -> tuple[int, dict[str, Any]]:
    """The local engine's report.json on the same source (here an s3:// cache too)."""
    from rules.ruleset import load_ruleset
    from stepscope.render import document
    from stepscope.render.verdict import Verdict
    from stepscope.report.analyze import analyze

    report = analyze(source, load_ruleset(None), cache_dir=cache, detail=False).report
    verdict = Verdict.of(report, "error")
    return (1 if verdict.verdict == "fail" else 0), normalise(
        orjson.loads(document.render(report, verdict)), work
    )


def _dask_report(source: str, cache: str, scheduler: str, out: Path) -> tuple[int, dict[str, Any]]:
    """``stepscope report SOURCE --engine dask://... --cache s3://...``, in this process
    (so this process's S3 reads can be counted)."""
    from stepscope.cli import cli

    engine = "dask://" + scheduler.removeprefix("tcp://")
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        result = CliRunner().invoke(
            cli,
            [
                "report",
                source,
                "--out",
                str(out),
                "--format",
                "json",
                "--cache",
                cache,
                "--engine",
                engine,
                "-q",
            ],
            prog_name="stepscope",
        )
    finally:  # the command sets up logging for a process of its own: give pytest's back
        root.setLevel(level)
        root.handlers[:] = handlers
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, normalise(orjson.loads((out / "report.json").read_bytes()), out.parent)


def test_workers_read_s3_and_write_the_dataset_to_s3(
    cluster: str, bucket: str, s3_env: AwsEndpoint, tmp_path: Path, client_reads: list[str]
) -> None:
    """The same report.json as the local engine; every object read on a worker, none here;
    the dataset's parts, merged tables and manifest under the cache prefix; a reopen reads
    nothing again."""
    source = f"s3://{bucket}/job"
    rc_local, local = _local_report(source, f"s3://{bucket}/cache-local", tmp_path)
    assert client_reads  # the local engine reads here...
    client_reads.clear()
    rc_dask, on_dask = _dask_report(source, f"s3://{bucket}/cache-dask", cluster, tmp_path / "out")
    assert client_reads == []  # ...the Dask engine's workers read every object themselves
    assert rc_dask == rc_local == 1  # the sample's stall and straggler are errors
    assert on_dask == local
    assert on_dask["job"]["ranks"] == 4
    assert [s["path"] for s in on_dask["job"]["skipped_files"]] == [f"s3://{bucket}/job/{DAMAGED}"]

    written = _keys(s3_env, bucket, "cache-dask/")
    (manifest_key,) = [k for k in written if k.endswith("/manifest.json")]
    folder = manifest_key.removesuffix("manifest.json")
    manifest = orjson.loads(s3_env.s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())[
        "objects"
    ]
    parts = [p for e in manifest.values() if e["status"] == "ok" for p in e["parts"].values()]
    assert {e["status"] for e in manifest.values()} == {"ok", "skipped"}
    assert len(parts) >= 6 and {folder + p for p in parts} <= set(
        written
    )  # every part the workers wrote
    assert {folder + "merged/merged.json", folder + "merged/system_metrics.arrow"} <= set(written)
    assert all(k.startswith(folder) for k in written)  # names from hashes: nothing left the prefix
    assert not any(tmp_path.rglob("*.parquet"))

    with DaskEngine(cluster) as engine:
        again = Job.open(open_source(source), cache_dir=f"s3://{bucket}/cache-dask", engine=engine)
        summaries = again.rank_summaries()  # the rank map's workers read the rank parts from S3
    assert again.summary["files_read"] == 0 and again.summary["cache"]["reopened"] is True
    assert again.summary["cache"]["dir"] == f"s3://{bucket}/{folder}"
    assert set(summaries["rank_step_breakdown"]["rank"]) == {0, 1, 2, 3}
    assert client_reads == []


@dataclass(frozen=True)
class DyingReader:
    """An S3 reader whose worker process dies right after fetching ``key``, the first time
    (the marker file says it has died once): a worker lost mid-task."""

    inner: S3Reader
    key: str
    marker: str

    def handles(self, obj: SourceObject) -> bool:
        return self.inner.handles(obj)

    def read(self, obj: SourceObject) -> bytes:
        data = self.inner.read(obj)
        if obj.key == self.key and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
        return data


def test_a_worker_killed_mid_task_loses_no_file(
    cluster: str,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client_reads: list[str],
) -> None:
    """Dask reruns the dead worker's task on the other worker: every rank is in the
    dataset, the damaged file is still the one counted skip, and nothing fell back here."""
    marker = tmp_path / "died"
    real = S3Source.worker_reader
    monkeypatch.setattr(
        S3Source, "worker_reader", lambda self: DyingReader(real(self), DOOMED, str(marker))
    )
    with DaskEngine(cluster) as engine:
        job = Job.open(
            open_source(f"s3://{bucket}/job"),
            cache_dir=f"s3://{bucket}/cache-killed",
            engine=engine,
        )
    assert marker.exists()  # a worker did die holding the doomed trace
    assert client_reads == []  # the rerun was Dask's, on a worker, not this process's fallback
    assert job.summary["rank_ids"] == [0, 1, 2, 3]
    assert job.summary["files_ingested"] == job.summary["files_read"] - 1
    assert [s["path"].rsplit("/", 1)[-1] for s in job.summary["skipped"]] == [DAMAGED]


def test_an_object_a_worker_cannot_read_is_the_same_counted_skip(
    cluster: str, s3_env: AwsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object rewritten after it was listed: S3 refuses the listed ETag on the worker as
    it does here; the same "could not read" skip on both engines, tried again next run."""
    name = s3_env.create_bucket()
    for path in sorted(SAMPLE.glob("*.pt.trace.json.gz")):
        s3_env.s3.put_object(Bucket=name, Key=f"job/{path.name}", Body=path.read_bytes())
    changed = sorted(SAMPLE.glob("*.pt.trace.json.gz"))[1].name
    listing = S3Source.list_objects
    rewrites: list[int] = []

    def listed_then_rewritten(self: S3Source) -> Iterator[SourceObject]:
        objs = list(listing(self))
        rewrites.append(len(rewrites))
        s3_env.s3.put_object(
            Bucket=name, Key=f"job/{changed}", Body=f"rewritten {len(rewrites)}".encode()
        )
        yield from objs

    monkeypatch.setattr(S3Source, "list_objects", listed_then_rewritten)
    here = Job.open(open_source(f"s3://{name}/job"), cache_dir=f"s3://{name}/cache-here").summary
    with DaskEngine(cluster) as engine:
        there = Job.open(
            open_source(f"s3://{name}/job"), cache_dir=f"s3://{name}/cache-dask", engine=engine
        ).summary
    assert (
        there["skipped"]
        == here["skipped"]
        == [
            {
                "path": f"s3://{name}/job/{changed}",
                "reason": f"s3://{name}/job/{changed} changed while it was being read: run again",
            }
        ]
    )
    assert there["rank_ids"] == here["rank_ids"]


def test_workers_that_cannot_read_the_source_lose_no_file(
    cluster: str,
    bucket: str,
    client_reads: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker-side setup problem (here: a --profile the workers do not have) is not every
    file's own fault: each file a worker cannot read is read and parsed here, said once in
    the log, and the job has every rank; only the damaged trace is a skip."""
    import dataclasses

    import analyzer.ingest.pipeline as pipeline

    real = pipeline.worker_reader

    def without_the_profile(source: Any) -> Any:
        reader = real(source)
        assert isinstance(reader, S3Reader)
        return dataclasses.replace(reader, profile="no-such-profile-on-the-workers")

    monkeypatch.setattr(pipeline, "worker_reader", without_the_profile)
    with DaskEngine(cluster) as engine, caplog.at_level(logging.WARNING, logger="stepscope.ingest"):
        summary = Job.open(
            open_source(f"s3://{bucket}/job"),
            cache_dir=f"s3://{bucket}/cache-no-profile",
            engine=engine,
        ).summary
    assert summary["rank_ids"] == [0, 1, 2, 3]
    assert [s["path"].rsplit("/", 1)[-1] for s in summary["skipped"]] == [DAMAGED]
    assert len(client_reads) == summary["files_read"]  # every file came through this machine
    told = [
        r.getMessage() for r in caplog.records if "Dask workers could not read" in r.getMessage()
    ]
    assert len(told) == 1 and "no-such-profile-on-the-workers" in told[0], told


@pytest.mark.parametrize(
    ("identity", "name"),
    [
        ("../up", "../manifest.json"),
        ("a/b", "parts/../../x.parquet"),
        ("..", "/abs.json"),
        ("", "merged/x\x00y.arrow"),
    ],
)
def test_s3_cache_names_cannot_leave_the_prefix(identity: str, name: str) -> None:
    """The S3 cache's keys are checked like the folder's paths, before any request."""
    from analyzer.errors import UnsafePathError
    from analyzer.ingest.cache import S3Store, SourceCache

    with pytest.raises(UnsafePathError):
        SourceCache("s3://bucket/prefix", identity)
    store = S3Store("bucket", "prefix/s3-0123/")
    with pytest.raises(UnsafePathError):
        store.key(name)
    assert not store.exists(name)
    assert store.key(SourceCache.part_name("ab" * 32, "kineto_events")).startswith(
        "prefix/s3-0123/parts/ab/"
    )


def test_the_evaluated_report_is_kept_in_an_s3_cache(bucket: str, s3_env: AwsEndpoint) -> None:
    """The dashboard keeps its evaluated report beside the dataset (``cache_key``): with an
    ``s3://`` cache that is under the same prefix, and a second open reads it from there."""
    from rules.ruleset import load_ruleset
    from stepscope.report.analyze import analyze

    cache = f"s3://{bucket}/report-cache"
    first = analyze(
        f"s3://{bucket}/job", load_ruleset(None), cache_dir=cache, cache_key="k", detail=False
    )
    assert not first.from_cache
    kept = [k for k in _keys(s3_env, bucket, "report-cache/") if "/dashboard/report-" in k]
    assert len(kept) == 1, kept
    again = analyze(
        f"s3://{bucket}/job", load_ruleset(None), cache_dir=cache, cache_key="k", detail=False
    )
    assert again.from_cache
    assert again.report.model_dump() == first.report.model_dump()


def test_s3_store_answers_like_the_folder_at_its_top_level(bucket: str, tmp_path: Path) -> None:
    """``exists``/``names`` of a top-level name (``manifest.json``) on S3, as on a folder."""
    from analyzer.ingest.cache import LocalStore, S3Store

    for store in (S3Store(bucket, "top-level/"), LocalStore(tmp_path / "top-level")):
        assert not store.exists("manifest.json")
        store.put("manifest.json", b"{}")
        store.put("merged/merged.json", b"{}")
        assert store.exists("manifest.json") and store.exists("merged/merged.json")
        assert store.names("") == ["manifest.json"] and store.names("merged") == ["merged.json"]


def test_worker_readers_pin_only_an_endpoint_set_on_purpose() -> None:
    """A test server or MinIO endpoint travels to the workers; AWS's own S3 endpoint is left
    for each worker to resolve (its region, VPC endpoint, FIPS)."""
    from analyzer.sources.s3 import _own_endpoint

    assert _own_endpoint("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert _own_endpoint("https://minio.internal:9000") == "https://minio.internal:9000"
    assert _own_endpoint("https://s3.amazonaws.com") is None
    assert _own_endpoint("https://s3.eu-west-1.amazonaws.com") is None
    assert _own_endpoint("https://s3.cn-north-1.amazonaws.com.cn") is None
    assert _own_endpoint(None) is None

"""S3Source against a real local S3 endpoint (moto server): listing, reading, errors."""

from __future__ import annotations

import hashlib
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from analyzer.errors import SourceError
from analyzer.sources import open_source
from analyzer.sources.base import Source, SourceObject
from analyzer.sources.s3 import NO_CREDENTIALS_MESSAGE, S3Source, aws_error, parse_s3_url
from tests.support.aws_fixtures import AwsEndpoint

N_KEYS = 1105  # more than one ListObjectsV2 page


def _body(i: int) -> bytes:
    return f'{{"i": {i}}}\n'.encode()


@pytest.fixture(scope="module")
def big_bucket(aws_server: AwsEndpoint) -> str:
    """A bucket with N_KEYS objects under job/, plus a folder marker and look-alike prefix."""
    bucket = aws_server.create_bucket()
    s3 = aws_server.s3

    def put(i: int) -> None:
        s3.put_object(Bucket=bucket, Key=f"job/d{i % 7}/f{i:05d}.json", Body=_body(i))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(N_KEYS)))
    s3.put_object(Bucket=bucket, Key="job/d0/", Body=b"")  # console "folder"
    s3.put_object(Bucket=bucket, Key="job2/not-mine.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="other/x.json", Body=b"{}")
    return bucket


def _expected_keys() -> set[str]:
    return {f"d{i % 7}/f{i:05d}.json" for i in range(N_KEYS)}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line(exc: pytest.ExceptionInfo[SourceError]) -> str:
    text = str(exc.value)
    assert text and "\n" not in text and "Traceback" not in text
    return text


# --------------------------------------------------------------------------- listing


def test_lists_every_page_with_etag_fingerprints(
    aws_endpoint: AwsEndpoint, big_bucket: str
) -> None:
    src = S3Source(f"s3://{big_bucket}/job")
    assert isinstance(src, Source)
    objs = list(src.list_objects())
    assert len(objs) == N_KEYS
    assert {o.key for o in objs} == _expected_keys()
    for o in objs[:50]:
        i = int(o.key.rsplit("f", 1)[1].split(".")[0])
        assert o.fingerprint == hashlib.md5(_body(i)).hexdigest()  # simple-put ETag, no quotes
        assert o.size == len(_body(i))
        assert o.location == f"s3://{big_bucket}/job/{o.key}"


def test_prefix_is_a_folder(aws_endpoint: AwsEndpoint, big_bucket: str) -> None:
    a = S3Source(f"s3://{big_bucket}/job")
    b = S3Source(f"s3://{big_bucket}/job/")
    c = S3Source(f"s3://{big_bucket}//job//")
    assert a.identity == b.identity == c.identity
    assert a.identity == "s3-" + hashlib.sha256(f"s3://{big_bucket}/job/".encode()).hexdigest()[:16]
    keys_b = [o.key for o in b.list_objects()]
    assert [o.key for o in a.list_objects()] == keys_b
    assert "not-mine.json" not in {k.rsplit("/", 1)[-1] for k in keys_b}  # job2/ excluded
    whole = {o.key for o in S3Source(f"s3://{big_bucket}").list_objects()}
    assert len(whole) == N_KEYS + 2
    assert {"job2/not-mine.json", "other/x.json", "job/d1/f00001.json"} <= whole
    meta = a.metadata()
    assert (meta.kind, meta.name, meta.locations) == (
        "s3",
        "job",
        {"root": f"s3://{big_bucket}/job/"},
    )


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://b") == ("b", "")
    assert parse_s3_url("s3://b/") == ("b", "")
    assert parse_s3_url("s3://b/a/b") == ("b", "a/b/")
    for bad in ("s3://", "s3:///x", "http://b/x"):
        with pytest.raises(SourceError):
            parse_s3_url(bad)


def test_from_prefixes_gives_role_keys(aws_endpoint: AwsEndpoint, big_bucket: str) -> None:
    src = S3Source.from_prefixes(
        {"main": f"s3://{big_bucket}/job/d3", "side": f"s3://{big_bucket}/other"}
    )
    keys = [o.key for o in src.list_objects()]
    assert "side/x.json" in keys
    assert len([k for k in keys if k.startswith("main/")]) == len(
        [k for k in _expected_keys() if k.startswith("d3/")]
    )
    assert all(k.startswith(("main/", "side/")) for k in keys)
    assert src.metadata().locations == {
        "main": f"s3://{big_bucket}/job/d3/",
        "side": f"s3://{big_bucket}/other/",
    }
    with pytest.raises(ValueError):
        S3Source.from_prefixes({"a/b": f"s3://{big_bucket}/x"})


# --------------------------------------------------------------------------- reading


def test_read_and_parallel_read_many(aws_endpoint: AwsEndpoint, big_bucket: str) -> None:
    src = S3Source(f"s3://{big_bucket}/job", threads=8)
    objs = sorted(src.list_objects(), key=lambda o: o.key)
    first = objs[0]
    assert src.read(first) == _body(int(first.key.rsplit("f", 1)[1].split(".")[0]))

    ghost = SourceObject("d0/ghost.json", 1, "x", f"s3://{big_bucket}/job/d0/ghost.json")
    wanted = [*objs[:150], ghost, *objs[150:200]]
    results = list(src.read_many(iter(wanted)))
    assert [o for o, _ in results] == wanted  # input order, every object once
    for o, data in results:
        if o is ghost:
            assert isinstance(data, SourceError) and "deleted after it was listed" in str(data)
        else:
            assert data == _body(int(o.key.rsplit("f", 1)[1].split(".")[0]))
    # stopping early does not hang or raise
    it = src.read_many(objs)
    assert next(it)[0] == objs[0]
    it.close()  # type: ignore[attr-defined]


def test_read_refuses_changed_object(aws_endpoint: AwsEndpoint) -> None:
    bucket = aws_endpoint.create_bucket()
    aws_endpoint.s3.put_object(Bucket=bucket, Key="p/a.json", Body=b"old")
    src = S3Source(f"s3://{bucket}/p")
    (obj,) = src.list_objects()
    aws_endpoint.s3.put_object(Bucket=bucket, Key="p/a.json", Body=b"new!")
    with pytest.raises(SourceError, match="changed while it was being read"):
        src.read(obj)


# --------------------------------------------------------------------------- configuration


def test_client_config_and_endpoint_from_env(
    aws_endpoint: AwsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = S3Source("s3://anything/x")
    client: Any = src._client
    assert client.meta.endpoint_url == aws_endpoint.url
    assert client.meta.config.retries["mode"] == "standard"
    assert client.meta.config.retries["total_max_attempts"] == 11  # 10 retries
    assert client.meta.config.max_pool_connections >= 16
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")  # the user's setting wins over the default
    again: Any = S3Source("s3://anything/x")._client
    assert again.meta.config.retries["total_max_attempts"] == 3


def test_service_specific_endpoint_env_wins(
    aws_endpoint: AwsEndpoint, big_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", aws_endpoint.url)
    assert len(list(S3Source(f"s3://{big_bucket}/job/d0", max_attempts=1).list_objects())) > 100


def test_open_source_dispatches_s3(aws_endpoint: AwsEndpoint, big_bucket: str) -> None:
    src = open_source(f"s3://{big_bucket}/other/", region="us-west-2")
    assert isinstance(src, S3Source)
    assert [o.key for o in src.list_objects()] == ["x.json"]


# --------------------------------------------------------------------------- errors


def test_no_credentials(aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    src = S3Source("s3://bucket/prefix")
    with pytest.raises(SourceError) as exc:
        list(src.list_objects())
    assert _one_line(exc) == NO_CREDENTIALS_MESSAGE


def test_unknown_profile(aws_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SourceError) as exc:
        S3Source("s3://bucket/prefix", profile="no-such-profile")
    assert "AWS profile 'no-such-profile' not found" in _one_line(exc)
    monkeypatch.setenv("AWS_PROFILE", "also-missing")
    with pytest.raises(SourceError, match="'also-missing' not found"):
        S3Source("s3://bucket/prefix")


def test_missing_bucket(aws_endpoint: AwsEndpoint) -> None:
    with pytest.raises(SourceError) as exc:
        list(S3Source("s3://stepscope-no-such-bucket/p").list_objects())
    assert "S3 bucket 'stepscope-no-such-bucket' does not exist" in _one_line(exc)


def test_empty_prefix(aws_endpoint: AwsEndpoint, big_bucket: str) -> None:
    with pytest.raises(SourceError) as exc:
        list(S3Source(f"s3://{big_bucket}/nothing-here").list_objects())
    assert _one_line(exc) == f"no objects under s3://{big_bucket}/nothing-here/: check the path"


def test_unreachable_endpoint(aws_endpoint: AwsEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(SourceError) as exc:
        list(S3Source("s3://bucket/p").list_objects())
    text = _one_line(exc)
    assert text.startswith(f"cannot reach the S3 endpoint http://127.0.0.1:{port}")
    assert "AWS_ENDPOINT_URL" in text


def _client_error(code: str, status: int, retries: int = 0, message: str = "x") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retries},
    }
    return ClientError(response, "ListObjectsV2")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (
            "AccessDenied",
            403,
            "access denied to s3://b/p/: the AWS identity in use lacks permission",
        ),
        ("403", 403, "access denied to s3://b/p/"),
        ("SlowDown", 503, "S3 kept throttling requests for s3://b/p/ (SlowDown) after 10 attempts"),
        ("InvalidAccessKeyId", 403, "AWS rejected the credentials (InvalidAccessKeyId)"),
        ("InternalError", 500, "S3 error InternalError for s3://b/p/: some detail"),
    ],
)
def test_client_error_messages(code: str, status: int, expected: str) -> None:
    err = aws_error(
        _client_error(code, status, retries=9, message="some\ndetail"), what="s3://b/p/"
    )
    assert isinstance(err, SourceError)
    assert str(err).startswith(expected)
    assert "\n" not in str(err)

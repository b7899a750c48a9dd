"""A job's output under one or more ``s3://`` prefixes.

The AWS plumbing the SageMaker job source shares (session, client, error translation) lives
here too, so both sources resolve credentials, retries and endpoints the same way and give
the same one-line messages.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from analyzer.errors import SourceError
from analyzer.sources.base import JobMetadata, SourceObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_THREADS",
    "NO_CREDENTIALS_MESSAGE",
    "S3Prefix",
    "S3Reader",
    "S3Source",
    "aws_client",
    "aws_error",
    "aws_session",
    "cached_client",
    "parse_s3_url",
]

DEFAULT_THREADS = 16
DEFAULT_MAX_ATTEMPTS = 10

NO_CREDENTIALS_MESSAGE = (
    "no AWS credentials found: set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
    "or run aws sso login"
)

_THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
    }
)
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AllAccessDisabled",
        "Forbidden",
        "AuthorizationError",
        "UnauthorizedOperation",
    }
)
_BAD_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "TokenRefreshRequired",
    }
)


# --------------------------------------------------------------------------- AWS plumbing


def aws_session(profile: str | None, region: str | None) -> boto3.Session:
    """A boto3 session; a missing profile becomes a SourceError here, not a traceback later.

    Nothing about the endpoint is set, so ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL_SAGEMAKER`` (and ``endpoint_url`` in the profile) keep working.
    """
    try:
        session = boto3.Session(
            botocore_session=botocore.session.get_session(),
            profile_name=profile,
            region_name=region,
        )
        # Profiles are resolved lazily; touch the scoped config so an unknown profile
        # (from --profile or AWS_PROFILE) fails now, with its name.
        session._session.get_scoped_config()
    except ProfileNotFound as exc:
        name = exc.kwargs.get("profile") or profile or os.environ.get("AWS_PROFILE")
        raise SourceError(
            f"AWS profile {name!r} not found: check --profile / AWS_PROFILE against "
            "~/.aws/config (aws configure list-profiles)"
        ) from None
    except BotoCoreError as exc:
        raise aws_error(exc, what="the AWS configuration") from None
    return session


def _retries(session: boto3.Session, max_attempts: int | None) -> dict[str, Any]:
    """Standard-mode retries: the explicit argument, else the user's AWS_MAX_ATTEMPTS /
    profile ``max_attempts`` (both count *all* attempts), else 10 retries after the first try.
    """
    if max_attempts is None:
        try:
            configured = session._session.get_config_variable("max_attempts")
        except (BotoCoreError, ValueError):
            configured = None
        max_attempts = int(configured) if configured else None
    if max_attempts is None:
        return {"mode": "standard", "max_attempts": DEFAULT_MAX_ATTEMPTS}
    return {"mode": "standard", "total_max_attempts": max(1, max_attempts)}


def aws_client(
    session: boto3.Session,
    service: str,
    *,
    threads: int = DEFAULT_THREADS,
    max_attempts: int | None = None,
    endpoint_url: str | None = None,
) -> Any:
    """A client with standard-mode retries (throttling is retried with backoff) and a
    connection pool large enough that ``threads`` parallel downloads never wait for one.

    The connect timeout is short because every attempt waits for it: with the default 60 s,
    an unreachable endpoint would take ten minutes of retries to report.
    """
    config = Config(
        retries=_retries(session, max_attempts),  # type: ignore[arg-type]
        max_pool_connections=max(10, threads),
        connect_timeout=10,
    )
    try:
        return session.client(service, config=config, endpoint_url=endpoint_url)  # type: ignore[call-overload]
    except NoRegionError:
        raise SourceError(
            "no AWS region set: pass --region or set AWS_REGION / AWS_DEFAULT_REGION "
            "(or region in the profile)"
        ) from None
    except BotoCoreError as exc:
        raise aws_error(exc, what=f"the {service} client") from None


_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()
#: the environment a client is made from: a process whose environment changes (a test, a
#: long-lived dashboard after a profile switch) gets a new client, never a stale one
_CLIENT_ENV = (
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_MAX_ATTEMPTS",
)


def cached_client(
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    max_attempts: int | None = None,
) -> Any:
    """This process's S3 client for one configuration, made on first use.

    Why: a Dask worker runs many small tasks that each read or write a few objects; one
    client per process (boto3 clients are thread-safe) keeps its connection pool warm, and
    nothing about it is ever pickled: each worker makes its own, with its own credentials.
    """
    config = (
        profile,
        region,
        endpoint_url,
        max_attempts,
        *(os.environ.get(v) for v in _CLIENT_ENV),
    )
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            session = aws_session(profile, region)
            client = _clients[config] = aws_client(
                session, "s3", max_attempts=max_attempts, endpoint_url=endpoint_url
            )
        return client


def _code(exc: ClientError) -> tuple[str, str, int, int]:
    err: Mapping[str, Any] = exc.response.get("Error", {}) or {}
    meta: Mapping[str, Any] = exc.response.get("ResponseMetadata", {}) or {}
    message = " ".join(str(err.get("Message") or "").split())
    return (
        str(err.get("Code") or ""),
        message,
        int(meta.get("HTTPStatusCode") or 0),
        int(meta.get("RetryAttempts") or 0),
    )


def aws_error(exc: BaseException, *, what: str, service: str = "S3") -> SourceError:
    """Translate a boto error into a one-line SourceError that says what to do.

    ``what`` names the thing being accessed (an s3:// URL, a job) so the message can be read
    without context. Codes that need a caller-specific message (NoSuchBucket, unknown job)
    are handled by the callers before they fall back to this.
    """
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return SourceError(NO_CREDENTIALS_MESSAGE)
    if isinstance(exc, ProfileNotFound):
        return SourceError(
            f"AWS profile {exc.kwargs.get('profile')!r} not found: check --profile / AWS_PROFILE"
        )
    if isinstance(exc, NoRegionError):
        return SourceError(
            "no AWS region set: pass --region or set AWS_REGION / AWS_DEFAULT_REGION"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        endpoint = exc.kwargs.get("endpoint_url") or "?"
        return SourceError(
            f"cannot reach the {service} endpoint {endpoint} for {what}: check the network, "
            "--region and AWS_ENDPOINT_URL"
        )
    if isinstance(exc, ReadTimeoutError | ConnectionClosedError):
        endpoint = exc.kwargs.get("endpoint_url") or "?"
        return SourceError(
            f"the {service} endpoint {endpoint} stopped answering for {what}: check the network "
            "and retry"
        )
    if isinstance(exc, ClientError):
        code, message, status, retries = _code(exc)
        if code in _THROTTLE_CODES or status in (429, 503):
            attempts = f"{retries + 1} attempt" + ("s" if retries else "")
            return SourceError(
                f"{service} kept throttling requests for {what} ({code or status}) after "
                f"{attempts}: wait a while and retry, or raise AWS_MAX_ATTEMPTS"
            )
        if code in _DENIED_CODES or (status == 403 and code not in _BAD_CREDENTIAL_CODES):
            return SourceError(
                f"access denied to {what}: the AWS identity in use lacks permission "
                "(check --profile / AWS_PROFILE and its IAM policy)"
            )
        if code in _BAD_CREDENTIAL_CODES:
            return SourceError(
                f"AWS rejected the credentials ({code}) for {what}: refresh them "
                "(aws sso login, new keys) or pick another --profile"
            )
        detail = f": {message}" if message else ""
        return SourceError(f"{service} error {code or status} for {what}{detail}")
    if isinstance(exc, BotoCoreError):
        text = " ".join(str(exc).split())
        if "sso" in text.lower() and "token" in text.lower():
            return SourceError(f"the AWS SSO session has expired ({text}): run aws sso login")
        return SourceError(f"AWS error for {what}: {text}")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return SourceError(f"cannot read {what}: {text}")


# --------------------------------------------------------------------------- S3 source


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")``.

    The prefix is a folder: it always ends in ``/`` (or is empty for the whole bucket), so
    ``s3://b/p`` and ``s3://b/p/`` are the same source and ``p`` never matches ``p2/...``.
    """
    if not url.startswith("s3://"):
        raise SourceError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise SourceError(f"no bucket in {url!r} (expected s3://bucket/prefix)")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/") if prefix else ""


@dataclass(frozen=True, slots=True)
class S3Prefix:
    """One listed prefix and the role its objects' logical keys start with ('' for none)."""

    role: str
    bucket: str
    prefix: str  # '' or ends with '/'
    missing_ok: bool = False  # a missing bucket counts as an empty prefix (job sources)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def logical_key(self, key: str) -> str:
        rel = key[len(self.prefix) :].lstrip("/")
        return f"{self.role}/{rel}" if self.role else rel


class S3Source:
    """Lists and reads objects under ``s3://`` prefixes; fingerprint = ETag.

    One instance can cover several prefixes (see :meth:`from_prefixes`), which is how the
    SageMaker job source reads profiler, debugger, rule and TensorBoard output as one tree.
    """

    kind = "s3"

    def __init__(
        self,
        url: str,
        *,
        profile: str | None = None,
        region: str | None = None,
        threads: int = DEFAULT_THREADS,
        max_attempts: int | None = None,
    ) -> None:
        bucket, prefix = parse_s3_url(url)
        spec = S3Prefix("", bucket, prefix)
        self._setup(
            [spec],
            source=url,
            name=prefix.rstrip("/").rsplit("/", 1)[-1] or bucket,
            identity="s3-" + hashlib.sha256(spec.url.encode()).hexdigest()[:16],
            empty_message=f"no objects under {spec.url}: check the path",
            client=aws_client(
                aws_session(profile, region), "s3", threads=threads, max_attempts=max_attempts
            ),
            threads=threads,
            profile=profile,
            max_attempts=max_attempts,
        )

    @classmethod
    def from_prefixes(
        cls,
        prefixes: Mapping[str, str],
        *,
        profile: str | None = None,
        region: str | None = None,
        threads: int = DEFAULT_THREADS,
        max_attempts: int | None = None,
        client: Any = None,
        source: str | None = None,
        name: str | None = None,
        identity: str | None = None,
        empty_message: str | None = None,
        missing_ok: bool = False,
    ) -> S3Source:
        """Several prefixes as one source: each role's objects get keys ``<role>/<rel>``.

        ``client`` lets a caller that already has an S3 client (same session) reuse it.
        ``missing_ok`` treats a missing bucket like an empty prefix, for sources whose
        prefixes are optional; only when every prefix is empty is ``empty_message`` raised.
        """
        if not prefixes:
            raise SourceError("no S3 prefixes to read")
        specs = []
        for role, url in prefixes.items():
            if not role or "/" in role:
                raise ValueError(f"bad role {role!r}: must be a non-empty name without '/'")
            bucket, prefix = parse_s3_url(url)
            specs.append(S3Prefix(role, bucket, prefix, missing_ok))
        urls = ", ".join(s.url for s in specs)
        self = cls.__new__(cls)
        joined = "\n".join(f"{s.role}={s.url}" for s in specs)
        self._setup(
            specs,
            source=source or urls,
            name=name or specs[0].bucket,
            identity=identity or "s3-" + hashlib.sha256(joined.encode()).hexdigest()[:16],
            empty_message=empty_message or f"no objects under {urls}: check the paths",
            client=client
            or aws_client(
                aws_session(profile, region), "s3", threads=threads, max_attempts=max_attempts
            ),
            threads=threads,
            profile=profile,
            max_attempts=max_attempts,
        )
        return self

    def _setup(
        self,
        specs: list[S3Prefix],
        *,
        source: str,
        name: str,
        identity: str,
        empty_message: str,
        client: S3Client,
        threads: int,
        profile: str | None = None,
        max_attempts: int | None = None,
    ) -> None:
        self.prefixes = specs
        self._profile = profile
        self._max_attempts = max_attempts
        self.source = source
        self.name = name
        self.identity = identity
        self._empty_message = empty_message
        self._client = client
        self._threads = max(1, threads)

    @property
    def urls(self) -> dict[str, str]:
        """Role -> s3:// URL (role '' is reported as 'root')."""
        return {(s.role or "root"): s.url for s in self.prefixes}

    def metadata(self) -> JobMetadata:
        return JobMetadata(name=self.name, source=self.source, kind=self.kind, locations=self.urls)

    # -- listing

    def list_objects(self) -> Iterator[SourceObject]:
        """Every object under every prefix, page by page; folder markers are skipped.

        Raises SourceError when nothing at all is found, since an empty result is almost
        always a mistyped path rather than a job without output.
        """
        found = 0
        for spec in self.prefixes:
            for obj in self._list_prefix(spec):
                found += 1
                yield obj
        if not found:
            raise SourceError(self._empty_message)

    def _list_prefix(self, spec: S3Prefix) -> Iterator[SourceObject]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=spec.bucket, Prefix=spec.prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/"):
                        continue  # "folder" placeholder made by the console
                    logical = spec.logical_key(key)
                    if logical == spec.role or not logical:
                        continue
                    yield SourceObject(
                        key=logical,
                        size=int(item.get("Size", 0)),
                        fingerprint=str(item.get("ETag", "")).strip('"'),
                        location=f"s3://{spec.bucket}/{key}",
                    )
        except ClientError as exc:
            code = _code(exc)[0]
            if code == "NoSuchBucket":
                if spec.missing_ok:
                    return
                raise SourceError(
                    f"S3 bucket {spec.bucket!r} does not exist (from {spec.url}): "
                    "check the bucket name"
                ) from None
            raise aws_error(exc, what=spec.url) from None
        except (BotoCoreError, SourceError) as exc:
            raise aws_error(exc, what=spec.url) from None

    # -- reading

    def read(self, obj: SourceObject) -> bytes:
        """The object's bytes, only if it still has the listed ETag (:func:`get_object`)."""
        return get_object(self._client, obj)

    def worker_reader(self) -> S3Reader:
        """What a Dask worker needs to read these objects itself: this client's endpoint,
        region and retries (no client, no credentials: the worker uses its own chain)."""
        meta = self._client.meta
        return S3Reader(
            endpoint_url=_own_endpoint(meta.endpoint_url),
            region=meta.region_name,
            profile=self._profile,
            max_attempts=self._max_attempts,
        )

    def read_many(
        self, objs: Iterable[SourceObject]
    ) -> Iterator[tuple[SourceObject, bytes | Exception]]:
        """Download in parallel, yielding in input order; one bad object never stops the rest.

        At most ``4 * threads`` downloads are in flight or waiting to be consumed, so memory
        stays bounded however many objects there are and however slow the consumer is.
        """

        def _one(o: SourceObject) -> bytes | Exception:
            try:
                return self.read(o)
            except Exception as exc:  # reported per object, by design
                return exc

        window = 4 * self._threads
        pending: deque[tuple[SourceObject, Future[bytes | Exception]]] = deque()
        with ThreadPoolExecutor(self._threads, thread_name_prefix="s3-read") as pool:
            try:
                for o in objs:
                    pending.append((o, pool.submit(_one, o)))
                    if len(pending) >= window:
                        first, fut = pending.popleft()
                        yield first, fut.result()
                while pending:
                    first, fut = pending.popleft()
                    yield first, fut.result()
            finally:
                for _, fut in pending:  # consumer stopped early: drop the rest
                    fut.cancel()


def read_body(client: Any, **request: Any) -> bytes:
    """``GetObject``'s whole body, its stream closed even when the read fails (botocore's
    errors pass through: each caller says what they mean for its object)."""
    body = client.get_object(**request)["Body"]
    try:
        data: bytes = body.read()
    finally:
        body.close()
    return data


def get_object(client: Any, obj: SourceObject) -> bytes:
    """The object's bytes, only if it still has the listed ETag.

    ``If-Match`` makes S3 refuse a newer version, so content is never stored in a cache
    under a fingerprint that does not belong to it.
    """
    bucket, key = _split_location(obj.location)
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if obj.fingerprint:
        kwargs["IfMatch"] = f'"{obj.fingerprint}"'
    try:
        return read_body(client, **kwargs)
    except ClientError as exc:
        code, _, status, _ = _code(exc)
        if code in ("NoSuchKey", "404") or status == 404:
            raise SourceError(
                f"{obj.location} was deleted after it was listed: run again"
            ) from None
        if code == "PreconditionFailed" or status == 412:
            raise SourceError(
                f"{obj.location} changed while it was being read: run again"
            ) from None
        raise aws_error(exc, what=obj.location) from None
    except (BotoCoreError, OSError) as exc:
        raise aws_error(exc, what=obj.location) from None


@dataclass(frozen=True, slots=True)
class S3Reader:
    """Reads S3 objects from inside a Dask worker (:meth:`S3Source.worker_reader`).

    Small and picklable on purpose: the endpoint, region, profile name and retry setting,
    never a client or a credential. Each worker process makes its client on first use
    (:func:`cached_client`) from its own credential chain (instance profile, IRSA, pod
    identity, environment); the bucket and key come with each object's location.
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    max_attempts: int | None = None

    def handles(self, obj: SourceObject) -> bool:
        return obj.location.startswith("s3://")

    def read(self, obj: SourceObject) -> bytes:
        """The object's bytes, with the same errors as :meth:`S3Source.read`."""
        return get_object(
            cached_client(self.profile, self.region, self.endpoint_url, self.max_attempts), obj
        )


def _own_endpoint(url: str | None) -> str | None:
    """The endpoint a worker must use too: one set on purpose (``AWS_ENDPOINT_URL``, a
    profile's ``endpoint_url``: a MinIO, a test server). AWS's own S3 endpoints are left to
    each worker to resolve (its region, its VPC endpoint or FIPS settings), never pinned to
    the one this machine resolved."""
    if not url:
        return None
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return None if host.endswith((".amazonaws.com", ".amazonaws.com.cn")) else url


def _split_location(location: str) -> tuple[str, str]:
    if not location.startswith("s3://"):
        raise SourceError(f"not an S3 object: {location}")
    bucket, _, key = location[len("s3://") :].partition("/")
    if not bucket or not key:
        raise SourceError(f"not an S3 object: {location}")
    return bucket, key

"""pytest plugin: a local AWS endpoint for tests that ask for it.

``aws_server`` (session scope) starts moto's server once, on first request, so tests that
never ask for AWS never start it (nor import moto). ``aws_endpoint`` (function scope) also
points the AWS environment of the test at it: ``AWS_ENDPOINT_URL``, fake credentials,
``AWS_DEFAULT_REGION=us-west-2``, and empty config/credentials files so nothing from the
developer's ``~/.aws`` or shell leaks in. ``aws_fault_proxy`` (function scope) does the same
but points the environment at a :class:`~tests.support.fault_proxy.FaultProxy` in front of
the server, so a test can make chosen requests fail the way AWS fails them. Everything is
restored after the test.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.support.aws_server import AwsServer
    from tests.support.fault_proxy import FaultProxy

REGION = "us-west-2"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"

#: Variables that would override or add to the test's AWS configuration.
_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SAGEMAKER",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CA_BUNDLE",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
)


@dataclass
class AwsEndpoint:
    """What a test needs to use the local endpoint.

    The clients carry the endpoint, region and credentials explicitly, so they also work
    outside ``aws_endpoint``'s environment (e.g. in module-scoped setup via ``aws_server``).
    """

    server: AwsServer
    url: str
    region: str = REGION
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.session.Session().client(  # type: ignore[call-overload]
                service,
                endpoint_url=self.url,
                region_name=self.region,
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
            )
        return self._clients[service]

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def sagemaker(self) -> Any:
        return self.client("sagemaker")

    def create_bucket(self, name: str | None = None) -> str:
        """A new bucket (unique name by default) in the test region."""
        name = name or f"stepscope-test-{secrets.token_hex(6)}"
        self.s3.create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region}
        )
        return name

    def set_rule_status(
        self, job_name: str, rule_name: str, status: str, *, details: str | None = None
    ) -> None:
        from tests.support.aws_server import set_rule_status

        set_rule_status(job_name, rule_name, status, details=details, region=self.region)

    def set_job_status(self, job_name: str, status: str | None = None, **kwargs: Any) -> None:
        from tests.support.aws_server import set_job_status

        set_job_status(job_name, status, region=self.region, **kwargs)

    def training_job_request(self, job_name: str) -> dict[str, Any]:
        from tests.support.aws_server import training_job_request

        return training_job_request(job_name, region=self.region)

    def reset(self) -> None:
        self.server.reset()


@pytest.fixture(scope="session")
def aws_server() -> Iterator[AwsEndpoint]:
    """The running server (started once per session); no environment changes."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (dev extra)")
    from tests.support.aws_server import AwsServer

    server = AwsServer().start()
    try:
        yield AwsEndpoint(server=server, url=server.url)
    finally:
        server.stop()


@pytest.fixture
def aws_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An AWS environment with no credentials, profiles, region or endpoint at all.

    Returns the folder holding the empty ``config`` and ``credentials`` files in use.
    """
    folder = tmp_path_factory.mktemp("aws-home")
    for name in ("config", "credentials"):
        (folder / name).write_text("")
    for var in (
        *_CLEARED,
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no slow IMDS probing
    return folder


@pytest.fixture
def aws_endpoint(
    aws_server: AwsEndpoint, aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> AwsEndpoint:
    """The server, with this test's AWS environment pointed at it (restored afterwards)."""
    _point_at(monkeypatch, aws_server.url)
    return aws_server


@pytest.fixture
def aws_fault_proxy(
    aws_server: AwsEndpoint, aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the server, with this test's AWS environment
    pointed at the proxy. Set data up through ``aws_server``'s clients (they go straight to
    the server); the code under test goes through the proxy and meets its faults."""
    from tests.support.fault_proxy import FaultProxy

    with FaultProxy(aws_server.url) as proxy:
        _point_at(monkeypatch, proxy.url)
        yield proxy


def _point_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)

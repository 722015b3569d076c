"""Emulated AWS for the local stack: moto's server in a background thread on a local port.

Everything that talks to it is ordinary boto3: the function containers get the standard
``AWS_ENDPOINT_URL`` variable and fake credentials (see ``AwsEndpoint.environment``); the stack
itself makes clients with an explicit ``endpoint_url`` so that it never changes the
environment of the process it runs in (pytest shares that process with ``mock_aws`` tests).
"""

from __future__ import annotations

import logging
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# moto accepts any credentials; these only have to look like credentials to botocore.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


@dataclass(frozen=True)
class AwsEndpoint:
    """Where the emulated AWS answers, and how to reach it."""

    url: str
    region: str

    def environment(self) -> dict[str, str]:
        """What a process needs for boto3 to use this endpoint without any code change."""
        return {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=self.region,
        )

    def sqs(self) -> SQSClient:
        return self.session().client("sqs", endpoint_url=self.url)

    def dynamodb(self) -> DynamoDBClient:
        return self.session().client("dynamodb", endpoint_url=self.url)

    def secretsmanager(self) -> SecretsManagerClient:
        return self.session().client("secretsmanager", endpoint_url=self.url)

    def s3(self) -> S3Client:
        return self.session().client("s3", endpoint_url=self.url)


class MotoServer:
    """``ThreadedMotoServer`` on a free port, starting from an empty account."""

    def __init__(self, region: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self._region = region
        self._host = host
        self._port = port
        self._server: Any = None
        self._endpoint: AwsEndpoint | None = None

    @property
    def endpoint(self) -> AwsEndpoint:
        if self._endpoint is None:
            raise RuntimeError("the moto server is not running")
        return self._endpoint

    def start(self) -> AwsEndpoint:
        # Imported here: moto takes most of a second to import, which `local.invoke` against
        # a running `make dev` stack never needs.
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        from local.moto_patches import install

        install()  # transactions that cost what DynamoDB's do (local/moto_patches.py)

        # werkzeug logs every request at INFO (one line per SQS poll): keep the console useful.
        # (Left so: the last request lines are logged after stop() returns.)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=self._host, port=self._port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self._endpoint = AwsEndpoint(url=f"http://{host}:{port}", region=self._region)
        # moto's backends are process-wide: a stack started earlier in this process (a test,
        # a restart) would otherwise leave its queues and tables behind.
        reset_moto(self._endpoint.url)
        return self._endpoint

    def stop(self) -> None:
        if self._server is None:
            return
        if self._endpoint is not None:
            reset_moto(self._endpoint.url)
        self._server.stop()
        self._server = None
        self._endpoint = None


def reset_moto(url: str) -> None:
    """Forget every emulated resource (moto's own admin endpoint)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310 (our http URL)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        response.read()

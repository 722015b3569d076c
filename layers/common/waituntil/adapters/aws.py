"""AWS clients, created lazily once per container with explicit timeouts and retries.

They are botocore's clients, made from one botocore session: the very clients ``boto3.client``
returns, without importing boto3 itself (and s3transfer, which boto3 imports for S3's managed
transfers, unused here): about 20 ms of every cold start (docs/SCALE.md, "Cold start").
Endpoints come from the standard ``AWS_ENDPOINT_URL`` variables, which is how the local stack
points the same code at moto.

The session's data loader is botocore's own, told which services the functions call: before
it loads any service's model, botocore lists every service it has a model for (to name them
in an unknown-service error), about 2,700 file-system checks and 20 ms of CPU in the first
invocation of every new environment, on the path of the first webhook's answer. The models,
their versions and their extras are still found and loaded by botocore.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any, cast

import botocore.session
from botocore.config import Config
from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# The receiver must answer within Supabase's webhook timeout (5 s by default): fail fast.
FAST = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 3})
# The consumer has time; adaptive mode backs off on DynamoDB throttling by itself. Its row
# writes run on a thread pool (cache_store.WRITE_WORKERS): one connection per thread and more.
PATIENT = Config(
    connect_timeout=2,
    read_timeout=10,
    retries={"mode": "adaptive", "max_attempts": 10},
    max_pool_connections=32,
)


# Every service a client is made for below: the only ones the session's loader looks for.
SERVICES = ("dynamodb", "s3", "secretsmanager", "sqs")


class CalledServicesLoader(Loader):
    """botocore's loader, listing only ``SERVICES`` (each as botocore finds it) instead of
    every service directory on its search path; what it loads is unchanged."""

    def list_available_services(self, type_name: str) -> list[str]:
        found = []
        for service in SERVICES:
            try:
                self.list_api_versions(service, type_name)  # cached: loading asks again
            except DataNotFoundError:
                continue
            found.append(service)
        return found


@cache
def aws_session() -> botocore.session.Session:
    """The one botocore session of the container: its clients share the service models it
    loads (and benchmarks register their hooks on it)."""
    session = botocore.session.get_session()
    # As botocore makes its own loader: extra model paths from AWS_DATA_PATH, if set.
    data_path = session.get_config_variable("data_path")
    extra = [
        os.path.expanduser(os.path.expandvars(path))
        for path in (data_path or "").split(os.pathsep)
        if path
    ]
    session.register_component("data_loader", CalledServicesLoader(extra_search_paths=extra))
    return session


def _client(service: str, config: Config) -> Any:
    return aws_session().create_client(service, config=config)


@cache
def sqs_client() -> SQSClient:
    return cast("SQSClient", _client("sqs", FAST))


@cache
def secrets_client_fast() -> SecretsManagerClient:
    return cast("SecretsManagerClient", _client("secretsmanager", FAST))


@cache
def secrets_client_patient() -> SecretsManagerClient:
    return cast("SecretsManagerClient", _client("secretsmanager", PATIENT))


@cache
def dynamodb_client() -> DynamoDBClient:
    return cast("DynamoDBClient", _client("dynamodb", PATIENT))


@cache
def dynamodb_client_fast() -> DynamoDBClient:
    """For the read API: an answer within API Gateway's 29 s and the function's 10 s."""
    return cast("DynamoDBClient", _client("dynamodb", FAST))


@cache
def s3_client() -> S3Client:
    return cast("S3Client", _client("s3", PATIENT))


@cache
def s3_client_fast() -> S3Client:
    return cast("S3Client", _client("s3", FAST))

"""AWS clients, created lazily once per container with explicit timeouts and retries.

They are botocore's clients, made from one botocore session: the very clients ``boto3.client``
returns, without importing boto3 itself (and s3transfer, which boto3 imports for S3's managed
transfers, unused here): about 20 ms of every cold start (docs/SCALE.md, "Cold start").
Endpoints come from the standard ``AWS_ENDPOINT_URL`` variables, which is how the local stack
points the same code at moto.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, cast

import botocore.session
from botocore.config import Config

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


@cache
def aws_session() -> botocore.session.Session:
    """The one botocore session of the container: its clients share the service models it
    loads (and benchmarks register their hooks on it)."""
    return botocore.session.get_session()


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

"""boto3 clients, created lazily once per container with explicit timeouts and retries.

Endpoints come from the standard ``AWS_ENDPOINT_URL`` variables, which is how the local stack
points the same code at moto.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3
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
def sqs_client() -> SQSClient:
    return boto3.client("sqs", config=FAST)


@cache
def secrets_client_fast() -> SecretsManagerClient:
    return boto3.client("secretsmanager", config=FAST)


@cache
def secrets_client_patient() -> SecretsManagerClient:
    return boto3.client("secretsmanager", config=PATIENT)


@cache
def dynamodb_client() -> DynamoDBClient:
    return boto3.client("dynamodb", config=PATIENT)


@cache
def dynamodb_client_fast() -> DynamoDBClient:
    """For the read API: an answer within API Gateway's 29 s and the function's 10 s."""
    return boto3.client("dynamodb", config=FAST)


@cache
def s3_client() -> S3Client:
    return boto3.client("s3", config=PATIENT)


@cache
def s3_client_fast() -> S3Client:
    return boto3.client("s3", config=FAST)

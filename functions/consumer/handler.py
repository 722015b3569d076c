"""Converge the DynamoDB cache with Supabase for one SQS batch; report failed records only."""

from __future__ import annotations

from functools import cache, partial
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from waituntil.adapters.aws import dynamodb_client, s3_client, secrets_client_patient, sqs_client
from waituntil.adapters.blob_store import S3BlobStore
from waituntil.adapters.cache_store import NODE_CACHE_BYTES, CacheStore
from waituntil.adapters.queue import QueuePublisher
from waituntil.adapters.secrets import SecretReader
from waituntil.adapters.supabase_source import ApiKey, SupabaseSource
from waituntil.core.observability import logger, metrics, tracer
from waituntil.core.settings import ConsumerSettings, consumer_settings
from waituntil.sync.batch import BatchOutcome, QueuedMessage, process_batch
from waituntil.sync.ports import ConsumerPorts

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

processor = BatchProcessor(event_type=EventType.SQS)
# Supabase is read over httpx: its requests appear in the traces beside the AWS calls.
tracer.patch(["httpx"])


def build_ports(
    settings: ConsumerSettings,
    *,
    secrets_client: SecretsManagerClient,
    dynamodb: DynamoDBClient,
    sqs: SQSClient,
    s3: S3Client | None = None,
) -> ConsumerPorts:
    secrets = SecretReader(secrets_client, settings.secret_max_age_s)
    blobs = S3BlobStore(settings.blob_bucket, s3) if settings.blob_bucket and s3 else None
    return ConsumerPorts(
        settings=settings,
        source=SupabaseSource(
            settings.supabase_url,
            supabase_keys(settings, secrets),
            {table: settings.policy(table) for table in settings.cached_tables},
            schema_name=settings.schema_name,
            timeout_s=settings.supabase_timeout_s,
            retry=settings.supabase_retry,
            max_rows=settings.page_size,
        ),
        store=CacheStore(
            settings.table_name,
            dynamodb,
            blobs=blobs,
            tombstone_ttl_s=settings.tombstone_ttl_s,
            grace_s=settings.old_list_grace_s,
            node_cache_bytes=NODE_CACHE_BYTES,
        ),
        queue=QueuePublisher(settings.queue_url, sqs),
    )


def supabase_keys(settings: ConsumerSettings, secrets: SecretReader) -> dict[str, ApiKey]:
    """A key getter per role the tables' policies name (read lazily, by secret name, and
    again whenever the cached value is older than ``SECRET_MAX_AGE_SECONDS``)."""
    keys: dict[str, ApiKey] = {"service": partial(secrets.read, settings.supabase_key_secret_name)}
    if settings.supabase_anon_key_secret_name:
        keys["anon"] = partial(secrets.read, settings.supabase_anon_key_secret_name)
    roles = {settings.policy(table).role for table in settings.cached_tables}
    if "anon" in roles and "anon" not in keys:
        # Fail at cold start, loudly, rather than fall back to a key that sees more.
        raise ValueError("a table is cached with the anon role: set SUPABASE_ANON_KEY_SECRET_NAME")
    return keys


@cache
def default_ports() -> ConsumerPorts:
    return build_ports(
        consumer_settings(),
        secrets_client=secrets_client_patient(),
        dynamodb=dynamodb_client(),
        sqs=sqs_client(),
        s3=s3_client(),
    )


def raise_if_record_failed(record: SQSRecord, outcome: BatchOutcome) -> None:
    """The batch processor's record handler: the work is done; a record fails by raising."""
    outcome.raise_if_failed(record.message_id)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, ports: ConsumerPorts | None = None
) -> dict[str, Any]:
    messages = [QueuedMessage.from_record(record) for record in event["Records"]]
    outcome = process_batch(
        messages, ports or default_ports(), context.get_remaining_time_in_millis
    )
    response = process_partial_response(
        event=event,
        record_handler=partial(raise_if_record_failed, outcome=outcome),
        processor=processor,
        context=context,
    )
    return dict(response)

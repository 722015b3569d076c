"""Create the template's queues and table in an emulated AWS (moto), read from template.yaml.

Used by the integration tests (in-process ``mock_aws``) and by the local stack (moto server),
so neither can drift from what ``sam deploy`` creates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local.template import Resolver, load_template, resources_of_type

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# SQS queue properties that map one to one onto queue attributes.
_QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "DelaySeconds",
    "SqsManagedSseEnabled",
)


@dataclass(frozen=True)
class StackResources:
    resolver: Resolver
    queue_urls: dict[str, str]  # logical id -> URL
    table_names: dict[str, str]  # logical id -> name
    bucket_names: dict[str, str]  # logical id -> name

    @property
    def queue_url(self) -> str:
        return self.queue_urls["ChangeQueue"]

    @property
    def dlq_url(self) -> str:
        return self.queue_urls["DeadLetterQueue"]

    @property
    def table_name(self) -> str:
        return self.table_names["CacheTable"]

    @property
    def blob_bucket(self) -> str:
        return self.bucket_names["BlobBucket"]


def provision(
    sqs: SQSClient,
    dynamodb: DynamoDBClient,
    parameters: dict[str, str] | None = None,
    template: dict[str, Any] | None = None,
    s3: S3Client | None = None,
) -> StackResources:
    """Create every queue, table and bucket of the template (buckets only given an S3
    client); return a resolver that knows them."""
    template = template or load_template()
    resolver = Resolver(template, parameters=dict(parameters or {}))
    queue_urls = _create_queues(sqs, resolver)
    table_names = _create_tables(dynamodb, resolver)
    bucket_names = _create_buckets(s3, resolver)
    return StackResources(
        resolver=resolver,
        queue_urls=queue_urls,
        table_names=table_names,
        bucket_names=bucket_names,
    )


def seed_secrets(secrets: SecretsManagerClient, resolver: Resolver, values: dict[str, str]) -> None:
    """Store secret values under the names the template's parameters give (parameter -> value)."""
    for parameter, value in values.items():
        name = resolver.parameter(parameter)
        try:
            secrets.create_secret(Name=name, SecretString=value)
        except secrets.exceptions.ResourceExistsException:
            secrets.put_secret_value(SecretId=name, SecretString=value)


def _create_queues(sqs: SQSClient, resolver: Resolver) -> dict[str, str]:
    queues = resources_of_type(resolver.template, "AWS::SQS::Queue")
    urls: dict[str, str] = {}
    # Queues without a redrive policy first: a redrive policy names its dead-letter queue's ARN.
    for logical_id in sorted(
        queues, key=lambda name: "RedrivePolicy" in queues[name]["Properties"]
    ):
        properties = queues[logical_id]["Properties"]
        attributes = {
            name: _attribute_value(resolver.resolve(properties[name]))
            for name in _QUEUE_ATTRIBUTES
            if name in properties
        }
        if "RedrivePolicy" in properties:
            attributes["RedrivePolicy"] = json.dumps(resolver.resolve(properties["RedrivePolicy"]))
        name = f"{resolver.pseudo['AWS::StackName']}-{logical_id}"
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        resolver.refs[logical_id] = url
        resolver.attributes[(logical_id, "Arn")] = arn
        resolver.attributes[(logical_id, "QueueName")] = name
        urls[logical_id] = url
    return urls


def _create_tables(dynamodb: DynamoDBClient, resolver: Resolver) -> dict[str, str]:
    names: dict[str, str] = {}
    for logical_id, resource in resources_of_type(
        resolver.template, "AWS::DynamoDB::Table"
    ).items():
        properties = resolver.resolve(resource["Properties"])
        name = f"{resolver.pseudo['AWS::StackName']}-{logical_id}"
        dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=properties["AttributeDefinitions"],
            KeySchema=properties["KeySchema"],
            BillingMode=properties.get("BillingMode", "PROVISIONED"),
        )
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        resolver.refs[logical_id] = name
        resolver.attributes[(logical_id, "Arn")] = (
            f"arn:aws:dynamodb:{resolver.pseudo['AWS::Region']}:"
            f"{resolver.pseudo['AWS::AccountId']}:table/{name}"
        )
        names[logical_id] = name
    return names


def _create_buckets(s3: S3Client | None, resolver: Resolver) -> dict[str, str]:
    names: dict[str, str] = {}
    for logical_id in resources_of_type(resolver.template, "AWS::S3::Bucket"):
        name = f"{resolver.pseudo['AWS::StackName']}-{logical_id}".lower()
        if s3 is not None:
            s3.create_bucket(Bucket=name)
        resolver.refs[logical_id] = name
        resolver.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
        names[logical_id] = name
    return names


def _attribute_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

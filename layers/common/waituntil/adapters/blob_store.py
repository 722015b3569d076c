"""Row bodies too large for a DynamoDB item, kept in S3 (the "claim check" pattern).

Keys are content-addressed (``cache.layout.blob_object_key``): writing the same body twice is
harmless, and an object never changes under a key an item points to. The bucket encrypts at
rest and expires objects no item has pointed to for a while (template.yaml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from waituntil.core.errors import DependencyUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3BlobStore:
    def __init__(self, bucket: str, client: S3Client) -> None:
        self._bucket = bucket
        self._client = client

    def put(self, key: str, text: str) -> None:
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=text.encode(),
                ContentType="application/json",
            )
        except (BotoCoreError, ClientError) as error:
            raise DependencyUnavailable(f"S3 put of {key} failed") from error

    def mark_superseded(self, key: str) -> None:
        try:
            self._client.put_object_tagging(
                Bucket=self._bucket,
                Key=key,
                Tagging={"TagSet": [{"Key": "superseded", "Value": "true"}]},
            )
        except (BotoCoreError, ClientError) as error:
            raise DependencyUnavailable(f"S3 tagging of {key} failed") from error

    def get(self, key: str) -> str:
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            return response["Body"].read().decode()
        except (BotoCoreError, ClientError) as error:
            raise DependencyUnavailable(f"S3 get of {key} failed") from error

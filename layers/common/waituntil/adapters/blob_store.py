"""Row bodies too large for a DynamoDB item, kept in S3 (the "claim check" pattern).

One object per write (``cache.layout.blob_object_key``), never rewritten. Tags say which
objects may go, and the bucket's lifecycle rules (template.yaml) expire them: an object is put
tagged ``unclaimed`` (it expires unless the write that points an item to it clears the tag:
``claim``), and tagged ``superseded`` once its row has moved on. The reasons are in
``adapters/cache_store.BlobStore``. The bucket encrypts at rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError

from waituntil.core.errors import DependencyUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import TagTypeDef

# The tags the bucket's lifecycle rules (template.yaml, BlobBucket) expire objects by.
UNCLAIMED_TAG = "unclaimed"
SUPERSEDED_TAG = "superseded"


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
                # Tagged in the same request: there is no moment an unclaimed object is untagged.
                Tagging=urlencode({UNCLAIMED_TAG: "true"}),
            )
        except (BotoCoreError, ClientError) as error:
            raise DependencyUnavailable(f"S3 put of {key} failed") from error

    def claim(self, key: str) -> None:
        # "false" rather than no tag: the lifecycle rule matches only "true", and an empty
        # tag set is not what every S3 implementation accepts.
        self._tag(key, [{"Key": UNCLAIMED_TAG, "Value": "false"}])

    def mark_superseded(self, key: str) -> None:
        self._tag(key, [{"Key": SUPERSEDED_TAG, "Value": "true"}])

    def _tag(self, key: str, tags: list[TagTypeDef]) -> None:
        """Replace the object's whole tag set (PutObjectTagging never merges)."""
        try:
            self._client.put_object_tagging(Bucket=self._bucket, Key=key, Tagging={"TagSet": tags})
        except (BotoCoreError, ClientError) as error:
            raise DependencyUnavailable(f"S3 tagging of {key} failed") from error

    def get(self, key: str) -> str:
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            return response["Body"].read().decode()
        except (BotoCoreError, ClientError) as error:
            raise DependencyUnavailable(f"S3 get of {key} failed") from error

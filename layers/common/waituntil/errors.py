"""Every error the project raises on purpose. HTTP mapping lives in each API handler, once."""

from __future__ import annotations


class WaitUntilError(Exception):
    """Base of the project's own errors."""


# Receiver: the client's mistakes (4xx), named for what went wrong.
class ClientError(WaitUntilError):
    status_code = 400


class Unauthorized(ClientError):
    status_code = 401


class UnsupportedMediaType(ClientError):
    status_code = 415


class PayloadTooLarge(ClientError):
    status_code = 413


class InvalidHeaders(ClientError):
    """A header Supabase sends once arrived several times: which one to trust is ambiguous."""


class InvalidPayload(ClientError):
    """The body is not a Supabase Database Webhook payload this deployment accepts."""


# Dependencies that failed: 503 at the API, a batch item failure in the consumer.
class DependencyUnavailable(WaitUntilError):
    """A service we depend on (SQS, Secrets Manager, Supabase, DynamoDB) failed or timed out."""


class QueueUnavailable(DependencyUnavailable):
    pass


class SecretUnavailable(DependencyUnavailable):
    pass


class SourceUnavailable(DependencyUnavailable):
    """Supabase could not be read; the changes of that table are retried by SQS."""


# Consumer: a message that can never succeed. It fails alone and ends in the DLQ.
class InvalidMessage(WaitUntilError):
    pass


class RowTooLarge(WaitUntilError):
    """A row whose compressed JSON still exceeds DynamoDB's 400 KB item limit."""


class ListNodeMissing(WaitUntilError):
    """A node of the list version a patch started from has expired: re-read the head."""


class ListContended(DependencyUnavailable):
    """Other consumers kept publishing first; the batch is retried by SQS."""


class ListFilling(DependencyUnavailable):
    """The first fill of a table has not finished: its list is not complete yet (I6)."""

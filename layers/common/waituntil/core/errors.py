"""Every error the project raises on purpose. HTTP mapping lives in each API handler, once."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import ClassVar


class WaitUntilError(Exception):
    """Base of the project's own errors."""


# A client's mistake at either API (4xx), named for what went wrong. Not botocore's
# ClientError, which the adapters catch nearby and which means that AWS refused *us*.
class RequestRefused(WaitUntilError):
    status_code = 400


# Receiver: a webhook the client has to change.
class Unauthorized(RequestRefused):
    status_code = 401


class UnsupportedMediaType(RequestRefused):
    status_code = 415


class PayloadTooLarge(RequestRefused):
    status_code = 413


class InvalidHeaders(RequestRefused):
    """A header Supabase sends once arrived several times: which one to trust is ambiguous."""


class InvalidPayload(RequestRefused):
    """The body is not a Supabase Database Webhook payload this deployment accepts."""


# Read API: one HTTP status each, mapped to a response in the reader's handler.
class ReadRefused(RequestRefused):
    """A read the client has to change. ``headers`` go on the error response."""

    status_code = HTTPStatus.BAD_REQUEST
    default_headers: ClassVar[Mapping[str, str]] = {}

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers: Mapping[str, str] = {**self.default_headers, **(headers or {})}


class BadReadRequest(ReadRefused):
    status_code = HTTPStatus.BAD_REQUEST


class ReadForbidden(ReadRefused):
    status_code = HTTPStatus.FORBIDDEN


class NotCached(ReadRefused):
    """Unknown table, or a row or list the cache does not hold."""

    status_code = HTTPStatus.NOT_FOUND


class MethodNotAllowed(ReadRefused):
    status_code = HTTPStatus.METHOD_NOT_ALLOWED

    def __init__(self, allow: str) -> None:
        # The methods are the read API's to name (``read.request.ALLOW``), not this module's.
        super().__init__(f"use {allow}", {"Allow": allow})


class StaleCursor(ReadRefused):
    """The cursor's list version was retired: the client restarts from the first page,
    which the ``Link`` header (``rel="first"``) names."""

    status_code = HTTPStatus.GONE


class ResponseTooLarge(WaitUntilError):
    """A stored body too large for one Lambda response (a huge, very compressible row)."""


# A configuration a function refuses to start with. Not a ValueError: pydantic would fold it
# into a ValidationError, and the caller (a handler's cold start, `make dev`, `make deploy`'s
# check) names this class to say what to change.
class SettingsRefused(WaitUntilError):
    """The settings are valid one by one but must not run together."""


class ServiceViewServedPublicly(SettingsRefused):
    """A table cached with the service role's view (every row, RLS bypassed) would be served
    by a public read API, and its policy does not say ``"public": true``."""


# Dependencies that failed: 503 at the API, a batch item failure in the consumer.
class DependencyUnavailable(WaitUntilError):
    """A service we depend on (SQS, Secrets Manager, Supabase, DynamoDB) failed or timed out."""


class QueueUnavailable(DependencyUnavailable):
    pass


class SecretUnavailable(DependencyUnavailable):
    pass


class SourceUnavailable(DependencyUnavailable):
    """Supabase could not be read; the changes of that table are retried by SQS."""


class SupabaseKeyRefused(SourceUnavailable):
    """Supabase answered 401 to a key, also after its secret was read again."""


# Consumer: a message that can never succeed. It fails alone and ends in the DLQ.
class InvalidMessage(WaitUntilError):
    pass


class RowTooLarge(WaitUntilError):
    """A row whose compressed JSON still exceeds DynamoDB's 400 KB item limit, and no blob
    store to keep it in: no retry can store it (``RowFailureReason.TOO_LARGE``)."""


class RowWriteFailed(DependencyUnavailable):
    """One row's write failed on a dependency (DynamoDB, S3): a retry may store it
    (``RowFailureReason.DEPENDENCY_FAILED``)."""


class RowWritesFailed(DependencyUnavailable):
    """Rows of a full sync's page could not be written: the page is not done, so the sync's
    record fails and its retry resumes from the checkpoint before that page."""


class WrongKeyRole(SecretUnavailable):
    """A Supabase key stored for one role carries another role's claim (a service-role key in
    the anon secret would cache what Row Level Security hides): it is never used."""


class ListNodeMissing(WaitUntilError):
    """A node of the list version a patch started from has expired: re-read the head."""


class ListContended(DependencyUnavailable):
    """Other consumers kept publishing first; the batch is retried by SQS."""


class ListFilling(DependencyUnavailable):
    """The first fill of a table has not finished: its list is not complete yet (I6)."""


class ListRebuilding(ListFilling):
    """The served list was built with another table policy than the one in force: it is not
    served (it may hold rows or columns the policy now hides) while a rebuild runs."""


class RebuildSuperseded(WaitUntilError):
    """A rebuild found its version replaced by a newer rebuild's: it stops, the newer goes on."""


class FillUnderWay(WaitUntilError):
    """A rebuild cannot begin while a first fill puts rows unconditionally (its journal is
    open): the rebuild's message comes back later, after the fill's join."""


class ColumnMissing(SourceUnavailable):
    """Supabase has no such column in the table (PostgREST's 42703): a policy names a key or
    a change column the table lacks. A read that failed, as far as a change is concerned; the
    reconciler tells it apart (the default ``updated_at`` may simply not be there)."""


class ReconcileFailed(WaitUntilError):
    """A reconcile cycle of one table could not finish (a read or count failed or was cut
    short). It wrote nothing unverified; the next cycle starts again."""


class FingerprintUnavailable(WaitUntilError):
    """The project has not installed the fingerprint function (supabase/migrations): the
    reconciler compares counts only for that table."""

"""What ``make dev`` checks before it starts anything: each mistake as one line, at once.

- the ports it was told to use are free;
- a real project (``SUPABASE_URL``) is given whole and consistently: a URL, the service_role
  key in ``SUPABASE_KEY``, the anon key in ``SUPABASE_ANON_KEY`` when a table is cached with
  the anon role's view (not the other way round);
- the project has every cached table, and each table the key, order column, columns and
  filter columns its policy names, read with the key of the policy's role. Without this a
  missing table or column would only show as a RESYNC failing into the dead-letter queue
  again and again.

Errors are ``Mistake``s (``ops.mistakes``): the problem, then the fix.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ops.mistakes import Mistake

if TYPE_CHECKING:
    from waituntil.adapters.supabase_source import ApiKey
    from waituntil.core.table_policy import TablePolicy

# Where a user finds the keys.
KEYS_PAGE = "the dashboard's Project Settings > API Keys"
# PostgREST's codes for what a project lacks (PGRST205 from v12.2, 42P01 before it).
NO_TABLE = ("PGRST205", "42P01")
NO_COLUMN = ("42703", "PGRST204")
REFUSED_KEY = ("PGRST301", "PGRST302", "PGRST303")


def check_ports_free(host: str, ports: Mapping[str, int]) -> None:
    """``ports``: make variable -> port. A port taken is one line naming both."""
    for variable, port in ports.items():
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise Mistake(
                        f"cannot use {host}:{port} ({error.strerror}): {variable}="
                    ) from None
                raise Mistake(
                    f"port {port} is already in use; choose another: make dev {variable}=<port>"
                ) from None


def key_role(key: str) -> str | None:
    """The role a Supabase API key is for (the consumer's own reading of it, which refuses a
    non-anon key for the anon role)."""
    from waituntil.adapters.supabase_source import key_role as role_of

    return role_of(key)


def check_real_project(
    url: str, service_key: str, anon_key: str | None, policies: Mapping[str, TablePolicy]
) -> None:
    """The settings of a real project, before anything reads it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Mistake(f"SUPABASE_URL={url!r} is not a URL: use https://<ref>.supabase.co")
    if key_role(service_key) == "anon":
        raise Mistake(
            "SUPABASE_KEY is the anon key: set SUPABASE_KEY to the service_role key and "
            f"SUPABASE_ANON_KEY to the anon key ({KEYS_PAGE})"
        )
    anon_tables = [table for table, policy in policies.items() if policy.role == "anon"]
    if anon_tables and not anon_key:
        raise Mistake(
            f"{', '.join(anon_tables)} cached with the anon role's view (the default policy) "
            f"needs the anon key: set SUPABASE_ANON_KEY ({KEYS_PAGE})"
        )
    if anon_key and key_role(anon_key) == "service_role":
        raise Mistake(
            "SUPABASE_ANON_KEY is the service_role key, which bypasses Row Level Security: "
            f"set it to the anon key ({KEYS_PAGE})"
        )


def check_project_tables(
    url: str,
    keys: Mapping[str, str],
    policies: Mapping[str, TablePolicy],
    *,
    schema_name: str = "public",
    timeout_s: float = 5.0,
) -> None:
    """Read one row of each cached table as its policy says, naming every column the policy
    does (key, order, columns, filter): a table or column the project lacks is one line.

    ``keys``: role (``anon``, ``service``) -> API key."""
    from supabase._sync.client import SupabaseException

    from waituntil.adapters.supabase_source import SupabaseSource
    from waituntil.core.errors import SourceUnavailable, SupabaseKeyRefused, WrongKeyRole

    probes = {table: _naming_every_column(policy) for table, policy in policies.items()}
    source = SupabaseSource(
        url,
        {role: _constant(key) for role, key in keys.items()},
        probes,
        schema_name=schema_name,
        timeout_s=timeout_s,
        retry=False,
    )
    for table, policy in policies.items():
        variable = "SUPABASE_KEY" if policy.role == "service" else "SUPABASE_ANON_KEY"
        try:
            source.read_page(table, None, 1)
        except SupabaseKeyRefused as error:
            raise Mistake(
                f"Supabase refused {variable} ({error.__cause__}): copy it again from {KEYS_PAGE}"
            ) from None
        except WrongKeyRole:
            raise Mistake(
                f"{variable} is not the anon key, which bypasses Row Level Security: "
                f"set it to the anon key ({KEYS_PAGE})"
            ) from None
        except SourceUnavailable as error:
            raise Mistake(
                _explain_read(error.__cause__, url, table, variable, schema_name)
            ) from None
        except SupabaseException as error:  # supabase-py refuses a malformed key or URL itself
            raise Mistake(
                f"{variable} or SUPABASE_URL is malformed ({error}): {KEYS_PAGE}"
            ) from None


def _constant(value: str) -> ApiKey:
    def key(*, fresh: bool = False) -> str:
        return value

    return key


def _naming_every_column(policy: TablePolicy) -> TablePolicy:
    """The policy with its key and order column listed in ``columns``, so that a read fails
    on any column the project lacks (``*`` would hide a missing order column)."""
    listed = [] if policy.columns.strip() == "*" else policy.columns.split(",")
    needed = [policy.key] + ([policy.list_order.column] if policy.list_order.column else [])
    columns = [column.strip() for column in needed + listed if column.strip()]
    return policy.model_copy(update={"columns": ",".join(dict.fromkeys(columns))})


def _explain_read(
    cause: BaseException | None, url: str, table: str, variable: str, schema: str
) -> str:
    import httpx
    from postgrest.exceptions import APIError

    if isinstance(cause, httpx.TimeoutException):
        return f"Supabase at {url} did not answer in time: check SUPABASE_URL (https://<ref>.supabase.co)"
    if isinstance(cause, httpx.TransportError):
        return (
            f"cannot reach Supabase at {url} ({cause}): check SUPABASE_URL "
            "(https://<ref>.supabase.co) and the network"
        )
    if isinstance(cause, APIError):
        code, message = str(cause.code or ""), str(cause.message or cause)
        if code in NO_TABLE:
            return (
                f"the project has no table {schema}.{table}: fix TABLES= "
                "(or CachedTables in samconfig.toml)"
            )
        if code in NO_COLUMN:
            return (
                f"{message} (the key, order, columns or filter of {table}): fix POLICIES= "
                "(or TablePolicies in samconfig.toml)"
            )
        if code in REFUSED_KEY or "api key" in message.lower() or "jwt" in message.lower():
            return f"Supabase refused {variable} ({message}): copy it again from {KEYS_PAGE}"
        if code == "PGRST100":
            return f"{table}'s filter: {message}: fix POLICIES= (or TablePolicies)"
        return f"reading {table} from Supabase failed ({code or 'no code'}: {message})"
    return f"reading {table} from Supabase failed: {cause}"

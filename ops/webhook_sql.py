"""``make webhook-sql``: the SQL that wires a Supabase project's Database Webhooks to a stack.

One template (``supabase/webhooks.sql.template``) serves both the local stack, which applies it
to its own database, and a real project, where a user reviews and runs what this prints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).resolve().parent.parent / "supabase" / "webhooks.sql.template"
EACH_TABLE = "-- @each-table"
TRIGGER_NAME = "waituntil_webhook"
TIMEOUT_MS = 5000  # the dashboard's default for a Database Webhook
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def sql_literal(text: str) -> str:
    """A SQL string constant (standard_conforming_strings, on since PostgreSQL 9.1)."""
    return "'" + text.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """A plain identifier, quoted; anything else is refused rather than escaped."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain table or schema name")
    return f'"{name}"'


def render_webhook_sql(
    url: str,
    secret: str,
    tables: Sequence[str],
    *,
    schema: str = "public",
    timeout_ms: int = TIMEOUT_MS,
    gate_key: str | None = None,
) -> str:
    """The template, its per-table part once for each of ``tables``; with ``gate_key``, the
    ``X-Webhook-Gate`` header AWS WAF lets through (docs/SECURITY.md)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the webhook URL must be http(s): {url!r}")
    if not tables:
        raise ValueError("no cached table to wire")
    header, _, each = TEMPLATE.read_text().partition(EACH_TABLE)
    _, _, each = each.partition("\n")  # the rest of the marker's line explains it
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
    headers |= {"X-Webhook-Gate": gate_key} if gate_key else {}
    values = {
        "url": url.replace("\n", " "),
        "url_literal": sql_literal(url),
        "headers_literal": sql_literal(json.dumps(headers)),
        "timeout_ms": str(int(timeout_ms)),
        "schema": sql_identifier(schema),
    }
    parts = [Template(header).substitute(values)]
    for table in tables:
        parts.append(Template(each).substitute(values, table=sql_identifier(table)))
    return "".join(parts)

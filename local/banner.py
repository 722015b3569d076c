"""The banner ``make dev`` prints: the running stack's URLs, keys and routes, and commands
to try against it (a webhook by hand, a supabase-py change, a read, one function)."""

from __future__ import annotations

import json
import shlex

from local import BUNDLED_EVENTS_SECRET
from local.stack import PipelineStack, table_policies
from local.template import queue_visibility_timeout_s


def _describe_tables(stack: PipelineStack) -> str:
    assert stack.resources is not None
    return "; ".join(
        f"{table} (key {policy.key}, by {policy.order or policy.key}, {policy.role} view)"
        for table, policy in table_policies(stack.resources.resolver).items()
    )


def format_banner(stack: PipelineStack, *, chosen_secret: bool) -> str:
    """What ``make dev`` prints once the stack runs: its endpoints and commands to try."""
    secret = stack.webhook_secret
    assert stack.resources is not None
    first_table, policy = next(iter(table_policies(stack.resources.resolver).items()))
    primary_key = policy.key
    database = []
    if stack.supabase is not None:
        where = f"kept in {stack.data_dir}" if stack.data_dir else "temporary; DATA= keeps it"
        supabase = f"{stack.supabase_url}   (local, on PostgreSQL: {where})"
        psql = stack.supabase.cluster.psql(stack.supabase.database)
        database = [f"  Database        {psql}   (webhook answers: net._http_response)"]
    else:
        supabase = f"{stack.supabase_url}   (real project from SUPABASE_URL)"
    routes = ", ".join(
        f"{route.method} {route.path} -> {route.function_id}" for route in stack.routes
    )
    payload = json.dumps(
        {
            "type": "INSERT",
            "table": first_table,
            "schema": "public",
            "record": {primary_key: 1, "title": "Hello"},
            "old_record": None,
        }
    )
    lines = [
        "",
        "Local stack running (no Docker, no AWS account). Ctrl-C stops it.",
        "",
        f"  Webhook URL     {stack.webhook_url}   (POST)",
        f"  Webhook secret  {secret}   " + _secret_origin(secret, chosen=chosen_secret),
        f"  Supabase URL    {supabase}",
        f"  Supabase key    {stack.supabase_key}",
        *database,
        f"  API routes      {routes}",
        f"  Cached tables   {_describe_tables(stack)}",
        f"  API description {stack.api_url}/openapi.yaml   (OpenAPI 3.1, docs/openapi.yaml)",
        f"  Emulated AWS    {stack.aws.url}   queue {stack.queue_url.rsplit('/', 1)[-1]}, "
        f"table {stack.table_name}",
    ]
    if stack.visibility_timeout_s is not None:
        lines.append(
            f"  Local-only      visibility timeout {stack.visibility_timeout_s} s "
            f"(template: {queue_visibility_timeout_s(stack.template)} s)"
        )
    if stack.scheduler is not None:
        every = ", ".join(
            f"{message.rule_id} every {_period(message.period_s)}"
            for message in stack.scheduler.messages
        )
        lines.append(f"  Schedules       {every}   (make heal: a reconcile now)")
    if stack.drop_webhooks:
        lines.append(
            f"  Lost webhooks   {stack.drop_webhooks:.0%} dropped on purpose (DROP_WEBHOOKS): "
            "the reconciler heals them"
        )
    if stack.supabase is None:
        lines.append(
            "  Note            a real project can only call this machine through a tunnel "
            "(e.g. cloudflared); use its URL in the Database Webhook."
        )
    lines += [
        "",
        "A webhook by hand (the consumer re-reads the row from Supabase: for a row that is not",
        "in the table, as here until the supabase-py example below inserts it, it caches none):",
        f"  curl -i -X POST {stack.webhook_url} \\",
        f"    -H 'Authorization: Bearer {secret}' -H 'Content-Type: application/json' \\",
        f"    -d {shlex.quote(payload)}",
        "",
        "A real change (its trigger sends the webhook, the consumer fills the cache):",
        "  .venv/bin/python - <<'EOF'",
        "  from supabase import create_client",
        f"  client = create_client({stack.supabase_url!r}, {stack.supabase_key!r})",
        f"  client.table({first_table!r}).insert({{'title': 'Hello'}}).execute()",
        "  EOF",
        "",
        "Read the cache:",
        f"  curl -i {stack.api_url}/{first_table}   # Link targets are absolute: follow them as is",
        "",
        "One function by hand: make invoke FUNCTION=ReceiverFunction "
        "EVENT=events/receiver/insert.json",
        "",
    ]
    return "\n".join(lines)


def _period(seconds: float) -> str:
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''}" if count > 1 else unit
    return f"{seconds:.0f} s"


def _secret_origin(secret: str, *, chosen: bool) -> str:
    if chosen:
        return "(from WEBHOOK_SECRET)"
    if secret == BUNDLED_EVENTS_SECRET:
        return "(the one events/ carry; set WEBHOOK_SECRET to choose)"
    return "(random: the API is reachable from elsewhere; set WEBHOOK_SECRET to choose)"

"""``python -m ops COMMAND``: one command per operator task (the Makefile's targets call these).

Target: ``--stack NAME`` (a deployed stack; AWS credentials and region from the usual places),
``--config-env ENV`` (the stack samconfig.toml names for that environment), or neither: the
running local stack (``make dev``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops.account import current_role, ensure_log_role
from ops.backfill import request_rebuild, request_reconcile, request_resync, wait_until_drained
from ops.dead_letters import list_dead_letters, logged_error_finder, redrive
from ops.deploy_check import SAMCONFIG, check_parameters, deploy_parameters
from ops.mistakes import Mistake, Parser, run
from ops.target import Target, resolve_target
from ops.verify import verify_table
from ops.webhook_sql import render_webhook_sql

if TYPE_CHECKING:
    from waituntil.cache.model import HealState


def backfill(target: Target, arguments: argparse.Namespace) -> int:
    message_id, change = request_resync(target.sqs, target.queue_url, target.schema_name)
    queued = f"queued a RESYNC of every cached table ({', '.join(target.cached_tables)})"
    drained = _queued_then_drained(target, arguments, queued, message_id, change)
    if drained is not None:
        return drained
    store = target.cache_store()
    for table in target.cached_tables:
        print(f"  {table}: {_cached(store, table, 'rows cached')}")
    return 0


def _queued_then_drained(
    target: Target,
    arguments: argparse.Namespace,
    queued: str,
    message_id: str,
    change: Any,
    also: str = "",
) -> int | None:
    """Say what was queued, then wait for the change queue to drain (unless ``--no-wait``).

    None when the caller goes on to report what the cache now holds; otherwise the exit code:
    0 when asked not to wait, 1 when the queue did not drain in time.
    """
    print(
        f"{queued} on {target.description}: message {message_id}, "
        f"correlation_id {change.correlation_id}{also}"
    )
    if arguments.no_wait:
        return 0
    if not wait_until_drained(target.sqs, target.queue_url, arguments.timeout):
        print(f"the change queue is not empty after {arguments.timeout:.0f} s; see `make status`")
        return 1
    return None


def _cached(store: Any, table: str, rows_are: str) -> str:
    """What the read API would say of a table's list, in a few words."""
    from waituntil.core.errors import ListFilling
    from waituntil.read.cache_client import get_list

    try:
        rows = get_list(store, table)
    except ListFilling as error:
        return f"not served yet: {error}"
    return "not cached" if rows is None else f"{len(rows)} {rows_are}"


def rebuild(target: Target, arguments: argparse.Namespace) -> int:
    table = arguments.table
    if table not in target.cached_tables:
        print(f"{table!r} is not a cached table of {target.description}: {target.cached_tables}")
        return 2
    message_id, change = request_rebuild(target.sqs, target.queue_url, target.schema_name, table)
    queued = f"queued a rebuild of {table}"
    drained = _queued_then_drained(
        target,
        arguments,
        queued,
        message_id,
        change,
        also="; readers keep the current list until the new one is complete",
    )
    if drained is not None:
        return drained
    store = target.cache_store()
    rebuilding = store.get_next_head(table)
    if rebuilding is not None and rebuilding.rebuild == (
        change.sync.sync_id if change.sync else ""
    ):
        print(f"  {table}: the rebuild has not switched yet; see `make dlq` and `make status`")
        return 1
    print(f"  {table}: {_cached(store, table, 'rows cached')}")
    return 0


def heal(target: Target, arguments: argparse.Namespace) -> int:
    """One reconcile cycle of every table now, then what it found and healed."""
    store = target.cache_store()
    before = {table: store.get_heal_state(table) for table in target.cached_tables}
    message_id, change = request_reconcile(target.sqs, target.queue_url, target.schema_name)
    queued = f"queued a RECONCILE of every cached table ({', '.join(target.cached_tables)})"
    drained = _queued_then_drained(target, arguments, queued, message_id, change)
    if drained is not None:
        return drained
    failed = False
    for table in target.cached_tables:
        state, earlier = store.get_heal_state(table), before[table]
        if state is None or (earlier is not None and state.last_ok_ns == earlier.last_ok_ns):
            failed = True
            print(
                f"  {table}: no cycle finished (a full sync was running, or the cycle failed: "
                "the consumer's log line 'reconcile failed' says why)"
            )
            continue
        healed = state.healed_total - (earlier.healed_total if earlier else 0)
        print(f"  {table}: reconciled; {healed} rows healed ({describe_heal_state(state)})")
    return 1 if failed else 0


def describe_heal_state(state: HealState | None, now_ns: int | None = None) -> str:
    if state is None or not state.last_ok_ns:
        return "never reconciled"
    age_s = ((now_ns or time.time_ns()) - state.last_ok_ns) / 1e9
    column = state.change_column or "none: counts only"
    return (
        f"last successful reconcile {age_s:.0f} s ago, {state.healed_total} rows healed in "
        f"all, change column {column}"
    )


def dlq(target: Target, arguments: argparse.Namespace) -> int:
    explain = None
    if target.log_group:
        explain = logged_error_finder(target.client("logs"), target.log_group)
    letters = list_dead_letters(target.sqs, target.dlq_url, limit=arguments.limit, explain=explain)
    print(f"{len(letters)} message(s) in the dead-letter queue of {target.description}")
    for letter in letters:
        print(letter.summary())
    if letters:
        print("fix the cause, then `make redrive` moves them back to the change queue")
    return 0


def redrive_command(target: Target, arguments: argparse.Namespace) -> int:
    moved = redrive(target.sqs, target.dlq_url, target.queue_url)
    print(f"moved {moved} message(s) from the dead-letter queue to the change queue")
    if moved and arguments.wait:
        drained = wait_until_drained(target.sqs, target.queue_url, arguments.timeout)
        print("the consumer has processed them" if drained else "still processing; `make status`")
    return 0


def verify(target: Target, arguments: argparse.Namespace) -> int:
    unknown = [table for table in arguments.table or [] if table not in target.cached_tables]
    if unknown:
        raise Mistake(
            f"{unknown[0]} is not a cached table of {target.description} (cached: "
            f"{', '.join(target.cached_tables)}): make verify TABLE=<one of them>"
        )
    # Supabase read exactly as the consumer reads it: each table's policy (whose view, which
    # rows and columns); a row RLS hides from the anon role is not drift.
    source, policies = target.consumer_source()
    store = target.cache_store()
    drifted = False
    print(f"comparing the cache of {target.description} with Supabase (read-only)")
    for table in arguments.table or target.cached_tables:
        result = verify_table(table, policies[table].key, source.read_page, store)
        print(result.report())
        drifted = drifted or result.drifted
    if drifted:
        print("drift found: `make backfill` heals what shows in the list (docs/OPERATING.md)")
    return 1 if drifted else 0


def check(target: Target, arguments: argparse.Namespace) -> int:
    """Each table's policy against Supabase, as the deployed consumer reads it: the table and
    every column its policy names (key, order, change column, columns, filter) must exist.
    ``make deploy`` runs it once the stack is up; a mistake is one line (exit 2)."""
    from ops.dev_checks import check_project_tables

    _, policies = target.consumer_source()
    environment = target.consumer_environment

    def secret(name: str) -> str:
        return str(target.secrets.get_secret_value(SecretId=name)["SecretString"])

    roles = {policy.role for policy in policies.values()}
    keys = {"service": secret(environment["SUPABASE_KEY_SECRET_NAME"])}
    if "anon" in roles:
        keys["anon"] = secret(environment["SUPABASE_ANON_KEY_SECRET_NAME"])
    check_project_tables(
        environment["SUPABASE_URL"], keys, policies, schema_name=target.schema_name
    )
    print(f"policies of {target.description}: every table and column found")
    return 0


def status(target: Target, arguments: argparse.Namespace) -> int:
    def depth(url: str) -> str:
        attributes = target.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return (
            f"{attributes['ApproximateNumberOfMessages']} waiting, "
            f"{attributes['ApproximateNumberOfMessagesNotVisible']} in flight"
        )

    print(target.description)
    print(f"  change queue: {depth(target.queue_url)}")
    print(f"  dead-letter queue: {depth(target.dlq_url)}")
    store = target.cache_store()
    for table in target.cached_tables:
        print(f"  {table}: {_cached(store, table, 'rows in the list')}")
        print(f"    {describe_heal_state(store.get_heal_state(table))}")
    return 0


def webhook_sql(target: Target, arguments: argparse.Namespace) -> int:
    """The Database Webhooks' SQL for this stack: its receiver's URL and current secret."""
    environment = target.receiver_environment or (
        target.client("lambda")
        .get_function_configuration(FunctionName=target.outputs["ReceiverFunctionName"])
        .get("Environment", {})
        .get("Variables", {})
    )
    if "WebhookUrl" not in target.outputs or "WEBHOOK_SECRET_NAME" not in environment:
        print(f"{target.description} has no WebhookUrl output or webhook secret", file=sys.stderr)
        return 2
    secret = target.secrets.get_secret_value(SecretId=environment["WEBHOOK_SECRET_NAME"])
    # A deployed webhook passes AWS WAF's gate with this header (the local stack has no WAF).
    gate_name = target.parameters.get("WebhookGateKey")
    gate = (
        target.client("ssm").get_parameter(Name=gate_name)["Parameter"]["Value"]
        if gate_name
        else None
    )
    url, tables = target.outputs["WebhookUrl"], target.cached_tables
    sql = render_webhook_sql(
        url, secret["SecretString"], tables, schema=target.schema_name, gate_key=gate
    )
    print(sql)
    return 0


def account_setup(arguments: argparse.Namespace) -> int:
    import boto3

    session = boto3.Session()
    apigateway, region = session.client("apigateway"), session.region_name or "?"
    if arguments.check:
        role = current_role(apigateway)
        if role is None:
            print(
                f"API Gateway in {region} has no CloudWatch log role, so the stack's stage "
                "cannot be created. Run `make account-setup` once (docs/DEPLOY.md)."
            )
            return 1
        print(f"API Gateway in {region} logs with {role}")
        return 0
    partition = session.get_partition_for_region(region) if region != "?" else "aws"
    setting = ensure_log_role(apigateway, session.client("iam"), partition=partition)
    print(setting.report(region))
    return 0


def check_deploy(arguments: argparse.Namespace) -> int:
    config_env = arguments.config_env or "default"
    parameters = deploy_parameters(config_env, arguments.config_file)
    where = f"{arguments.config_file.name} [{config_env}.deploy.parameters]"
    check_parameters(parameters, where)
    print(f"the {config_env} environment's parameters are valid ({len(parameters)} set)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    parser = Parser(prog="python -m ops", description=__doc__)
    parser.add_argument("--stack", help="a deployed stack's name (default: the local stack)")
    parser.add_argument("--config-env", help="the stack samconfig.toml names for ENV")
    parser.add_argument(
        "--config-file", type=Path, default=SAMCONFIG, help="samconfig.toml (as sam's option)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("backfill", help="fill or refill the cache from Supabase now")
    command.add_argument("--no-wait", action="store_true")
    command.add_argument("--timeout", type=float, default=300.0)
    command = commands.add_parser(
        "rebuild", help="rebuild one table's list as a fresh version (readers served meanwhile)"
    )
    command.add_argument("--table", required=True)
    command.add_argument("--no-wait", action="store_true")
    command.add_argument("--timeout", type=float, default=600.0)
    command = commands.add_parser("heal", help="one reconcile cycle of every table, now")
    command.add_argument("--no-wait", action="store_true")
    command.add_argument("--timeout", type=float, default=300.0)
    command = commands.add_parser("dlq", help="list the dead-letter queue, with why")
    command.add_argument("--limit", type=int, default=100)
    command = commands.add_parser("redrive", help="move the dead-letter queue back")
    command.add_argument("--wait", action="store_true", help="wait until they are processed")
    command.add_argument("--timeout", type=float, default=300.0)
    command = commands.add_parser("verify", help="report drift between cache and Supabase")
    command.add_argument("--table", action="append", help="only this table (repeatable)")
    commands.add_parser("status", help="queue depths and cached tables")
    commands.add_parser("check", help="every column the table policies name exists")
    commands.add_parser("webhook-sql", help="the SQL that creates the Database Webhooks")
    command = commands.add_parser("account-setup", help="API Gateway's CloudWatch role, once")
    command.add_argument("--check", action="store_true", help="only report; exit 1 if unset")
    commands.add_parser("check-deploy", help="check samconfig's parameters before a deploy")
    arguments = parser.parse_args(argv)

    if arguments.command == "account-setup":
        return account_setup(arguments)
    if arguments.command == "check-deploy":
        return check_deploy(arguments)
    target = resolve_target(arguments.stack, arguments.config_env, arguments.config_file)
    handlers = {
        "backfill": backfill,
        "rebuild": rebuild,
        "heal": heal,
        "dlq": dlq,
        "redrive": redrive_command,
        "verify": verify,
        "status": status,
        "check": check,
        "webhook-sql": webhook_sql,
    }
    return handlers[arguments.command](target, arguments)


if __name__ == "__main__":
    sys.exit(main())

"""Operator commands under moto: the queues and table of template.yaml, no stack running."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops.account import ROLE_NAME, current_role, ensure_log_role
from ops.backfill import request_reconcile, request_resync, wait_until_drained
from ops.dead_letters import list_dead_letters, logged_error_finder, redrive
from ops.target import TargetNotFound, deployed_target, stack_name_from_config
from tests.conftest import EmulatedAws
from waituntil.core.contracts import Change


def _change(key: int, correlation_id: str = "req-1") -> str:
    return Change(
        type="UPDATE",
        schema_name="public",
        table="articles",
        key=key,
        record={"id": key, "title": "t"},
        received_at=datetime(2026, 11, 29, tzinfo=UTC),
        correlation_id=correlation_id,
    ).to_message()


def _bodies(aws: EmulatedAws, url: str) -> list[str]:
    return sorted(message["Body"] for message in aws.queue_messages(url))


def test_dlq_lists_each_message_with_why_and_leaves_it_there(aws: EmulatedAws) -> None:
    # Given a dead-lettered change and a message that is not a change at all
    dlq = aws.stack.dlq_url
    aws.sqs.send_message(QueueUrl=dlq, MessageBody=_change(7, "req-7"))
    aws.sqs.send_message(QueueUrl=dlq, MessageBody='{"type": "TRUNCATE"}')

    # When the dead-letter queue is listed
    letters = list_dead_letters(aws.sqs, dlq)

    # Then both are described, each with its reason
    by_kind = {letter.change is None: letter for letter in letters}
    assert len(letters) == 2
    change = by_kind[False].change
    assert change is not None and (change.table, change.key) == ("articles", 7)
    assert "correlation_id req-7" in by_kind[False].reason
    assert "cannot parse" in by_kind[True].reason
    assert "req-7" in by_kind[False].summary()
    # And listing removed nothing: both are visible again at once
    assert len(aws.queue_messages(dlq)) == 2


def test_dlq_reason_comes_from_the_consumers_logged_error_when_there_are_logs(
    aws: EmulatedAws,
) -> None:
    # Given the consumer's log group holding an error line about one correlation id
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName="consumer")
    logs.create_log_stream(logGroupName="consumer", logStreamName="s")
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    lines = [
        {"level": "INFO", "message": "batch", "correlation_id": "req-9"},
        {"level": "ERROR", "message": "table sync failed", "correlation_id": "req-9",
         "exception_name": "DependencyUnavailable"},
    ]  # fmt: skip
    logs.put_log_events(
        logGroupName="consumer",
        logStreamName="s",
        logEvents=[{"timestamp": now_ms, "message": json.dumps(line)} for line in lines],
    )
    aws.sqs.send_message(QueueUrl=aws.stack.dlq_url, MessageBody=_change(9, "req-9"))

    # When the dead-letter queue is listed with the log lookup
    (letter,) = list_dead_letters(
        aws.sqs, aws.stack.dlq_url, explain=logged_error_finder(logs, "consumer")
    )

    # Then the reason is the consumer's error
    assert letter.reason == "table sync failed DependencyUnavailable"


def test_redrive_moves_everything_back_and_counts_it(aws: EmulatedAws) -> None:
    # Given 23 dead letters (more than one SQS batch)
    bodies = sorted(_change(key) for key in range(23))
    for body in bodies:
        aws.sqs.send_message(QueueUrl=aws.stack.dlq_url, MessageBody=body)

    # When they are redriven
    moved = redrive(aws.sqs, aws.stack.dlq_url, aws.stack.queue_url)

    # Then all 23 moved, unchanged, and the dead-letter queue is empty
    assert moved == 23
    assert _bodies(aws, aws.stack.queue_url) == bodies
    assert aws.queue_messages(aws.stack.dlq_url) == []


def test_redrive_of_an_empty_queue_moves_nothing(aws: EmulatedAws) -> None:
    # Given an empty dead-letter queue
    # When it is redriven
    moved = redrive(aws.sqs, aws.stack.dlq_url, aws.stack.queue_url)
    # Then nothing moved and nothing appeared on the change queue
    assert moved == 0
    assert aws.queue_messages() == []


def test_backfill_queues_the_resync_message_the_consumer_knows(aws: EmulatedAws) -> None:
    # Given the template's change queue
    # When a backfill is requested
    message_id, change = request_resync(aws.sqs, aws.stack.queue_url, "public")

    # Then one RESYNC of every table is queued, in the shared message contract
    (message,) = aws.queue_messages()
    assert message["MessageId"] == message_id
    queued = Change.from_message(message["Body"])
    assert (queued.type, queued.table, queued.key) == ("RESYNC", "*", None)
    assert queued.correlation_id == change.correlation_id.lower() == change.correlation_id
    assert queued.correlation_id.startswith("backfill-")


def test_waiting_for_the_queue_reports_whether_it_drained(aws: EmulatedAws) -> None:
    # Given a change queue with one message
    aws.sqs.send_message(QueueUrl=aws.stack.queue_url, MessageBody=_change(1))
    # When waiting briefly, then after it is consumed
    busy = wait_until_drained(aws.sqs, aws.stack.queue_url, timeout_s=0)
    aws.queue_messages()
    idle = wait_until_drained(aws.sqs, aws.stack.queue_url, timeout_s=0)
    # Then the first wait reports not drained, the second drained
    assert (busy, idle) == (False, True)


# ----- finding a deployed stack ---------------------------------------------------------------


def _deploy_stand_in(aws: EmulatedAws, outputs: dict[str, str]) -> None:
    """A CloudFormation stack with the outputs given, and a consumer with an environment."""
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="consumer", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto3.client("lambda").create_function(
        FunctionName="swu-consumer",
        Runtime="python3.13",
        Role=role,
        Handler="consumer.handler.lambda_handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        Environment={"Variables": {"CACHED_TABLES": "articles, authors", "PRIMARY_KEY": "id"}},
    )
    template: dict[str, Any] = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(
        StackName="swu-test", TemplateBody=json.dumps(template)
    )


def test_a_deployed_stack_is_found_from_its_outputs_and_consumer(aws: EmulatedAws) -> None:
    # Given a deployed stack with the project's outputs
    _deploy_stand_in(
        aws,
        {
            "ChangeQueueUrl": aws.stack.queue_url,
            "DeadLetterQueueUrl": aws.stack.dlq_url,
            "CacheTableName": aws.stack.table_name,
            "ConsumerFunctionName": "swu-consumer",
        },
    )

    # When it is resolved by name
    target = deployed_target("swu-test", boto3.Session())

    # Then its queues, tables and the consumer's log group come from AWS, not from typing
    assert (target.queue_url, target.dlq_url) == (aws.stack.queue_url, aws.stack.dlq_url)
    assert target.cached_tables == ["articles", "authors"]
    assert target.log_group == "/aws/lambda/swu-consumer"


def test_a_stack_without_the_projects_outputs_is_refused(aws: EmulatedAws) -> None:
    # Given a stack that is not this project's
    _deploy_stand_in(aws, {"Something": "else"})
    # When it is resolved, then it is refused with the missing outputs named
    with pytest.raises(TargetNotFound, match="ChangeQueueUrl"):
        deployed_target("swu-test", boto3.Session())


def test_config_environments_name_their_stacks() -> None:
    # Given samconfig.toml
    # When the stack names of its environments are read
    names = [stack_name_from_config(env) for env in ("default", "prod")]
    # Then they are the two stacks it deploys, and an unknown environment is refused
    assert names == ["supabase-waituntil-dev", "supabase-waituntil-prod"]
    with pytest.raises(TargetNotFound):
        stack_name_from_config("staging")


# ----- the account's API Gateway log role ---------------------------------------------------------


@pytest.fixture
def moto_account(monkeypatch: pytest.MonkeyPatch) -> Any:
    # AWS managed policies (AmazonAPIGatewayPushToCloudWatchLogs) exist in moto only on request.
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    with mock_aws():
        yield boto3.client("apigateway"), boto3.client("iam")


def test_account_setup_sets_a_role_where_none_is_set(moto_account: Any) -> None:
    # Given an account and region whose API Gateway has no CloudWatch log role
    apigateway, iam = moto_account
    assert current_role(apigateway) is None

    # When the setup runs
    setting = ensure_log_role(apigateway, iam, sleep=lambda _: None)

    # Then a role API Gateway can assume, with the push-to-logs policy, is now the setting
    assert setting.changed
    assert current_role(apigateway) == setting.role_arn
    role = iam.get_role(RoleName=ROLE_NAME)["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"
    }
    policies = iam.list_attached_role_policies(RoleName=ROLE_NAME)["AttachedPolicies"]
    assert [policy["PolicyName"] for policy in policies] == ["AmazonAPIGatewayPushToCloudWatchLogs"]


def test_account_setup_never_overwrites_an_existing_role(moto_account: Any) -> None:
    # Given an account whose API Gateway already logs with another team's role
    apigateway, iam = moto_account
    theirs = iam.create_role(RoleName="theirs", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    apigateway.update_account(
        patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": theirs}]
    )

    # When the setup runs
    setting = ensure_log_role(apigateway, iam, sleep=lambda _: None)

    # Then it reports that role, changes nothing and creates no role of its own
    assert (setting.role_arn, setting.changed) == (theirs, False)
    assert current_role(apigateway) == theirs
    assert "already" in setting.report("eu-west-1")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=ROLE_NAME)


def test_heal_queues_the_reconcile_message_the_consumer_knows(aws: EmulatedAws) -> None:
    # Given the template's change queue
    # When one reconcile cycle is requested now (make heal)
    message_id, change = request_reconcile(aws.sqs, aws.stack.queue_url, "public")
    # Then one RECONCILE of every table is queued, in the shared message contract
    (message,) = aws.queue_messages()
    assert message["MessageId"] == message_id
    queued = Change.from_message(message["Body"])
    assert (queued.type, queued.table, queued.key) == ("RECONCILE", "*", None)
    assert queued.correlation_id == change.correlation_id
    assert queued.correlation_id.startswith("heal-")


def test_a_queue_holding_a_delayed_follow_up_has_not_drained(aws: EmulatedAws) -> None:
    # Given a reconcile's follow-up, delayed by the settle time
    aws.sqs.send_message(QueueUrl=aws.stack.queue_url, MessageBody=_change(1), DelaySeconds=15)
    # When waiting (make heal waits for the cycle and its follow-up)
    drained = wait_until_drained(aws.sqs, aws.stack.queue_url, timeout_s=0)
    # Then the queue is not taken for empty
    assert drained is False


def test_status_describes_each_tables_last_reconcile() -> None:
    from ops.__main__ import describe_heal_state
    from waituntil.cache.model import HealState

    # Given a table reconciled 42 s ago, with 3 rows healed so far, and one never reconciled
    now_ns = 1_800_000_000 * 10**9
    state = HealState(
        "articles", change_column="updated_at", last_ok_ns=now_ns - 42 * 10**9, healed_total=3
    )
    # When make status describes them / Then it gives the age, the count and the column
    assert describe_heal_state(state, now_ns) == (
        "last successful reconcile 42 s ago, 3 rows healed in all, change column updated_at"
    )
    assert describe_heal_state(None, now_ns) == "never reconciled"

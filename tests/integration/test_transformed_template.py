"""The CloudFormation that template.yaml becomes, checked without an AWS account.

samtranslator (the code CloudFormation runs for the SAM transform) and the SAM CLI live in the
SAM virtualenv, whose pins clash with the app's: the transform runs there as a subprocess
(``local.sam_transform``). ``make test`` creates that virtualenv first; a bare ``pytest``
without it skips these tests and says how to get them.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"

needs_sam = pytest.mark.skipif(
    not SAM_PYTHON.exists(), reason="no .venv-sam: `make validate` (or `make test`) creates it"
)


@cache
def _run(*arguments: str) -> Any:
    completed = subprocess.run(  # noqa: S603 (our own module, fixed arguments)
        [str(SAM_PYTHON), "-m", "local.sam_transform", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "eu-west-1", "SAM_CLI_TELEMETRY": "0"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout)


def transformed(read_access: str = "public") -> dict[str, Any]:
    result: dict[str, Any] = _run(
        "--parameter", "SupabaseUrl=/x/supabase-url", "--parameter", f"ReadAccess={read_access}"
    )
    return result


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def route_security(template: dict[str, Any]) -> dict[str, list[str]]:
    paths = template["Resources"]["Api"]["Properties"]["Body"]["paths"]
    return {
        path: [name for requirement in method.get("security", []) for name in requirement]
        for path, methods in paths.items()
        for method in methods.values()
    }


@needs_sam
@pytest.mark.parametrize("read_access", ["public", "iam"])
def test_the_api_has_one_stage_with_throttling_access_log_and_tracing(read_access: str) -> None:
    # Given the template transformed as CloudFormation would
    template = transformed(read_access)

    # When the stages it creates are listed: Stage resources, and the stage a Deployment
    # creates implicitly when it has a StageName (SAM's Swagger 2.0 default gives it "Stage")
    stages = of_type(template, "AWS::ApiGateway::Stage")
    deployments = of_type(template, "AWS::ApiGateway::Deployment")
    created = [stage["Properties"]["StageName"] for stage in stages.values()] + [
        deployment["Properties"]["StageName"]
        for deployment in deployments.values()
        if "StageName" in deployment["Properties"]
    ]

    # Then there is only v1: no unprotected "Stage" stage
    assert created == ["v1"]
    (stage,) = stages.values()
    assert stage["Properties"]["TracingEnabled"] is True
    assert "DestinationArn" in stage["Properties"]["AccessLogSetting"]
    assert stage["Properties"]["MethodSettings"][0]["ThrottlingRateLimit"] == {
        "Ref": "ApiRateLimit"
    }
    assert "openapi" in template["Resources"]["Api"]["Properties"]["Body"]


@needs_sam
def test_the_webhook_route_has_no_authorizer_and_public_reads_are_explicitly_open() -> None:
    # Given the default parameters (ReadAccess=public)
    template = transformed("public")

    # When the security of every route is read from the generated OpenAPI document
    security = route_security(template)

    # Then every route says NONE (the bearer check is in the receiver's code)
    assert security == {"/revalidate": ["NONE"], "/{table}": ["NONE"], "/{table}/{id}": ["NONE"]}


@needs_sam
def test_iam_read_access_signs_the_reads_and_leaves_the_webhook_alone() -> None:
    # Given ReadAccess=iam
    template = transformed("iam")

    # When the security of every route is read
    security = route_security(template)

    # Then only the read routes need SigV4, and API Gateway invokes the reader under its resource
    # policy rather than with the caller's credentials (which would also need
    # lambda:InvokeFunction: docs/SECURITY.md promises execute-api:Invoke is enough)
    assert security == {
        "/revalidate": ["NONE"],
        "/{table}": ["AWS_IAM"],
        "/{table}/{id}": ["AWS_IAM"],
    }
    paths = template["Resources"]["Api"]["Properties"]["Body"]["paths"]
    integrations = [
        m["x-amazon-apigateway-integration"] for p in paths.values() for m in p.values()
    ]
    assert [integration.get("credentials") for integration in integrations] == [None] * 3


@needs_sam
def test_every_request_body_reaches_the_functions_as_the_bytes_sent() -> None:
    # Given the transformed template (a REST API hands a text body over with U+FFFD in place
    # of invalid UTF-8, so the receiver could not refuse a body that is not UTF-8)
    api = transformed()["Resources"]["Api"]["Properties"]

    # When its binary media types are read, in the generated OpenAPI document and on the API
    binary = api["Body"]["x-amazon-apigateway-binary-media-types"]

    # Then every content type is binary: bodies arrive base64, byte for byte
    assert binary == ["*/*"]
    assert api["BinaryMediaTypes"] == ["*~1*"]


@needs_sam
def test_the_webhook_gate_guards_the_stage_the_api_deploys() -> None:
    # Given the transformed template
    template = transformed()
    (stage_id,) = of_type(template, "AWS::ApiGateway::Stage")
    (association,) = of_type(template, "AWS::WAFv2::WebACLAssociation").values()

    # When the gate's association is read
    arn = association["Properties"]["ResourceArn"]["Fn::Sub"]

    # Then it names the API's one stage (SAM's own logical id for it), so the web ACL is
    # attached once that stage exists, and it is a regional web ACL (API Gateway's kind)
    assert arn.endswith("::/restapis/${Api}/stages/${" + stage_id + "}")
    (acl,) = of_type(template, "AWS::WAFv2::WebACL").values()
    assert acl["Properties"]["Scope"] == "REGIONAL"
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": ["WebhookGate", "Arn"]}


@needs_sam
def test_the_webhook_metrics_read_fields_the_access_log_writes() -> None:
    # Given the stage's access log format and the metric filters on its log group
    template = transformed()
    (stage,) = of_type(template, "AWS::ApiGateway::Stage").values()
    written = set(json.loads(stage["Properties"]["AccessLogSetting"]["Format"]))
    filters = of_type(template, "AWS::Logs::MetricFilter")

    # When the fields each filter pattern reads are collected
    read = {
        field
        for metric_filter in filters.values()
        for field in re.findall(r"\$\.(\w+)", metric_filter["Properties"]["FilterPattern"])
    }

    # Then the log writes each of them (a renamed field would silence the alarm), and the
    # refusals alarm reads the metrics the filters publish
    assert read <= written, read - written
    published = {
        transformation["MetricName"]
        for metric_filter in filters.values()
        for transformation in metric_filter["Properties"]["MetricTransformations"]
    }
    alarm = template["Resources"]["WebhookRefusalsAlarm"]
    assert published == {"WebhookRequests", "WebhookRefusals"}
    assert published <= {name for _, name in _watched_metrics(alarm)}


@needs_sam
def test_sam_deploy_guided_finds_authorization_on_every_api_function() -> None:
    # Given the check `sam deploy --guided` runs before asking "<function> has no
    # authentication. Is this okay? [y/N]" (a default answer of N aborts the deploy)
    # When it is run on the template, with samconfig's parameters
    verdicts = _run("--auth-check")

    # Then no function would be asked about
    assert {name for name, _ in verdicts} == {"ReceiverFunction", "ReaderFunction"}
    assert all(has_auth for _, has_auth in verdicts), verdicts


@needs_sam
def test_every_alarm_notifies_the_alarm_topic() -> None:
    # Given the transformed template
    template = transformed()

    # When its alarms are read
    alarms = of_type(template, "AWS::CloudWatch::Alarm")

    # Then each one has the topic as its action, and the topic can have an e-mail subscriber
    assert alarms
    for logical_id, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
    (subscription,) = of_type(template, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}


def _namespace(value: Any) -> str:
    return str(value["Fn::Sub"]) if isinstance(value, dict) else str(value)


def _watched_metrics(alarm: dict[str, Any]) -> set[tuple[str, str]]:
    properties = alarm["Properties"]
    if "MetricName" in properties:
        return {(_namespace(properties["Namespace"]), properties["MetricName"])}
    stats = [
        query["MetricStat"]["Metric"] for query in properties["Metrics"] if "MetricStat" in query
    ]
    return {(_namespace(metric["Namespace"]), metric["MetricName"]) for metric in stats}


@needs_sam
def test_the_alarms_cover_what_an_operator_must_hear_about() -> None:
    # Given the transformed template
    alarms = of_type(transformed(), "AWS::CloudWatch::Alarm")

    # When the metrics every alarm watches are collected
    watched = set().union(*(_watched_metrics(alarm) for alarm in alarms.values()))

    # Then the DLQ, the queue's age, consumer errors and throttles, receiver 5xx, table sync
    # failures, resync drift, the webhook's refusals (receiver, throttle, gate), rows healed
    # (lost webhooks) and reconcile failures are watched
    ours = "SupabaseWaitUntil/${AWS::StackName}"
    assert watched == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        (ours, "QueueFailures"),
        (ours, "TableSyncFailures"),
        (ours, "ResyncDriftRows"),
        (ours, "WebhookRequests"),
        (ours, "WebhookRefusals"),
        ("AWS/WAFV2", "BlockedRequests"),
        (ours, "RowsHealed"),
        (ours, "ReconcileFailures"),
    }


def test_custom_metric_alarms_use_the_namespace_and_dimension_the_functions_emit() -> None:
    # Given the template as written (no transform needed) and Powertools' EMF convention: the
    # namespace from POWERTOOLS_METRICS_NAMESPACE and one dimension, service
    template = load_template()
    namespace = template["Globals"]["Function"]["Environment"]["Variables"][
        "POWERTOOLS_METRICS_NAMESPACE"
    ]

    # When every custom-metric alarm is read
    custom = [
        alarm["Properties"]
        for alarm in of_type(template, "AWS::CloudWatch::Alarm").values()
        if "MetricName" in alarm["Properties"] and alarm["Properties"]["Namespace"] == namespace
    ]

    # Then each names the consumer's service dimension
    assert {properties["MetricName"] for properties in custom} == {
        "TableSyncFailures",
        "ResyncDriftRows",
        "RowsHealed",
        "ReconcileFailures",
    }
    for properties in custom:
        assert properties["Dimensions"] == [{"Name": "service", "Value": "consumer"}]


@pytest.mark.parametrize("metric", ["RowsHealed", "ReconcileAge"])
def test_the_heal_is_drawn_per_table_with_the_dimensions_the_consumer_emits(
    metric: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from waituntil.sync.heal_metrics import record_age, record_healed

    # Given what the consumer emits per table for the metric (Powertools EMF lines)
    capsys.readouterr()
    if metric == "RowsHealed":
        record_healed("articles", 2)
    else:
        record_age("articles", 61.0)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    (per_table,) = [m for m in emitted if "table" in m]
    (directive,) = per_table["_aws"]["CloudWatchMetrics"]
    # When the dashboard's widgets are read from the template as written
    body = load_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    text = body if isinstance(body, str) else body[0]
    searches = re.findall(r"SEARCH\('\{\$\{Namespace\},([^}]*)\} MetricName=\\\"(\w+)\\\"", text)
    # Then a widget searches the metric by exactly the dimensions it is emitted with
    assert directive["Dimensions"] == [["service", "table"]]
    assert (",".join(directive["Dimensions"][0]), metric) in searches


def test_the_rows_healed_alarm_says_where_supabase_records_lost_webhooks() -> None:
    # Given the alarm that fires when the reconciler healed rows
    alarm = load_template()["Resources"]["RowsHealedAlarm"]["Properties"]
    # Then its text says webhooks are being lost and points at pg_net's record of them
    assert "Webhooks are being lost" in alarm["AlarmDescription"]
    assert "net._http_response" in alarm["AlarmDescription"]


@needs_sam
def test_the_dashboard_is_valid_json_and_shows_every_alarm() -> None:
    # Given the dashboard of the transformed template
    (dashboard,) = of_type(transformed(), "AWS::CloudWatch::Dashboard").values()
    body_template, variables = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]

    # When its ${...} placeholders are filled as CloudFormation would
    names = set(re.findall(r"\$\{([^}]+)\}", body_template))
    body = json.loads(re.sub(r"\$\{([^}]+)\}", lambda match: f"<{match.group(1)}>", body_template))

    # Then it is JSON, every placeholder is a variable, a parameter-free pseudo parameter or a
    # resource of the stack, and its alarm widget lists every alarm
    resources = set(transformed()["Resources"])
    for name in names:
        assert name in variables or name.startswith("AWS::") or name.split(".")[0] in resources
    alarm_widget = next(widget for widget in body["widgets"] if widget["type"] == "alarm")
    listed = {arn.strip("<>").removesuffix(".Arn") for arn in alarm_widget["properties"]["alarms"]}
    assert listed == set(of_type(transformed(), "AWS::CloudWatch::Alarm"))
    titles = {widget["properties"]["title"] for widget in body["widgets"]}
    assert "Latency, webhook to cache (ms)" in titles


@needs_sam
def test_the_layer_is_named_after_the_stack() -> None:
    # Given the transformed template
    (layer,) = of_type(transformed(), "AWS::Lambda::LayerVersion").values()

    # Then two stacks in one account never share a layer name
    assert layer["Properties"]["LayerName"] == {"Fn::Sub": "${AWS::StackName}-common"}


@pytest.mark.parametrize("environment", ["default", "prod"])
def test_samconfig_gives_every_parameter_a_value(environment: str) -> None:
    # Given samconfig.toml's deploy parameters for the environment, and the template
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = config[environment]["deploy"]["parameters"]["parameter_overrides"]
    given = dict(item.split("=", 1) for item in shlex.split(overrides))
    parameters = load_template()["Parameters"]

    # When the parameters a non-guided `sam deploy --config-env <env>` has no value for are
    # collected
    missing = [
        name for name, spec in parameters.items() if name not in given and "Default" not in spec
    ]

    # Then there are none, every override names a real parameter, and the environments keep
    # their own secrets and URL parameter
    assert missing == []
    assert set(given) <= set(parameters)
    for name in (
        "SupabaseUrl",
        "WebhookSecretName",
        "SupabaseKeySecretName",
        "SupabaseAnonKeySecretName",
        "WebhookGateKey",
    ):
        assert f"/{environment if environment == 'prod' else 'dev'}/" in given[name]

"""Template security as a test: template.yaml is read and held to six rules.

1. IAM statements the project writes allow no wildcard action or resource (and no ``*``
   principal), intrinsics (``!Sub``, ``!Join``) included; the one wildcard allowed ranges
   over the objects inside a resource the template creates (``${BlobBucket.Arn}/rows/*``).
   Functions use only SAM policy templates scoped to one resource.
2. No secret value in a parameter or an environment variable: secrets travel by name.
3. Every API route is throttled.
4. Every queue, table and bucket is encrypted at rest.
5. No function-level dead-letter queue on an SQS-triggered function (it applies only to
   async invokes; the queue's redrive policy is the DLQ there).
6. The webhook has its own edge: a web ACL on the API's stage blocks a request to it without
   the gate key, and its throttle is its own (tests/unit/test_webhook_edge.py runs them).

Each rule is also run against a template broken on purpose, so that each can fail.
checkov runs in `make lint` as well; this test states the project's own rules exactly.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.template import load_template

Template = dict[str, Any]

# SAM policy templates a function may use, each with the parameter that scopes it.
SCOPED_POLICY_TEMPLATES = {
    "SQSSendMessagePolicy": "QueueName",
    "SQSPollerPolicy": "QueueName",
    "DynamoDBReadPolicy": "TableName",
    "DynamoDBWritePolicy": "TableName",
    "DynamoDBCrudPolicy": "TableName",
    "AWSSecretsManagerGetSecretValuePolicy": "SecretArn",
}
# Names that say "this is a secret" (PRIMARY_KEY, a column name, is not one).
SECRET_WORDS = re.compile(
    r"secret|password|passwd|token|api_?key|service_?role|anon_?key|private_?key|access_?key|"
    r"credential",
    re.IGNORECASE,
)
# A value that is a name or ARN of a secret, not the secret itself.
BY_NAME = re.compile(r"(name|arn|id)$", re.IGNORECASE)
# What a secret looks like when it leaks into a literal: a JWT (Supabase keys are JWTs), a
# dynamic reference that would resolve the value into the template, a long random token.
SECRET_LOOKING = re.compile(
    r"^eyJ[\w-]+\.[\w-]+\.|\{\{resolve:(secretsmanager|ssm-secure)|^(?=.*\d)(?=.*[A-Za-z])[\w+/=-]{32,}$"
)


def resources(template: Template, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") in types:
            yield logical_id, resource


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement the template writes itself: inline function policies, IAM
    resources and resource policies (queues, topics, buckets)."""
    for logical_id, function in resources(template, "AWS::Serverless::Function"):
        for policy in _listed(function.get("Properties", {}).get("Policies", [])):
            if isinstance(policy, dict) and "Statement" in policy:
                for statement in _listed(policy["Statement"]):
                    yield logical_id, statement
    document_types = {
        "AWS::IAM::Policy": "PolicyDocument",
        "AWS::IAM::ManagedPolicy": "PolicyDocument",
        "AWS::SQS::QueuePolicy": "PolicyDocument",
        "AWS::SNS::TopicPolicy": "PolicyDocument",
        "AWS::S3::BucketPolicy": "PolicyDocument",
    }
    for logical_id, resource in resources(template, *document_types):
        document = resource.get("Properties", {}).get(document_types[resource["Type"]], {})
        for statement in _listed(document.get("Statement", [])):
            yield logical_id, statement
    for logical_id, role in resources(template, "AWS::IAM::Role"):
        for policy in role.get("Properties", {}).get("Policies", []):
            for statement in _listed(policy.get("PolicyDocument", {}).get("Statement", [])):
                yield logical_id, statement


def _text(value: Any) -> str:
    """The text an intrinsic stands for, references as ``${Name}``: where a wildcard can hide
    (``!Sub arn:${AWS::Partition}:s3:::*`` is as wide as ``*``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Fn::Sub":
            return _text(argument[0] if isinstance(argument, list) else argument)
        if function == "Fn::Join" and isinstance(argument, list) and len(argument) == 2:
            return str(argument[0]).join(_text(part) for part in _listed(argument[1]))
        if function == "Fn::GetAtt":
            target = argument if isinstance(argument, str) else ".".join(map(str, argument))
            return "${" + target + "}"
        if function == "Ref":
            return "${" + str(argument) + "}"
    return ""


def _has_wildcard(value: Any) -> bool:
    return any("*" in _text(item) for item in _listed(value))


def _wide_resources(template: Template, value: Any) -> list[str]:
    """Resources whose wildcard reaches past what this stack owns. Allowed: a wildcard over the
    objects inside a resource the template creates (``${BlobBucket.Arn}/rows/*``)."""
    owned = set(template.get("Resources", {}))
    wide = []
    for item in _listed(value):
        text = _text(item)
        inside = re.match(r"^\$\{(\w+)\.Arn\}/", text)
        if "*" in text and not (inside and inside.group(1) in owned):
            wide.append(text)
    return wide


def wildcard_iam(template: Template) -> list[str]:
    found = []
    for logical_id, statement in _statements(template):
        if statement.get("Effect") != "Allow":
            continue  # a Deny (TLS only, for instance) may be as wide as it likes
        if "NotAction" in statement or "NotResource" in statement:
            found.append(f"{logical_id}: NotAction/NotResource allows everything else")
        if _has_wildcard(statement.get("Action")):
            found.append(f"{logical_id}: wildcard action {statement.get('Action')}")
        for resource in _wide_resources(template, statement.get("Resource")):
            found.append(f"{logical_id}: wildcard resource {resource}")
        principal = statement.get("Principal")
        if principal == "*" or (
            isinstance(principal, dict) and _has_wildcard(principal.get("AWS"))
        ):
            found.append(f"{logical_id}: any principal")
    for logical_id, function in resources(template, "AWS::Serverless::Function"):
        for policy in _listed(function.get("Properties", {}).get("Policies", [])):
            if isinstance(policy, dict) and "Statement" in policy:
                continue
            if not isinstance(policy, dict) or len(policy) != 1:
                # A managed policy name or ARN (AmazonSQSFullAccess and the like).
                found.append(f"{logical_id}: managed policy {policy!r}")
                continue
            ((name, parameters),) = policy.items()
            scope = SCOPED_POLICY_TEMPLATES.get(name)
            if scope is None:
                found.append(f"{logical_id}: policy template {name} is not a scoped one")
            elif not isinstance(parameters, dict) or _has_wildcard(parameters.get(scope)):
                found.append(f"{logical_id}: {name} not scoped to one {scope}")
    return found


def _environments(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "Globals", template.get("Globals", {}).get("Function", {}).get("Environment", {})
    for logical_id, function in resources(
        template, "AWS::Serverless::Function", "AWS::Lambda::Function"
    ):
        yield logical_id, function.get("Properties", {}).get("Environment", {})


def secret_values(template: Template) -> list[str]:
    found = []
    for name, parameter in template.get("Parameters", {}).items():
        if SECRET_WORDS.search(name) and not BY_NAME.search(name):
            found.append(f"parameter {name} holds a secret; take its name instead")
        if SECRET_LOOKING.search(str(parameter.get("Default", ""))):
            found.append(f"parameter {name} has a default that looks like a secret")
    for where, environment in _environments(template):
        for name, value in (environment.get("Variables") or {}).items():
            if SECRET_WORDS.search(name) and not BY_NAME.search(name):
                found.append(f"{where}: environment variable {name} holds a secret")
            if SECRET_LOOKING.search(str(value)):
                found.append(f"{where}: environment variable {name} looks like a secret")
    return found


def _api_events(template: Template) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for logical_id, function in resources(template, "AWS::Serverless::Function"):
        for event_id, event in function.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") in ("Api", "HttpApi"):
                yield logical_id, event_id, event


def _throttled(api: dict[str, Any]) -> bool:
    properties = api.get("Properties", {})
    if api.get("Type") == "AWS::Serverless::HttpApi":
        settings = properties.get("DefaultRouteSettings", {})
        return "ThrottlingRateLimit" in settings and "ThrottlingBurstLimit" in settings
    return any(
        setting.get("ResourcePath") == "/*"
        and setting.get("HttpMethod") == "*"
        and "ThrottlingRateLimit" in setting
        and "ThrottlingBurstLimit" in setting
        for setting in properties.get("MethodSettings", [])
    )


def unthrottled_routes(template: Template) -> list[str]:
    found = []
    apis = template.get("Resources", {})
    for logical_id, event_id, event in _api_events(template):
        properties = event.get("Properties", {})
        api_ref = properties.get("RestApiId") or properties.get("ApiId")
        api_id = api_ref.get("Ref") if isinstance(api_ref, dict) else None
        route = f"{logical_id}.{event_id} {properties.get('Method')} {properties.get('Path')}"
        if api_id is None:
            found.append(f"{route}: on SAM's implicit API, which has no throttling")
        elif not _throttled(apis.get(api_id, {})):
            found.append(f"{route}: {api_id} has no throttling for every route")
    return found


def unencrypted_stores(template: Template) -> list[str]:
    found = []
    for logical_id, queue in resources(template, "AWS::SQS::Queue"):
        properties = queue.get("Properties", {})
        if properties.get("SqsManagedSseEnabled") is not True and not properties.get(
            "KmsMasterKeyId"
        ):
            found.append(f"{logical_id}: queue without SSE")
    for logical_id, table in resources(template, "AWS::DynamoDB::Table"):
        if table.get("Properties", {}).get("SSESpecification", {}).get("SSEEnabled") is not True:
            found.append(f"{logical_id}: table without SSESpecification.SSEEnabled")
    for logical_id, bucket in resources(template, "AWS::S3::Bucket"):
        rules = (
            bucket.get("Properties", {})
            .get("BucketEncryption", {})
            .get("ServerSideEncryptionConfiguration", [])
        )
        if not rules:
            found.append(f"{logical_id}: bucket without BucketEncryption")
    for logical_id, topic in resources(template, "AWS::SNS::Topic"):
        # A topic may stay unencrypted only with its reason written next to it (the alarm
        # topic: CloudWatch cannot publish under the AWS managed key, and it carries no rows).
        skips = topic.get("Metadata", {}).get("checkov", {}).get("skip", [])
        justified = any(s.get("id") == "CKV_AWS_26" and s.get("comment") for s in skips)
        if not topic.get("Properties", {}).get("KmsMasterKeyId") and not justified:
            found.append(f"{logical_id}: topic without KmsMasterKeyId or a written reason")
    return found


def dlq_on_sqs_functions(template: Template) -> list[str]:
    found = []
    global_dlq = template.get("Globals", {}).get("Function", {}).get("DeadLetterQueue")
    for logical_id, function in resources(template, "AWS::Serverless::Function"):
        properties = function.get("Properties", {})
        events = properties.get("Events", {}).values()
        if any(event.get("Type") == "SQS" for event in events) and (
            properties.get("DeadLetterQueue") or global_dlq
        ):
            found.append(
                f"{logical_id}: function-level DeadLetterQueue on an SQS-triggered function"
            )
    return found


def _gated_by_header(statement: dict[str, Any]) -> bool:
    """A statement that matches only when the x-webhook-gate header is not the key."""
    parts = statement.get("AndStatement", {}).get("Statements", [])
    return any(
        part.get("NotStatement", {})
        .get("Statement", {})
        .get("ByteMatchStatement", {})
        .get("FieldToMatch", {})
        .get("SingleHeader", {})
        .get("Name", "")
        .lower()
        == "x-webhook-gate"
        for part in parts
    )


def ungated_webhook(template: Template) -> list[str]:
    found = []
    acl_ids = [
        association["Properties"]["WebACLArn"].get("Fn::GetAtt", [None])[0]
        for _, association in resources(template, "AWS::WAFv2::WebACLAssociation")
        if "${Api.Stage}" in _text(association["Properties"]["ResourceArn"])
    ]
    gates = [
        rule
        for acl_id in acl_ids
        for rule in template["Resources"].get(acl_id, {}).get("Properties", {}).get("Rules", [])
        if "Block" in rule.get("Action", {}) and _gated_by_header(rule.get("Statement", {}))
    ]
    if not gates:
        found.append("no web ACL on the API's stage blocks a webhook without the gate key")
    settings = template["Resources"]["Api"]["Properties"].get("MethodSettings", [])
    if not any(
        setting.get("ResourcePath") == "/~1revalidate" and setting.get("HttpMethod") == "POST"
        for setting in settings
    ):
        found.append("POST /revalidate shares the read routes' throttle")
    return found


RULES: dict[str, Callable[[Template], list[str]]] = {
    "wildcard_iam": wildcard_iam,
    "secret_values": secret_values,
    "unthrottled_routes": unthrottled_routes,
    "unencrypted_stores": unencrypted_stores,
    "dlq_on_sqs_functions": dlq_on_sqs_functions,
    "ungated_webhook": ungated_webhook,
}


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


@pytest.mark.parametrize("rule", sorted(RULES))
def test_template_keeps_the_rule(template: Template, rule: str) -> None:
    # Given template.yaml / When the rule is checked / Then nothing breaks it
    assert RULES[rule](template) == []


def _function(template: Template, logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return properties


def _wildcard_statement(t: Template) -> None:
    _function(t, "ReceiverFunction")["Policies"].append(
        {"Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}
    )


def _wildcard_queue_policy_principal(t: Template) -> None:
    statement = t["Resources"]["ScheduleQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    statement[0]["Principal"] = "*"


def _wildcard_hidden_in_sub(t: Template) -> None:
    _function(t, "ReaderFunction")["Policies"].append(
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::*"},
                }
            ]
        }
    )


def _wildcard_in_someone_elses_bucket(t: Template) -> None:
    _function(t, "ReaderFunction")["Policies"].append(
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": {"Fn::Join": ["", ["arn:aws:s3:::", {"Ref": "Other"}, "/*"]]},
                }
            ]
        }
    )


def _managed_policy(t: Template) -> None:
    _function(t, "ConsumerFunction")["Policies"].append("AmazonSQSFullAccess")


def _unscoped_template(t: Template) -> None:
    _function(t, "ReaderFunction")["Policies"].append({"DynamoDBReadPolicy": {"TableName": "*"}})


def _secret_parameter(t: Template) -> None:
    t["Parameters"]["WebhookSecret"] = {"Type": "String", "NoEcho": True}


def _secret_in_environment(t: Template) -> None:
    _function(t, "ConsumerFunction")["Environment"]["Variables"]["SUPABASE_SERVICE_ROLE_KEY"] = (
        "placeholder"
    )


def _jwt_in_environment(t: Template) -> None:
    _function(t, "ReaderFunction")["Environment"]["Variables"]["SETTING"] = (
        "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl"
    )


def _dynamic_reference(t: Template) -> None:
    _function(t, "ReceiverFunction")["Environment"]["Variables"]["HOOK"] = (
        "{{resolve:secretsmanager:supabase-waituntil/webhook-secret}}"
    )


def _no_throttling(t: Template) -> None:
    del t["Resources"]["Api"]["Properties"]["MethodSettings"]


def _implicit_api_route(t: Template) -> None:
    _function(t, "ReaderFunction")["Events"]["Extra"] = {
        "Type": "Api",
        "Properties": {"Path": "/extra", "Method": "GET"},
    }


def _queue_without_sse(t: Template) -> None:
    del t["Resources"]["DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"]


def _table_without_sse(t: Template) -> None:
    del t["Resources"]["CacheTable"]["Properties"]["SSESpecification"]


def _bucket_without_encryption(t: Template) -> None:
    t["Resources"]["Bodies"] = {"Type": "AWS::S3::Bucket", "Properties": {}}


def _function_dlq(t: Template) -> None:
    _function(t, "ConsumerFunction")["DeadLetterQueue"] = {
        "Type": "SQS",
        "TargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
    }


def _global_dlq(t: Template) -> None:
    t["Globals"]["Function"]["DeadLetterQueue"] = {"Type": "SQS", "TargetArn": "arn"}


def _gate_not_associated(t: Template) -> None:
    del t["Resources"]["WebhookGateAssociation"]


def _gate_only_counts(t: Template) -> None:
    t["Resources"]["WebhookGate"]["Properties"]["Rules"][0]["Action"] = {"Count": {}}


def _webhook_shares_the_throttle(t: Template) -> None:
    settings = t["Resources"]["Api"]["Properties"]["MethodSettings"]
    settings[:] = [s for s in settings if s["ResourcePath"] == "/*"]


BREAKAGES: list[tuple[str, Callable[[Template], None]]] = [
    ("wildcard_iam", _wildcard_statement),
    ("wildcard_iam", _wildcard_queue_policy_principal),
    ("wildcard_iam", _wildcard_hidden_in_sub),
    ("wildcard_iam", _wildcard_in_someone_elses_bucket),
    ("wildcard_iam", _managed_policy),
    ("wildcard_iam", _unscoped_template),
    ("secret_values", _secret_parameter),
    ("secret_values", _secret_in_environment),
    ("secret_values", _jwt_in_environment),
    ("secret_values", _dynamic_reference),
    ("unthrottled_routes", _no_throttling),
    ("unthrottled_routes", _implicit_api_route),
    ("unencrypted_stores", _queue_without_sse),
    ("unencrypted_stores", _table_without_sse),
    ("unencrypted_stores", _bucket_without_encryption),
    ("dlq_on_sqs_functions", _function_dlq),
    ("dlq_on_sqs_functions", _global_dlq),
    ("ungated_webhook", _gate_not_associated),
    ("ungated_webhook", _gate_only_counts),
    ("ungated_webhook", _webhook_shares_the_throttle),
]


@pytest.mark.parametrize(
    ("rule", "breakage"), [pytest.param(r, b, id=b.__name__.strip("_")) for r, b in BREAKAGES]
)
def test_each_rule_catches_its_breakage(
    template: Template, rule: str, breakage: Callable[[Template], None]
) -> None:
    # Given the template broken in one way
    broken = copy.deepcopy(template)
    breakage(broken)
    # When the rule is checked / Then it names the problem
    assert RULES[rule](broken) != []

"""Print the CloudFormation that template.yaml becomes, without an AWS account.

Runs under the SAM virtualenv (``.venv-sam/bin/python -m local.sam_transform``), because
``samtranslator`` pins versions that clash with the app's lock. CloudFormation applies the
template's two transforms in order; this does the same:

1. ``AWS::LanguageExtensions``: the template uses it only to resolve ``Fn::If`` against
   parameter values before SAM runs (see ReaderFunction's events), so that is what is done here;
2. ``AWS::Serverless-2016-10-31``: samtranslator itself, the code CloudFormation runs.

Code locations are replaced by S3 URIs first, as ``sam package`` would. Options:
``--parameter Name=Value`` (repeatable) and ``--auth-check``, which prints instead what
``sam deploy --guided`` concludes per function with an event source (``[name, has auth]``),
the check that makes it ask "... has no authentication. Is this okay? [y/N]".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from local.template import TEMPLATE_PATH, Resolver, load_template

DROP = object()  # what Fn::If yields for AWS::NoValue: the key disappears


def resolve_conditions(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, Any]:
    """The template with every ``Fn::If`` replaced by the branch its condition selects."""
    resolver = Resolver(template, parameters=parameters)

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (walk(item) for item in value) if item is not DROP]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Fn::If"}:
            condition, when_true, when_false = value["Fn::If"]
            chosen = when_true if resolver.condition(condition) else when_false
            return DROP if chosen == {"Ref": "AWS::NoValue"} else walk(chosen)
        walked = {key: walk(item) for key, item in value.items()}
        return {key: item for key, item in walked.items() if item is not DROP}

    resolved: dict[str, Any] = walk(template)
    return resolved


def packaged(template: dict[str, Any]) -> dict[str, Any]:
    """Local code paths replaced by S3 URIs, as ``sam package`` leaves them."""
    function_globals = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in function_globals:
        function_globals["CodeUri"] = "s3://artifacts/functions.zip"
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in properties:
            properties["CodeUri"] = "s3://artifacts/function.zip"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = "s3://artifacts/layer.zip"
    return template


def transform(parameters: dict[str, str]) -> dict[str, Any]:
    from samtranslator.translator.transform import transform as sam_transform

    class NoManagedPolicies:
        """Only SAM policy templates are used, never managed policies by name."""

        def load(self) -> dict[str, str]:
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = packaged(resolve_conditions(load_template(), parameters))
    template["Transform"] = "AWS::Serverless-2016-10-31"
    values = {"AWS::Region": os.environ["AWS_DEFAULT_REGION"], **parameters}
    result: dict[str, Any] = sam_transform(template, values, NoManagedPolicies())
    return result


def guided_auth_check(parameters: dict[str, str]) -> list[tuple[str, bool]]:
    """What ``sam deploy --guided`` decides per function: (name, authorization defined)."""
    from samcli.commands.deploy.auth_utils import auth_per_resource
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    stacks, _ = SamLocalStackProvider.get_stacks(str(TEMPLATE_PATH), parameter_overrides=parameters)
    result: list[tuple[str, bool]] = auth_per_resource(stacks)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.sam_transform", description=__doc__)
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--auth-check", action="store_true")
    arguments = parser.parse_args(argv)
    parameters = dict(item.split("=", 1) for item in arguments.parameter)
    if arguments.auth_check:
        json.dump(guided_auth_check(parameters), sys.stdout)
    else:
        json.dump(transform(parameters), sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())

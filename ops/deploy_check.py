"""Check a deployment's parameters before ``sam deploy`` does: ``python -m ops check-deploy``.

CloudFormation checks a parameter's range, allowed values and pattern and the template's
``Rules`` only once the change set is being created, and the functions check ``CachedTables``
and ``TablePolicies`` only when they start, after the deploy (the reader refuses a service-role
table served publicly, the consumer fails every batch). ``make deploy`` runs this first, on the
parameters samconfig.toml gives the environment, so each of those mistakes is one line before
anything is built or changed.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.template import Resolver, load_template
from ops.mistakes import Mistake

if TYPE_CHECKING:
    from waituntil.core.table_policy import TablePolicy

ROOT = Path(__file__).resolve().parent.parent
SAMCONFIG = ROOT / "samconfig.toml"


def deploy_parameters(config_env: str, path: Path = SAMCONFIG) -> dict[str, str]:
    """The parameter overrides ``sam deploy --config-env <env>`` would pass."""
    config = tomllib.loads(path.read_text())
    if config_env not in config:
        known = ", ".join(name for name in config if isinstance(config[name], dict))
        raise Mistake(f"samconfig.toml has no environment {config_env!r} (it has: {known}): ENV=")
    overrides = (
        config[config_env].get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
    )
    if isinstance(overrides, list):
        overrides = " ".join(overrides)
    parameters: dict[str, str] = {}
    for item in shlex.split(str(overrides)):
        name, separator, value = item.partition("=")
        if not separator:
            raise Mistake(
                f"samconfig.toml [{config_env}.deploy.parameters]: {item!r} is not Name=Value"
            )
        parameters[name] = value
    return parameters


def check_parameters(
    parameters: dict[str, str], where: str, template: dict[str, Any] | None = None
) -> dict[str, TablePolicy]:
    """Raise a ``Mistake`` naming the first parameter CloudFormation or a function would refuse;
    else return the cached tables' policies, as the functions will read them.

    ``where`` says where the values come from, for the fix (``samconfig.toml [default...]``).
    """
    template = template or load_template()
    declared: dict[str, dict[str, Any]] = template["Parameters"]
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise Mistake(
            f"{where} sets {unknown[0]}, which template.yaml has no parameter for: "
            "remove or rename it"
        )
    for name, spec in declared.items():
        if name in parameters or "Default" in spec:
            value = parameters.get(name, str(spec.get("Default", "")))
            _check_one(name, value, spec, where)
        else:
            raise Mistake(
                f"{where} gives no value for {name}, which has no default: add {name}=..."
            )
    resolver = Resolver(template, parameters=parameters)
    for rule_name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not _evaluate(rule["RuleCondition"], resolver):
            continue
        for assertion in rule.get("Assertions", []):
            if not _evaluate(assertion["Assert"], resolver):
                text = " ".join(str(assertion.get("AssertDescription", rule_name)).split())
                raise Mistake(f"{where}: {text}")
    return _check_settings(resolver, where)


def _check_one(name: str, value: str, spec: dict[str, Any], where: str) -> None:
    fix = f"fix {name} in {where}"
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise Mistake(f"{name}={value!r} is not a number: {fix}") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise Mistake(f"{name}={value} is below its minimum {spec['MinValue']}: {fix}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise Mistake(f"{name}={value} is above its maximum {spec['MaxValue']}: {fix}")
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(item) for item in allowed]:
        shown = ", ".join(str(item) for item in allowed[:8]) + (", ..." if len(allowed) > 8 else "")
        raise Mistake(f"{name}={value!r} is not one of {shown}: {fix}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        raise Mistake(f"{name}={value!r} does not match {pattern}: {fix}")
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise Mistake(f"{name} is shorter than {spec['MinLength']} characters: {fix}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise Mistake(f"{name} is longer than {spec['MaxLength']} characters: {fix}")


def _evaluate(condition: Any, resolver: Resolver) -> bool:
    """The intrinsics a template Rule may use, as CloudFormation evaluates them."""
    ((function, argument),) = condition.items()
    if function == "Fn::Equals":
        left, right = (resolver.resolve(item) for item in argument)
        return str(left) == str(right)
    if function == "Fn::Contains":
        values, value = resolver.resolve(argument[0]), resolver.resolve(argument[1])
        return str(value) in [str(item) for item in values]
    if function == "Fn::Not":
        return not _evaluate(argument[0], resolver)
    if function == "Fn::And":
        return all(_evaluate(item, resolver) for item in argument)
    if function == "Fn::Or":
        return any(_evaluate(item, resolver) for item in argument)
    raise NotImplementedError(f"check-deploy does not evaluate {function} in a template Rule")


def _check_settings(resolver: Resolver, where: str) -> dict[str, TablePolicy]:
    """The table settings as the reader will validate them when it starts (the strictest of
    the three functions: it also refuses a service-role table served publicly)."""
    from pydantic import ValidationError

    from waituntil.core.settings import ReaderSettings

    environment = {
        "CACHE_TABLE_NAME": "check-deploy",
        "CACHED_TABLES": resolver.parameter("CachedTables"),
        "PRIMARY_KEY": resolver.parameter("PrimaryKey"),
        "LIST_ORDER": resolver.parameter("ListOrder"),
        "TABLE_POLICIES": resolver.parameter("TablePolicies"),
        "READ_ACCESS": resolver.parameter("ReadAccess"),
    }
    try:
        settings = ReaderSettings.model_validate(environment)
    except ValidationError as error:
        message = str(error.errors()[0]["msg"]).removeprefix("Value error, ")
        message = message.replace("TABLE_POLICIES", "TablePolicies")
        raise Mistake(f"{message}: fix CachedTables or TablePolicies in {where}") from None
    return {table: settings.policy(table) for table in settings.cached_tables}

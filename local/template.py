"""Read template.yaml so the local stack and the tests build exactly what is deployed.

Only the intrinsic functions the template uses are resolved (Ref, GetAtt, Sub, If, Equals,
Not, FindInMap); anything else raises, so a template change that the local stack cannot follow fails
loudly instead of drifting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation short-form tags as their long form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open() as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 (SafeLoader subclass)
    return document


@dataclass
class Resolver:
    """Resolves intrinsic functions against parameter values and created resources."""

    template: dict[str, Any]
    parameters: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # logical id -> physical id (Ref)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)  # (id, attr) -> value
    pseudo: dict[str, str] = field(
        default_factory=lambda: {
            "AWS::Region": "us-east-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "supabase-waituntil-local",
        }
    )

    def parameter(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        spec = self.template["Parameters"][name]
        if "Default" not in spec:
            raise KeyError(f"parameter {name} has no default; pass it explicitly")
        return str(spec["Default"])

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item) for key, item in value.items()}
        ((name, argument),) = value.items()
        if name == "Ref":
            return self._ref(argument)
        if name == "Fn::GetAtt":
            logical_id, attribute = argument
            return self.attributes[(logical_id, attribute)]
        if name == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda match: self._sub(match.group(1)), argument)
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        if name == "Fn::Equals":
            left, right = (self.resolve(item) for item in argument)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not self.resolve(argument[0])
        if name == "Fn::Or":
            return any(self.resolve(item) for item in argument)
        if name == "Fn::And":
            return all(self.resolve(item) for item in argument)
        if name == "Condition":
            return self.condition(argument)
        if name == "Fn::FindInMap":
            mapping, top, second = (self.resolve(item) for item in argument)
            return self.template["Mappings"][mapping][top][second]
        if name.startswith("Fn::"):
            raise NotImplementedError(f"the local stack does not resolve {name}")
        return {name: self.resolve(argument)}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return None
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.template.get("Parameters", {}):
            return self.parameter(name)
        return self.refs[name]

    def _sub(self, expression: str) -> str:
        if "." in expression:
            logical_id, attribute = expression.split(".", 1)
            return self.attributes[(logical_id, attribute)]
        return str(self._ref(expression))


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def function_environment(resolver: Resolver, logical_id: str) -> dict[str, str]:
    """The environment Lambda would give a function: Globals, then its own variables."""
    template = resolver.template
    global_vars = template.get("Globals", {}).get("Function", {}).get("Environment", {})
    own = template["Resources"][logical_id]["Properties"].get("Environment", {})
    merged = {**global_vars.get("Variables", {}), **own.get("Variables", {})}
    resolved = {name: resolver.resolve(value) for name, value in merged.items()}
    return {name: str(value) for name, value in resolved.items() if value is not None}


def function_property(template: dict[str, Any], logical_id: str, name: str) -> Any:
    """A function property, falling back to Globals as SAM does."""
    own = template["Resources"][logical_id]["Properties"]
    if name in own:
        return own[name]
    return template.get("Globals", {}).get("Function", {}).get(name)


def queue_visibility_timeout_s(template: dict[str, Any], logical_id: str = "ChangeQueue") -> int:
    """A queue's visibility timeout as the template sets it (SQS's default, 30 s, if unset):
    what the local stack's shorter, local-only one stands in for."""
    properties = template["Resources"][logical_id]["Properties"]
    return int(Resolver(template).resolve(properties.get("VisibilityTimeout", 30)))

"""Which stack a command acts on: a deployed one (by name) or the running local one."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from ops.mistakes import Mistake

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

    from waituntil.adapters.cache_store import CacheStore
    from waituntil.adapters.supabase_source import SupabaseSource
    from waituntil.core.table_policy import TablePolicy

ROOT = Path(__file__).resolve().parent.parent
# The outputs every command may need; a stack without them is not one of ours.
REQUIRED_OUTPUTS = (
    "ChangeQueueUrl",
    "DeadLetterQueueUrl",
    "CacheTableName",
    "ConsumerFunctionName",
)


class TargetNotFound(Mistake):
    """No stack to act on: not deployed under that name, or no local stack running."""


@dataclass(frozen=True)
class Target:
    """A stack's resources, as its outputs and its consumer's environment name them."""

    description: str
    outputs: dict[str, str]
    consumer_environment: dict[str, str]
    session: boto3.Session = field(repr=False)
    endpoint_url: str | None = None
    log_group: str | None = None  # the consumer's; None where there are no CloudWatch logs
    # The receiver's variables where no Lambda API has them (the local stack); else read there.
    receiver_environment: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)  # the deployed stack's

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    @cached_property
    def sqs(self) -> SQSClient:
        client: SQSClient = self.client("sqs")
        return client

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self.client("dynamodb")
        return client

    @cached_property
    def secrets(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self.client("secretsmanager")
        return client

    @property
    def queue_url(self) -> str:
        return self.outputs["ChangeQueueUrl"]

    @property
    def dlq_url(self) -> str:
        return self.outputs["DeadLetterQueueUrl"]

    @property
    def cached_tables(self) -> list[str]:
        tables = self.consumer_environment.get("CACHED_TABLES", "")
        return [table.strip() for table in tables.split(",") if table.strip()]

    @property
    def schema_name(self) -> str:
        return self.consumer_environment.get("SUPABASE_SCHEMA", "public")

    @property
    def primary_key(self) -> str:
        return self.consumer_environment.get("PRIMARY_KEY", "id")

    def cache_store(self) -> CacheStore:
        from waituntil.adapters.cache_store import CacheStore

        return CacheStore(self.outputs["CacheTableName"], self.dynamodb)

    def consumer_source(self) -> tuple[SupabaseSource, dict[str, TablePolicy]]:
        """Supabase as the consumer reads it: its URL, keys and per-table policies."""
        from waituntil.adapters.supabase_source import ApiKey, SupabaseSource
        from waituntil.core.settings import ConsumerSettings

        settings = ConsumerSettings.model_validate(self.consumer_environment)
        policies = {table: settings.policy(table) for table in settings.cached_tables}

        def secret(name: str | None) -> ApiKey:
            def read(*, fresh: bool = False) -> str:
                # Every call reads Secrets Manager: an operator command runs once.
                return str(self.secrets.get_secret_value(SecretId=name or "")["SecretString"])

            return read

        keys = {
            "service": secret(settings.supabase_key_secret_name),
            "anon": secret(settings.supabase_anon_key_secret_name),
        }
        source = SupabaseSource(
            settings.supabase_url, keys, policies, schema_name=settings.schema_name
        )
        return source, policies

    def supabase_credentials(self) -> tuple[str, str]:
        """The project URL and the service-role key the consumer reads with (never printed)."""
        environment = self.consumer_environment
        secret = self.secrets.get_secret_value(SecretId=environment["SUPABASE_KEY_SECRET_NAME"])
        return environment["SUPABASE_URL"], secret["SecretString"]


def deployed_target(stack_name: str, session: boto3.Session | None = None) -> Target:
    """A deployed stack, from its CloudFormation outputs and its consumer's configuration."""
    session = session or boto3.Session()
    cloudformation = session.client("cloudformation")
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except cloudformation.exceptions.ClientError as error:
        if "does not exist" not in str(error):
            raise  # credentials, permissions: ops.mistakes words those
        raise TargetNotFound(
            f"no stack named {stack_name} in {session.region_name}: deploy it (make deploy), "
            "or name another (STACK=<name>, or ENV=<samconfig environment>)"
        ) from error
    outputs = {item["OutputKey"]: item["OutputValue"] for item in stacks[0].get("Outputs", [])}
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise TargetNotFound(f"stack {stack_name} has no outputs {missing}: not this project?")
    configuration = session.client("lambda").get_function_configuration(
        FunctionName=outputs["ConsumerFunctionName"]
    )
    return Target(
        description=f"stack {stack_name} ({session.region_name})",
        outputs=outputs,
        consumer_environment=configuration.get("Environment", {}).get("Variables", {}),
        session=session,
        # Lambda's default group unless the function names its own (the template does).
        log_group=(configuration.get("LoggingConfig") or {}).get("LogGroup")
        or f"/aws/lambda/{configuration['FunctionName']}",
        parameters={
            p["ParameterKey"]: p["ParameterValue"] for p in stacks[0].get("Parameters", [])
        },
    )


def local_target(state: dict[str, Any]) -> Target:
    """The local stack (``make dev``), from the state file it writes."""
    consumer = state["functions"]["ConsumerFunction"]
    session = boto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (moto's fixed test credentials)
        aws_session_token="testing",  # noqa: S106
        region_name=state["region"],
    )
    return Target(
        description=f"the local stack (pid {state['pid']})",
        outputs=state["outputs"],
        consumer_environment={**consumer["environment"], **(state.get("environment") or {})},
        session=session,
        endpoint_url=state["aws_endpoint"],
        receiver_environment=state["functions"].get("ReceiverFunction", {}).get("environment", {}),
    )


def stack_name_from_config(config_env: str, path: Path = ROOT / "samconfig.toml") -> str:
    """The stack name samconfig.toml gives an environment (what `sam deploy` would deploy)."""
    config = tomllib.loads(path.read_text())
    for section in ("deploy", "global"):
        name = config.get(config_env, {}).get(section, {}).get("parameters", {}).get("stack_name")
        if name:
            return str(name)
    known = ", ".join(name for name, value in config.items() if isinstance(value, dict))
    raise TargetNotFound(
        f"samconfig.toml has no stack_name for environment {config_env!r} (it has: {known}): "
        "ENV=<one of them>, or STACK=<name>"
    )


def resolve_target(
    stack: str | None, config_env: str | None, config_file: Path = ROOT / "samconfig.toml"
) -> Target:
    """STACK= wins, then an environment of samconfig.toml, then the running local stack."""
    if stack:
        return deployed_target(stack)
    if config_env:
        return deployed_target(stack_name_from_config(config_env, config_file))
    from local.state_file import read_state, state_path

    state = read_state(state_path())
    if state is None:
        raise TargetNotFound(
            "no local stack is running (start `make dev`), and no STACK=<name> was given"
        )
    if "outputs" not in state:
        raise TargetNotFound("the running local stack is older than this command: restart make dev")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return local_target(state)

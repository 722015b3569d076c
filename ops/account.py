"""The account-level API Gateway setting REST API logging needs: a one-time step per region.

API Gateway writes a stage's access log with one role per account and region (the
"CloudWatch log role ARN" of its settings, ``AWS::ApiGateway::Account``). In an account or
region where it was never set, creating our stage fails with "CloudWatch Logs role ARN must be
set in account settings to enable logging". The stack does not set it: the setting is shared
by every REST API of the account in that region, outlives any one stack, and a stack that set
it would overwrite whatever another team configured. So this sets it only where nothing is
set, and otherwise reports the existing role and changes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

ROLE_NAME = "apigateway-cloudwatch-logs"
PUSH_TO_LOGS_POLICY = (
    "arn:{partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
)
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "apigateway.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass(frozen=True)
class AccountSetting:
    role_arn: str | None
    changed: bool

    def report(self, region: str) -> str:
        if self.role_arn is None:
            return (
                f"API Gateway in {region} has no CloudWatch log role: the first deploy would fail "
                "creating its stage. Run `make account-setup` once for this account and region."
            )
        if self.changed:
            return f"API Gateway in {region} now logs with {self.role_arn} (it had no role)."
        return f"API Gateway in {region} already logs with {self.role_arn}; nothing changed."


def current_role(apigateway: Any) -> str | None:
    arn: str | None = apigateway.get_account().get("cloudwatchRoleArn") or None
    return arn


def ensure_log_role(
    apigateway: Any,
    iam: Any,
    *,
    partition: str = "aws",
    attempts: int = 10,
    sleep: Any = time.sleep,
) -> AccountSetting:
    """Set the account's log role if, and only if, none is set."""
    existing = current_role(apigateway)
    if existing is not None:
        return AccountSetting(existing, changed=False)
    role_arn = _role(iam, partition)
    # A new role takes a few seconds to be usable by API Gateway ("The role ARN does not have
    # required permissions set to API Gateway") while IAM propagates it.
    for attempt in range(attempts):
        try:
            apigateway.update_account(
                patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": role_arn}]
            )
            return AccountSetting(role_arn, changed=True)
        except apigateway.exceptions.BadRequestException:
            if attempt == attempts - 1:
                raise
            sleep(2 + attempt)
    raise AssertionError("unreachable")


def _role(iam: Any, partition: str) -> str:
    try:
        arn: str = iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
        return arn
    except iam.exceptions.NoSuchEntityException:
        pass
    arn = iam.create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
        Description="API Gateway writes REST API logs to CloudWatch Logs (account setting).",
    )["Role"]["Arn"]
    iam.attach_role_policy(
        RoleName=ROLE_NAME, PolicyArn=PUSH_TO_LOGS_POLICY.format(partition=partition)
    )
    return arn

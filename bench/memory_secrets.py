"""Secrets Manager answered in process (``GetSecretValue`` only), for a fresh interpreter that
must not import moto before it has measured a function's cold start."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse


class MemorySecrets:
    def __init__(self, values: dict[str, str]) -> None:
        self._values = values  # secret name -> its current value

    def on_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        target = request.headers["X-Amz-Target"]
        operation = (target.decode() if isinstance(target, bytes) else str(target)).split(".")[-1]
        body = request.body
        params = json.loads(body.decode() if isinstance(body, bytes) else str(body or "{}"))
        name = params.get("SecretId", "")
        stage = params.get("VersionStage", "AWSCURRENT")
        answer: dict[str, Any]
        if operation != "GetSecretValue" or name not in self._values or stage != "AWSCURRENT":
            status, answer = (
                400,
                {
                    "__type": "ResourceNotFoundException",
                    "message": f"no {stage} value of {name} here",
                },
            )
        else:
            status, answer = (
                200,
                {
                    "ARN": f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}",
                    "Name": name,
                    "SecretString": self._values[name],
                    "VersionId": "v1",
                    "VersionStages": ["AWSCURRENT"],
                },
            )
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, status, headers, _Raw(json.dumps(answer).encode()))  # type: ignore[arg-type]


class _Raw(BytesIO):
    def stream(self, **_: Any) -> Any:
        contents = self.read()
        while contents:
            yield contents
            contents = self.read()

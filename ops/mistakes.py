"""One line per mistake: how every make target and operator command reports wrong input.

A command raises ``Mistake`` for input the user can correct, with a message that names the
problem and the fix. ``run`` prints it as one line on stderr and exits 2. Mistakes that come
out of libraries (no AWS credentials or region, AWS unreachable, a stack that does not exist,
settings that fail validation, a port in use) are worded here, in one place, so each command
need not catch them. Anything else is a fault of ours: one line that names it, exit 1.
``DEBUG=1`` lets the traceback through instead.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable
from typing import NoReturn

# Environment values that leave DEBUG off.
_OFF = ("", "0", "false", "no")


class Mistake(Exception):
    """Input the user can correct. The message is one line: the problem, then the fix."""


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as a ``Mistake`` (one line) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        raise Mistake(f"{message} (see `{self.prog} --help`)")


def explain(error: BaseException) -> str | None:
    """The one line for an error that is the user's to fix, or None for a fault of ours."""
    if isinstance(error, Mistake):
        return str(error)
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE and error.strerror:
        return error.strerror  # local.stack.PortInUse names the port and the make variable
    return _from_botocore(error) or _from_settings(error)


def _from_botocore(error: BaseException) -> str | None:
    try:
        from botocore import exceptions
    except ImportError:
        return None
    if isinstance(error, exceptions.NoCredentialsError | exceptions.PartialCredentialsError):
        return (
            "no AWS credentials found: run `aws configure` or `aws sso login`, or set "
            "AWS_PROFILE to a profile that has them"
        )
    if isinstance(error, exceptions.ProfileNotFound):
        return (
            f"{error}: set AWS_PROFILE to a profile of ~/.aws/config (aws configure list-profiles)"
        )
    if isinstance(error, exceptions.NoRegionError):
        return (
            "no AWS region: set AWS_DEFAULT_REGION, or a region in your AWS profile (aws configure)"
        )
    if isinstance(error, exceptions.EndpointConnectionError):
        endpoint = error.kwargs.get("endpoint_url")
        return f"cannot reach AWS at {endpoint}: check the network and AWS_REGION"
    if isinstance(error, exceptions.TokenRetrievalError | exceptions.SSOError):
        return "your AWS login has expired: run `aws sso login` again"
    if isinstance(error, exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        if "Expired" in code:
            return "your AWS session has expired: log in again (`aws sso login`, or new keys)"
        if code in ("UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch"):
            return f"AWS does not know these credentials ({code}): check AWS_PROFILE and its keys"
        if "AccessDenied" in code:
            return f"AWS refused: {message} - use a profile allowed to do this (AWS_PROFILE)"
    return None


def _from_settings(error: BaseException) -> str | None:
    try:
        from pydantic import ValidationError

        from waituntil.core.errors import SettingsRefused
    except ImportError:
        return None
    if isinstance(error, SettingsRefused):
        return str(error)
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        return f"{where}: {first['msg']}"
    return None


def debugging() -> bool:
    return os.environ.get("DEBUG", "").strip().lower() not in _OFF


def run(main: Callable[[], int], *, prefix: str = "error") -> int:
    """Run a command: its exit status, or one line on stderr for what went wrong."""
    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debugging():
            raise
        line = explain(error)
        if line is not None:
            print(f"{prefix}: {line}", file=sys.stderr)
            return 2
        first = (str(error).strip().splitlines() or [""])[0][:300]
        print(
            f"{prefix}: {type(error).__name__}: {first} (not a mistake of yours, it seems: "
            "DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1

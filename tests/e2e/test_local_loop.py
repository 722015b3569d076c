"""The local loop as docs/DEVELOPING.md and the banners print it: make dev, invoke, demo."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from local.dev import real_supabase
from local.stack import PipelineStack, PortInUse
from ops.mistakes import Mistake
from tests.conftest import ROOT, Database
from tests.e2e.conftest import QUIET

pytestmark = pytest.mark.e2e


def _python(*arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 (our interpreter and modules)
        [sys.executable, *arguments],
        cwd=ROOT,
        env={**os.environ, **QUIET, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(stream: IO[str], marker: str, timeout_s: float) -> str:
    """Lines of a child's output until one contains marker (the child is killed on timeout)."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never appeared in:\n{''.join(seen)}")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_the_banners_invoke_command_is_accepted_by_a_running_make_dev(tmp_path: Path) -> None:
    # Given `make dev` started as a user would, without WEBHOOK_SECRET (on free ports)
    state = tmp_path / "stack.json"
    dev = _python(
        "-m",
        "local.dev",
        "--port",
        "0",
        "--supabase-port",
        "0",
        env={"LOCAL_STACK_STATE": str(state), "WEBHOOK_SECRET": ""},
    )
    try:
        assert dev.stdout is not None
        banner = _read_until(dev.stdout, "make invoke FUNCTION=", timeout_s=60)

        # When the banner's own command is run against it
        invoke = subprocess.run(
            [
                sys.executable,
                "-m",
                "local.invoke",
                "ReceiverFunction",
                "events/receiver/insert.json",
            ],
            cwd=ROOT,
            env={**os.environ, "LOCAL_STACK_STATE": str(state)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        dev.send_signal(signal.SIGINT)
        out, err = dev.communicate(timeout=60)

    # Then the bundled event's secret is the stack's: 202, not 401
    assert "local-dev-secret   (the one events/ carry" in banner
    assert "/openapi.yaml" in banner
    assert invoke.returncode == 0, invoke.stderr
    assert json.loads(invoke.stdout)["statusCode"] == 202
    assert "running stack" in invoke.stderr
    # And Ctrl-C stops it cleanly
    assert dev.returncode == 0
    assert "stopped." in out
    assert "Traceback" not in err, err[max(0, err.find("Traceback") - 500) :][:3000]


def test_ctrl_c_during_make_demo_stops_cleanly() -> None:
    # Given `make demo` running, its stack up and writing
    demo = _python("-m", "local.demo")
    assert demo.stdout is not None
    _read_until(demo.stdout, "Writing to", timeout_s=60)

    # When the user presses Ctrl-C
    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=60)

    # Then it stops the stack and says so: no traceback, no error logged, exit 130 (SIGINT)
    assert demo.returncode == 130
    assert "interrupted; stack stopped." in out
    assert "Traceback" not in err, err[max(0, err.find("Traceback") - 500) :][:3000]
    assert "failed" not in err


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ([], "usage: make invoke FUNCTION=<logical id> EVENT=<event file>"),
        (["ReceiverFunction"], "usage: make invoke FUNCTION=<logical id> EVENT=<event file>"),
        (["ReceiverFunction", "events/receiver/nope.json"], "no event file events/receiver/nope"),
        (["ReceiverFunction", "events/receiver"], "is a folder"),
        (["ReceiverFunction", "README.md"], "cannot read the event README.md"),
        (["NoSuchFunction", "events/receiver/insert.json"], "no function 'NoSuchFunction'"),
    ],
)
def test_make_invoke_mistakes_are_one_line_without_a_traceback(
    arguments: list[str], expected: str, tmp_path: Path
) -> None:
    # Given no running stack / When make invoke is run with missing or wrong arguments
    result = subprocess.run(  # noqa: S603 (our interpreter and module)
        [sys.executable, "-m", "local.invoke", *arguments],
        cwd=ROOT,
        env={**os.environ, "LOCAL_STACK_STATE": str(tmp_path / "none.json")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it says what to do, briefly, and fails
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # usage adds the list of functions


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, (None, None)),
        (
            {"SUPABASE_URL": "https://x.supabase.co", "SUPABASE_KEY": "k"},
            ("https://x.supabase.co", "k"),
        ),
        ({"SUPABASE_URL": "", "SUPABASE_KEY": ""}, (None, None)),
    ],
)
def test_a_real_project_needs_both_url_and_key(
    environ: dict[str, str], expected: tuple[str | None, str | None]
) -> None:
    assert real_supabase(environ) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SUPABASE_URL": "https://x.supabase.co"}, "SUPABASE_URL is set but SUPABASE_KEY is not"),
        ({"SUPABASE_KEY": "k", "SUPABASE_URL": ""}, "SUPABASE_KEY is set but SUPABASE_URL is not"),
    ],
)
def test_half_a_real_project_is_an_error_not_a_fallback(
    environ: dict[str, str], message: str, tmp_path: Path
) -> None:
    # Given only one of SUPABASE_URL / SUPABASE_KEY
    with pytest.raises(Mistake, match=message):
        real_supabase(environ)
    # When make dev starts with it / Then it refuses in one line instead of using the local one
    dev = _python(
        "-m",
        "local.dev",
        "--port",
        "0",
        "--supabase-port",
        "0",
        env={
            "SUPABASE_URL": "",
            "SUPABASE_KEY": "",
            **environ,
            "LOCAL_STACK_STATE": str(tmp_path / "s.json"),
        },
    )
    _, err = dev.communicate(timeout=60)
    assert dev.returncode == 2
    assert err.startswith(f"cannot start the local stack: {message}")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("option", "what", "variable"),
    [
        ("port", "the local API", "PORT"),
        ("supabase_port", "the local Supabase API", "SUPABASE_PORT"),
    ],
)
def test_a_busy_port_names_itself_and_the_make_variable(
    taken_port: int, option: str, what: str, variable: str, database: Database
) -> None:
    # Given a port already taken / When the stack is asked to use it
    ports = {"port": 0, "supabase_port": 0, option: taken_port}
    stack = PipelineStack(
        port=ports["port"], supabase_port=ports["supabase_port"], database=database
    )
    with pytest.raises(PortInUse) as raised:
        stack.start()
    # Then the error names the port, what wanted it and how to choose another
    assert str(taken_port) in str(raised.value) and what in str(raised.value)
    assert f"make dev {variable}=<port>" in str(raised.value)


def test_a_killed_make_dev_leaves_no_postgresql_and_its_folder_in_use_is_one_line(
    tmp_path: Path,
) -> None:
    # Given `make dev DATA=<folder>` running
    data, pid_file = tmp_path / "db", tmp_path / "db" / "postgres" / "postmaster.pid"
    options = ["-m", "local.dev", "--port", "0", "--supabase-port", "0", "--data-dir", str(data)]
    dev = _python(*options, env={"LOCAL_STACK_STATE": str(tmp_path / "one.json")})
    assert dev.stdout is not None
    _read_until(dev.stdout, "make invoke FUNCTION=", timeout_s=90)
    # When a second one is started on the same folder
    second = _python(*options, env={"LOCAL_STACK_STATE": str(tmp_path / "two.json")})
    _, err = second.communicate(timeout=90)
    # Then it refuses in one line that names the server and the way out
    assert second.returncode == 2, err  # a mistake the user can fix (ops.mistakes)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("cannot start the local stack: ") and "is in use by PostgreSQL" in err
    # When the first is killed outright (no Ctrl-C, no cleanup of its own)
    dev.kill()
    dev.communicate(timeout=30)
    # Then its PostgreSQL stops all the same
    deadline = time.monotonic() + 30
    while pid_file.exists():
        assert time.monotonic() < deadline, "PostgreSQL outlived its make dev"
        time.sleep(0.1)

"""One clear line per mistake: every make target and operator command, given missing, wrong or
contradictory input, prints one line naming the problem and the fix, and exits non-zero.

Each row runs the command as a user would (``python -m local.dev``, ``python -m ops``,
``python -m local.invoke``, or ``make`` itself where the Makefile's variables are the input),
in a fresh process, and checks: the exit status is not 0; the output, less make's own
``make: *** ... Error 2`` trailer, is one line; that line has the words that name the problem
and the fix; no traceback. A real Supabase project is a small fake of its REST API
(``FakeProject``: its answers are Supabase's for a wrong key, a missing table or column).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from ops.dev_checks import check_project_tables, check_real_project
from ops.mistakes import Mistake
from waituntil.core.table_policy import TablePolicy

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _jwt(role: str) -> str:
    """A key shaped as Supabase's legacy JWT keys: only its role claim matters here."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part({'role': role, 'iss': 'supabase'})}.c2ln"


SERVICE_KEY, ANON_KEY = _jwt("service_role"), _jwt("anon")
WRONG_SERVICE_KEY, WRONG_ANON_KEY = SERVICE_KEY + "x", ANON_KEY + "x"


class FakeProject:
    """Supabase's REST API as far as ``make dev``'s checks read it: one table, ``articles``
    (id, title); 401 "Invalid API key" for an unknown key (Supabase's gateway), PostgREST's
    PGRST205 for a missing table and 42703 for a missing column."""

    COLUMNS: ClassVar[dict[str, set[str]]] = {"articles": {"id", "title"}}

    def __init__(self) -> None:
        project = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = project.answer(self.path, dict(self.headers.items()))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, target: str, headers: dict[str, str]) -> tuple[int, Any]:
        keys = {name.lower(): value for name, value in headers.items()}
        if keys.get("apikey") not in (SERVICE_KEY, ANON_KEY):
            return 401, {"message": "Invalid API key", "hint": "Double check your key."}
        url = urlsplit(target)
        table = url.path.removeprefix("/rest/v1/")
        if table not in self.COLUMNS:
            message = f"Could not find the table 'public.{table}' in the schema cache"
            return 404, {"code": "PGRST205", "message": message, "details": None, "hint": None}
        named: list[str] = []
        for name, value in parse_qsl(url.query):
            if name == "select":
                named += [column for column in value.split(",") if column != "*"]
            elif name == "order":
                named += [part.split(".")[0] for part in value.split(",")]
            elif name not in ("limit", "offset"):
                named.append(name)
        for column in named:
            if column not in self.COLUMNS[table]:
                message = f"column {table}.{column} does not exist"
                return 400, {"code": "42703", "message": message, "details": None, "hint": None}
        return 200, []

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class World:
    """What the rows may refer to: ``{project}``, ``{taken}``, ``{closed}``, ``{state}``,
    ``{samconfig}`` in a command or an environment value are filled in from here."""

    project: str
    taken: int
    closed: int
    tmp: Path
    values: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: self.values.get(m.group(1), m.group(0)), text)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    project = FakeProject()
    tmp = tmp_path_factory.mktemp("mistakes")
    with socket.socket() as taken, socket.socket() as closed:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        # A stack that looks running to the operator commands: this process's pid, two tables.
        state = tmp / "stack.json"
        state.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "region": "us-east-1",
                    "aws_endpoint": f"http://127.0.0.1:{closed.getsockname()[1]}",
                    "functions": {
                        "ConsumerFunction": {"environment": {"CACHED_TABLES": "articles,authors"}}
                    },
                    "outputs": {
                        "ChangeQueueUrl": "q",
                        "DeadLetterQueueUrl": "d",
                        "CacheTableName": "t",
                        "ConsumerFunctionName": "f",
                    },
                }
            )
        )
        world = World(project.url, taken.getsockname()[1], closed.getsockname()[1], tmp)
        world.values = {
            "project": project.url,
            "taken": str(world.taken),
            "closed": str(world.closed),
            "state": str(state),
            "nostate": str(tmp / "none.json"),
            "service_key": SERVICE_KEY,
            "anon_key": ANON_KEY,
            "wrong_service_key": WRONG_SERVICE_KEY,
            "wrong_anon_key": WRONG_ANON_KEY,
        }
        try:
            yield world
        finally:
            project.stop()


def _samconfig(world: World, overrides: str) -> str:
    path = world.tmp / f"samconfig-{abs(hash(overrides))}.toml"
    path.write_text(
        'version = 0.1\n[default.deploy.parameters]\nparameter_overrides = "'
        + overrides.replace('"', '\\"')
        + '"\n'
    )
    return str(path)


DEV = [sys.executable, "-m", "local.dev", "--port", "0", "--supabase-port", "0"]
OPS = [sys.executable, "-m", "ops"]
TABLE = Path(__file__).with_name("mistakes.yaml")


@dataclass(frozen=True)
class Case:
    command: list[str]
    environment: dict[str, str | None]  # None: taken away
    words: tuple[str, ...]  # the problem and the fix, as the line must say them
    samconfig: str | None = None  # parameter_overrides of a samconfig.toml made for the row


def _command(run: list[str]) -> list[str]:
    head, *rest = run
    return {
        "dev": [*DEV, *rest],
        "ops": [*OPS, *rest],
        "make": ["make", "-s", *rest],
        "deploy": [*OPS, "--config-file", "{samconfig}", "check-deploy", *rest],
    }[head]


def _cases() -> dict[str, Case]:
    """The rows of mistakes.yaml (a table, so that the data reads as one)."""
    rows = yaml.safe_load(TABLE.read_text())["cases"]
    return {
        row["id"]: Case(
            _command([str(part) for part in row["run"]]),
            dict(row.get("env") or {}),
            tuple(str(word) for word in row["says"]),
            row.get("samconfig"),
        )
        for row in rows
    }


CASES = _cases()
# The variables a row may set; all others of these are taken out of the user's environment.
CONTROLLED = {
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "SUPABASE_ANON_KEY",
    "TABLES",
    "POLICIES",
    "PORT",
    "SUPABASE_PORT",
    "DATA",
    "ENV",
    "STACK",
    "TABLE",
    "DEBUG",
    "LOCAL_STACK_STATE",
}


def _environment() -> dict[str, str]:
    """This process's environment without what a row controls, nor the user's AWS settings."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in CONTROLLED and not name.startswith("AWS_")
    }


def _run(command: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (the project's own commands)
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False
    )


def _without_make_trailer(output: str) -> list[str]:
    return [
        line
        for line in output.splitlines()
        if line.strip() and not line.startswith(("make: ***", "make[1]: ***"))
    ]


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_mistake_is_one_line_that_names_the_problem_and_the_fix(case: Case, world: World) -> None:
    # Given a command and input with one mistake in it
    if case.samconfig is not None:
        world.values["samconfig"] = _samconfig(world, case.samconfig)
    environment = _environment()
    for name, value in case.environment.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = world.fill(value)
    environment.setdefault("LOCAL_STACK_STATE", str(world.tmp / "none.json"))
    command = [world.fill(part) for part in case.command]

    # When it is run
    result = _run(command, environment)

    # Then it fails with one line that names the problem and the fix, and no traceback
    output = result.stdout + result.stderr
    lines = _without_make_trailer(output)
    assert result.returncode != 0, output
    assert "Traceback" not in output
    assert len(lines) == 1, output
    for word in case.words:
        assert world.fill(word) in lines[0], lines[0]


def test_debug_shows_the_traceback_a_mistake_hides(world: World) -> None:
    # Given a mistake that is one line without DEBUG
    case = CASES["dev: POLICIES not JSON"]
    environment = {**_environment(), "DEBUG": "1"}
    environment.update({name: str(value) for name, value in case.environment.items()})
    # When run with DEBUG=1 / Then the traceback is shown, ending in the same mistake
    result = _run(case.command, environment)
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "TablePolicies is not JSON" in result.stderr


def test_there_are_at_least_25_rows() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize(
    "policies",
    [
        {"articles": TablePolicy()},
        {"articles": TablePolicy(order="title.desc", columns="title", filter="title=neq.x")},
        {"articles": TablePolicy(role="service", public=True)},
    ],
)
def test_a_project_that_has_what_is_cached_passes_the_check(
    world: World, policies: dict[str, TablePolicy]
) -> None:
    # Given the fake project (articles: id, title) and policies that name only what it has
    keys = {"service": SERVICE_KEY, "anon": ANON_KEY}
    # When make dev's checks read it / Then nothing is refused
    check_real_project(world.project, SERVICE_KEY, ANON_KEY, policies)
    check_project_tables(world.project, keys, policies)
    # And the same check refuses a table the project lacks (it is not vacuous)
    with pytest.raises(Mistake, match=r"no table public\.drafts"):
        check_project_tables(world.project, keys, {**policies, "drafts": TablePolicy()})

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
REAL = {"SUPABASE_URL": "{project}", "SUPABASE_KEY": SERVICE_KEY, "SUPABASE_ANON_KEY": ANON_KEY}
SERVICE_PUBLIC = json.dumps({"articles": {"role": "service", "public": True}})
NO_AWS = {
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


@dataclass(frozen=True)
class Case:
    command: list[str]
    environment: dict[str, str]
    words: tuple[str, ...]  # the problem and the fix, as the line must say them
    samconfig: str | None = None  # parameter_overrides of a samconfig.toml made for the row


def _dev(environment: dict[str, str], *words: str) -> Case:
    """``make dev`` (on free ports) with ``environment``."""
    return Case(DEV, environment, words)


def _deploy(overrides: str, *words: str) -> Case:
    """``make deploy``'s first step on a samconfig.toml whose overrides are ``overrides``."""
    return Case([*OPS, "--config-file", "{samconfig}", "check-deploy"], {}, words, overrides)


# id -> the mistake. Every key of the environment not given is taken away (a user's own
# SUPABASE_URL or AWS settings must not leak into a row).
CASES: dict[str, Case] = {
    # make dev: a real project given in part, wrongly, or contradictorily
    "dev: URL without key": _dev(
        {"SUPABASE_URL": "https://x.supabase.co"}, "SUPABASE_KEY is not", "set both"
    ),
    "dev: key without URL": _dev({"SUPABASE_KEY": SERVICE_KEY}, "SUPABASE_URL is not", "set both"),
    "dev: no anon key": _dev(
        {"SUPABASE_URL": "{project}", "SUPABASE_KEY": SERVICE_KEY},
        "anon role's view",
        "set SUPABASE_ANON_KEY",
    ),
    "dev: URL not a URL": _dev(
        {**REAL, "SUPABASE_URL": "x.supabase.co"}, "is not a URL", "https://<ref>"
    ),
    "dev: Supabase unreachable": _dev(
        {**REAL, "SUPABASE_URL": "http://127.0.0.1:{closed}"},
        "cannot reach Supabase",
        "check SUPABASE_URL",
    ),
    "dev: wrong service key": _dev(
        {**REAL, "SUPABASE_KEY": WRONG_SERVICE_KEY, "POLICIES": SERVICE_PUBLIC},
        "refused SUPABASE_KEY",
        "Invalid API key",
        "copy it again",
    ),
    "dev: wrong anon key": _dev(
        {**REAL, "SUPABASE_ANON_KEY": WRONG_ANON_KEY}, "refused SUPABASE_ANON_KEY", "copy it again"
    ),
    "dev: anon key given as the service key": _dev(
        {**REAL, "SUPABASE_KEY": ANON_KEY}, "SUPABASE_KEY is the anon key", "service_role"
    ),
    "dev: service key given as the anon key": _dev(
        {**REAL, "SUPABASE_ANON_KEY": SERVICE_KEY},
        "SUPABASE_ANON_KEY is the service_role key",
        "set it to the anon key",
    ),
    "dev: a table the project lacks": _dev(
        {**REAL, "TABLES": "articles,drafts"}, "no table public.drafts", "fix TABLES="
    ),
    "dev: a key column the project lacks": _dev(
        {**REAL, "POLICIES": '{"articles": {"key": "slug"}}'},
        "column articles.slug does not exist",
        "fix POLICIES=",
    ),
    "dev: an order column the project lacks": _dev(
        {**REAL, "POLICIES": '{"articles": {"order": "rank.desc"}}'},
        "column articles.rank does not exist",
        "fix POLICIES=",
    ),
    "dev: a filter column the project lacks": _dev(
        {**REAL, "POLICIES": '{"articles": {"filter": "published=eq.true"}}'},
        "column articles.published does not exist",
        "fix POLICIES=",
    ),
    "dev: POLICIES not JSON": _dev(
        {"POLICIES": "{authors: slug}"}, "TablePolicies is not JSON", "fix"
    ),
    "dev: POLICIES for a table not cached": _dev(
        {"TABLES": "articles", "POLICIES": '{"authors": {"key": "slug"}}'},
        "not cached: ['authors']",
        "fix CachedTables or TablePolicies",
    ),
    "dev: a service view served publicly": _dev(
        {"POLICIES": '{"articles": {"role": "service"}}'}, "ReadAccess is public", '"public": true'
    ),
    "dev: a table name that is no identifier": _dev(
        {"TABLES": "my-table"}, "not a plain identifier", "fix CachedTables"
    ),
    "dev: DATA with a real project": Case(
        [*DEV, "--data-dir", "/tmp/x"], REAL, ("DATA=", "drop one")
    ),
    "dev: no such samconfig environment": Case(
        [*DEV, "--config-env", "staging"], REAL, ("no environment 'staging'", "ENV=")
    ),
    "dev: API port in use": Case(
        [*DEV, "--port", "{taken}"], {}, ("port {taken} is already in use", "make dev PORT=")
    ),
    "dev: stand-in port in use": Case(
        [*DEV, "--supabase-port", "{taken}"],
        {},
        ("port {taken} is already in use", "make dev SUPABASE_PORT="),
    ),
    "make dev PORT=abc": Case(
        ["make", "-s", "dev", "PORT=abc"], {}, ("PORT must be a port number", "make dev PORT=")
    ),
    # operator commands without a stack to act on, or without AWS
    **{
        f"make {command}: no stack running": Case(
            ["make", "-s", command],
            {"LOCAL_STACK_STATE": "{nostate}"},
            ("no local stack is running", "start `make dev`"),
        )
        for command in ("backfill", "dlq", "status", "redrive", "verify")
    },
    "ops: a deployed stack without AWS credentials": Case(
        [*OPS, "--stack", "mine", "status"], NO_AWS, ("no AWS credentials", "aws configure")
    ),
    "ops: a deployed stack without a region": Case(
        [*OPS, "--stack", "mine", "status"],
        {name: value for name, value in NO_AWS.items() if name != "AWS_DEFAULT_REGION"},
        ("no AWS region", "AWS_DEFAULT_REGION"),
    ),
    "ops: account-setup without AWS credentials": Case(
        [*OPS, "account-setup"], NO_AWS, ("no AWS credentials", "aws configure")
    ),
    "ops: an environment samconfig does not have": Case(
        [*OPS, "--config-env", "staging", "status"], {}, ("no stack_name", "ENV=")
    ),
    "make verify TABLE=<unknown>": Case(
        ["make", "-s", "verify", "TABLE=drafts"],
        {"LOCAL_STACK_STATE": "{state}"},
        ("drafts is not a cached table", "make verify TABLE="),
    ),
    "ops: an unknown command": Case([*OPS, "backup"], {}, ("invalid choice: 'backup'", "--help")),
    # make deploy's check of samconfig's parameters
    "deploy: a parameter above its maximum": _deploy(
        'ConsumerBatchSize="20000"',
        "ConsumerBatchSize=20000 is above its maximum 10000",
        "fix ConsumerBatchSize",
    ),
    "deploy: a value not allowed": _deploy(
        'ReadAccess="open"', "ReadAccess='open' is not one of public, iam", "fix ReadAccess"
    ),
    "deploy: contradictory batch settings": _deploy(
        'ConsumerBatchSize="50" ConsumerBatchingWindowSeconds="0"',
        "ConsumerBatchSize above 10 needs ConsumerBatchingWindowSeconds",
        "samconfig",
    ),
    "deploy: TablePolicies not JSON": _deploy(
        "TablePolicies='{articles}'",
        "TablePolicies is not JSON",
        "fix CachedTables or TablePolicies",
    ),
    "deploy: a parameter the template lacks": _deploy(
        'CachedTable="articles"', "sets CachedTable,", "no parameter for", "rename"
    ),
    "deploy: an e-mail that is none": _deploy(
        'AlarmEmail="ops"', "AlarmEmail='ops' does not match", "fix AlarmEmail"
    ),
    "deploy: a service view served publicly": _deploy(
        'TablePolicies=\'{"articles": {"role": "service"}}\'',
        "ReadAccess is public",
        "ReadAccess=iam",
    ),
    # make invoke
    "make invoke FUNCTION=<unknown>": Case(
        ["make", "-s", "invoke", "FUNCTION=Nope", "EVENT=events/receiver/insert.json"],
        {},
        ("no function 'Nope'", "known: ConsumerFunction"),
    ),
    "make invoke EVENT=<missing>": Case(
        ["make", "-s", "invoke", "FUNCTION=ReceiverFunction", "EVENT=events/nope.json"],
        {},
        ("no event file events/nope.json", "bundled ones are in events/"),
    ),
}
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
    environment.update({name: world.fill(value) for name, value in case.environment.items()})
    environment.setdefault("LOCAL_STACK_STATE", str(world.tmp / "none.json"))
    command = [world.fill(part) for part in case.command]

    # When it is run
    result = subprocess.run(  # noqa: S603 (the project's own commands)
        command,
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

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
    environment = _environment()
    environment.update({**case.environment, "DEBUG": "1"})
    # When run with DEBUG=1 / Then the traceback is shown, ending in the same mistake
    result = subprocess.run(  # noqa: S603
        case.command,
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
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

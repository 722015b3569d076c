"""``make dev``'s tables: the demo's with the local Supabase, what a deploy caches with a real
project (samconfig.toml), and ``TABLES=`` / ``POLICIES=`` over either."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from local.dev import DEV_PARAMETERS, dev_parameters
from ops.mistakes import Mistake

POLICIES = json.dumps({"authors": {"key": "slug", "order": "name"}})


def _samconfig(tmp_path: Path, overrides: str) -> Path:
    path = tmp_path / "samconfig.toml"
    path.write_text(
        "version = 0.1\n[default.deploy.parameters]\n"
        f"parameter_overrides = {json.dumps(overrides)}\n"
        '[prod.deploy.parameters]\nparameter_overrides = "CachedTables=\\"orders\\""\n'
    )
    return path


def _arguments(config_env: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(config_env=config_env, parameter=[])


def test_the_local_supabase_caches_the_demos_two_tables() -> None:
    # Given no real project and no TABLES= / When the parameters are chosen / Then the demo's
    assert dev_parameters(_arguments(), {}, real=False) == DEV_PARAMETERS


def test_a_real_project_caches_what_a_deploy_of_the_environment_would(tmp_path: Path) -> None:
    # Given samconfig.toml naming two tables and their policies (and other parameters)
    overrides = (
        f"SupabaseUrl=/x CachedTables=articles,authors TablePolicies='{POLICIES}' "
        "PrimaryKey=uuid MaxReceiveCount=8"
    )
    samconfig = _samconfig(tmp_path, overrides)
    # When make dev chooses its tables for a real project, for the default and prod environments
    default = dev_parameters(_arguments(), {}, real=True, samconfig=samconfig)
    prod = dev_parameters(_arguments("prod"), {}, real=True, samconfig=samconfig)
    # Then each is what that deploy caches, and nothing else of the deploy's
    assert default == {
        "CachedTables": "articles,authors",
        "TablePolicies": POLICIES,
        "PrimaryKey": "uuid",
    }
    assert prod == {"CachedTables": "orders"}


def test_a_real_project_without_overrides_gets_the_templates_defaults(tmp_path: Path) -> None:
    # Given samconfig.toml without table parameters (the template's default: articles by id)
    samconfig = _samconfig(tmp_path, "SupabaseUrl=/x")
    # When chosen / Then no demo table sneaks in
    assert dev_parameters(_arguments(), {}, real=True, samconfig=samconfig) == {}


@pytest.mark.parametrize("real", [False, True])
def test_tables_and_policies_on_the_command_line_win(real: bool, tmp_path: Path) -> None:
    # Given TABLES= alone, then TABLES= and POLICIES=
    samconfig = _samconfig(tmp_path, f"CachedTables=articles,authors TablePolicies='{POLICIES}'")
    only_tables = dev_parameters(_arguments(), {"TABLES": "orders"}, real=real, samconfig=samconfig)
    both = dev_parameters(
        _arguments(),
        {"TABLES": "orders", "POLICIES": '{"orders": {"key": "ref"}}'},
        real=real,
        samconfig=samconfig,
    )
    # Then TABLES= replaces the tables and drops the policies that named the others
    assert only_tables["CachedTables"] == "orders" and "TablePolicies" not in only_tables
    assert both["TablePolicies"] == '{"orders": {"key": "ref"}}'


def test_an_unknown_environment_is_a_mistake(tmp_path: Path) -> None:
    samconfig = _samconfig(tmp_path, "SupabaseUrl=/x")
    with pytest.raises(Mistake, match="no environment 'staging'"):
        dev_parameters(_arguments("staging"), {}, real=True, samconfig=samconfig)

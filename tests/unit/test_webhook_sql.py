"""`make webhook-sql`'s SQL: one trigger per table, every value a quoted SQL constant."""

from __future__ import annotations

import json
import re

import pytest

from ops.webhook_sql import render_webhook_sql

URL = "https://abc.execute-api.eu-west-1.amazonaws.com/v1/revalidate"


def test_one_trigger_per_table_with_the_url_secret_and_gate_key_as_arguments() -> None:
    # Given a secret with a quote in it, and a gate key
    sql = render_webhook_sql(URL, "s'cret", ["articles", "authors"], gate_key="g-key")
    # When rendered / Then one trigger per table, calling Supabase's function as the dashboard does
    triggers = re.findall(r'on "public"\."(\w+)"', sql)
    assert triggers == ["articles", "authors"]
    assert sql.count("create or replace trigger waituntil_webhook") == 2
    # And the headers argument is JSON holding both, its quote doubled for SQL
    literal = re.search(r"'POST', '((?:[^']|'')*)'", sql)
    assert literal is not None
    headers = json.loads(literal.group(1).replace("''", "'"))
    assert headers == {
        "Content-Type": "application/json",
        "Authorization": "Bearer s'cret",
        "X-Webhook-Gate": "g-key",
    }
    assert "'5000'" in sql


@pytest.mark.parametrize(
    ("url", "tables", "message"),
    [
        ("ftp://x", ["articles"], "must be http"),
        (URL, [], "no cached table"),
        (URL, ['articles"; drop table x; --'], "not a plain table"),
    ],
)
def test_what_cannot_be_wired_safely_is_refused(url: str, tables: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_webhook_sql(url, "secret", tables)

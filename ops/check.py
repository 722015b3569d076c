"""Check each cached table's policy against Supabase: the key, the order column and the change
column it names must exist. ``make dev`` runs it when the stack starts and ``make deploy`` after
deploying, so a policy naming a column the table lacks is one clear message, not a consumer
failing every change (or a reconcile failing every minute) until someone reads its log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from waituntil.adapters.supabase_source import SupabaseSource
    from waituntil.core.table_policy import TablePolicy


def policy_problems(source: SupabaseSource, policies: Mapping[str, TablePolicy]) -> list[str]:
    """One sentence per column a policy names that its table lacks; empty when all is well."""
    problems = []
    for table, policy in policies.items():
        named = {policy.key: "its key (key, or PrimaryKey)"}
        if policy.list_order.column:
            named.setdefault(policy.list_order.column, "its list order (order, or ListOrder)")
        if isinstance(policy.changed_at, str):
            named.setdefault(policy.changed_at, "its change column (changed_at)")
        for column in source.missing_columns(table, list(named)):
            problems.append(
                f"table {table} has no column {column!r}, which TablePolicies names as "
                f"{named[column]}"
            )
    return problems

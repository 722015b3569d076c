"""PostgREST-shaped errors: ``{"code", "details", "hint", "message"}`` plus an HTTP status."""

from __future__ import annotations

from typing import Any


class PostgrestError(Exception):
    """An error answered to the client as PostgREST does: JSON body, never a 500 for bad input."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        details: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint

    def to_json(self) -> dict[str, Any]:
        """The response body, with the four keys PostgREST always sends."""
        return {
            "code": self.code,
            "details": self.details,
            "hint": self.hint,
            "message": self.message,
        }

    def __repr__(self) -> str:
        return f"PostgrestError({self.status}, {self.code!r}, {self.message!r})"


def parse_error(what: str, text: str, details: str | None = None) -> PostgrestError:
    """PGRST100: the query string could not be parsed (PostgREST's wording)."""
    return PostgrestError(
        400,
        "PGRST100",
        f'"failed to parse {what} ({text})" (line 1, column 1)',
        details,
    )


def unknown_column(table: str, column: str) -> PostgrestError:
    """42703: a column named in select, filter or order does not exist."""
    return PostgrestError(400, "42703", f"column {table}.{column} does not exist")


def invalid_input(type_name: str, value: str) -> PostgrestError:
    """22P02: a filter value cannot be read as the column's type."""
    return PostgrestError(400, "22P02", f'invalid input syntax for type {type_name}: "{value}"')

"""Local development helpers (stand-ins for cloud services); not deployed."""

# The webhook secret the bundled events in events/ carry: the default of `make dev` and of
# `make invoke`'s ephemeral stack, so that the events work against either as they are.
BUNDLED_EVENTS_SECRET = "local-dev-secret"  # noqa: S105 (a public test value)

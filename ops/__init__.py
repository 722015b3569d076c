"""Operator commands (``make backfill|dlq|redrive|verify|status|account-setup``).

Each works against the running local stack (``make dev``) or a deployed stack (``STACK=name``),
whose resources are found from the stack's outputs and its consumer's configuration, never
typed in. Not deployed: the functions never import this package.
"""

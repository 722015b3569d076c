"""The consumer's flows: a batch, row changes, list publishing, full syncs. Depends on ``cache``
and ``core``, and on ports (Protocols), never on an adapter."""

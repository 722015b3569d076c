"""The read side: the read API's requests and answers, cursors, HTTP preconditions, and the
cache client any Python reader can use. Depends on ``cache`` and ``core``."""

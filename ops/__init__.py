"""Operator commands (``make backfill|dlq|redrive|verify|status|account-setup``).

Each works against the running local stack (``make dev``) or a deployed stack (``STACK=name``),
whose resources are found from the stack's outputs and its consumer's configuration, never
typed in. Not deployed: the functions never import this package.
"""

import sys
from pathlib import Path

# The shared package, as Lambda's layer puts it on the path of the functions: every command
# reads the cache and the settings with the functions' own code.
_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "common")
if _LAYER not in sys.path:
    sys.path.append(_LAYER)

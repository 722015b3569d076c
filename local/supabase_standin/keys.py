"""JWT-shaped API keys, like the ``service_role`` and ``anon`` keys of a Supabase project.

The stand-in tells the roles apart by comparing whole keys, never by trusting the claim; the
``role`` claim is there so code that decodes Supabase keys finds what it expects.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

TEN_YEARS_S = 10 * 365 * 24 * 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_service_key(secret: str | None = None, *, role: str = "service_role") -> str:
    """A signed HS256 JWT ``header.payload.signature`` (base64url) for ``role``.

    The payload is ``{"iss": "supabase-standin", "ref": "standin", "role": ..., "iat", "exp"}``
    (valid ten years). Without ``secret`` a random one is used, so two calls give two keys.
    """
    signing_secret = secret if secret is not None else secrets.token_urlsafe(32)
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {
        "iss": "supabase-standin",
        "ref": "standin",
        "role": role,
        "iat": now,
        "exp": now + TEN_YEARS_S,
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))
        for part in (header, payload)
    )
    signature = hmac.new(
        signing_secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256
    ).digest()
    return f"{signing_input}.{_b64url(signature)}"


def make_anon_key(secret: str | None = None) -> str:
    """A JWT-shaped ``anon`` key (the public key of a Supabase project; reads go through RLS)."""
    return make_service_key(secret, role="anon")


def key_claims(key: str) -> dict[str, Any]:
    """The (unverified) payload of a JWT-shaped key; {} when it is not one."""
    parts = key.split(".")
    if len(parts) != 3:
        return {}
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}

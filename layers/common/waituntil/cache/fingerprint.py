"""Row fingerprints the database can compute too: the cache's side of range fingerprints.

A table without a change column may opt in to fingerprints (``"fingerprint": true`` in its
policy, with the SQL function of ``supabase/migrations/*_waituntil_fingerprint.sql``). A range's
fingerprint is the sum, modulo 2^64, of a 64-bit hash of each of its rows: order-free and
additive (a range's is the sum of its parts'), so the reconciler bisects ranges whose sums
differ exactly as it bisects counts.

Both sides must hash the same bytes, and they do not hold the same text: the database has the
row, the cache has it as PostgREST rendered it with numbers parsed as doubles and re-serialized.
So the hash is of a canonical encoding of the JSON values, which each side computes from what
it has (the SQL function ``waituntil_canonical`` mirrors ``canonical`` below, case by case):

- null ``n``, true ``t``, false ``f``;
- an integer (JSON written without a point or an exponent) ``i<digits>;``;
- any other number ``d`` and the 16 hex digits of its IEEE-754 double (both sides parse the
  same decimal text to the same double, correctly rounded);
- a string ``s<length in UTF-8 bytes>:<text>``;
- an array ``[<items>]``; an object ``{<key as a string><value>...}``, keys in UTF-8 byte order.

The row hash is the first 16 hex digits of the MD5 of that encoding.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable
from typing import Any

MODULUS = 2**64


def canonical(value: Any) -> str:
    if value is None:
        return "n"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, int):
        return f"i{value};"
    if isinstance(value, float):
        return "d" + struct.pack(">d", value).hex()
    if isinstance(value, str):
        return f"s{len(value.encode())}:{value}"
    if isinstance(value, list):
        return "[" + "".join(canonical(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: key.encode())
        return "{" + "".join(canonical(key) + canonical(value[key]) for key in keys) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def row_hash(text: str) -> int:
    """The hash of a row from its cached JSON text."""
    digest = hashlib.md5(canonical(json.loads(text)).encode(), usedforsecurity=False)
    return int(digest.hexdigest()[:16], 16)


def combine(hashes: Iterable[int]) -> int:
    """A range's fingerprint from its rows' hashes (or its parts' fingerprints)."""
    return sum(hashes) % MODULUS

"""API key format: ``mgw_live_<43 url-safe chars>`` (256 bits of randomness).

Keys are stored as SHA-256 hex digests. A slow password hash would add
milliseconds to every uncached request and buy nothing: a 256-bit random
secret cannot be brute-forced from its digest.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "mgw_live_"
VISIBLE_CHARS = 6  # of the random part, shown in listings to tell keys apart


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def visible_prefix(key: str) -> str:
    """What listings show of a key, e.g. ``mgw_live_Ab3dE9``."""
    if key.startswith(KEY_PREFIX):
        return key[: len(KEY_PREFIX) + VISIBLE_CHARS]
    return key[:4] + "…"

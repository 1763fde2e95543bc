"""The hash chain that makes the audit trail tamper-evident.

Each writer process is a *stream*; its rows are numbered ``seq`` 1, 2, 3… and each
stores ``hash = sha256(prev_hash ‖ content)`` where ``prev_hash`` is the hash of the
row before it in the stream (:data:`GENESIS` for the first, or the boundary retention
recorded). Editing a row's content changes its hash; changing the stored hash too
breaks the next row's link; deleting a row leaves a gap in ``seq``.

What it does not prove: that the newest rows of a stream were not deleted or rewritten
together with every hash after them (no row follows to notice). Anchor the heads
(``mcpgw audit verify`` prints them) somewhere the database's owner cannot write to
close that gap.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Mapping
from typing import Any

import orjson

GENESIS = "0" * 64

# Every stored column except the position, the chain's own columns and the stream.
HASHED = (
    "id",
    "ts",
    "request_id",
    "trace_id",
    "actor_user_id",
    "actor_email",
    "actor_key_id",
    "actor_key_prefix",
    "actor_team",
    "actor_role",
    "auth_method",
    "client_ip",
    "user_agent",
    "client_name",
    "client_version",
    "protocol",
    "action",
    "route",
    "server",
    "target",
    "via",
    "arguments",
    "detail",
    "outcome",
    "error_code",
    "error",
    "latency_ms",
    "bytes_in",
    "bytes_out",
    "tokens",
    "stream",
    "seq",
)


_VALUES = operator.itemgetter(*HASHED)


def row_hash(row: Mapping[str, Any], prev_hash: str) -> str:
    """The hash of ``row`` (a mapping with every :data:`HASHED` column) after ``prev_hash``:
    SHA-256 of the JSON array ``[prev_hash, [values in HASHED order]]`` (orjson writes
    the UTC timestamp as RFC 3339, the same whether it was just made or read back)."""
    return values_hash(_VALUES(row), prev_hash)


def values_hash(values: tuple[Any, ...], prev_hash: str) -> str:
    """:func:`row_hash` of a row given as its values in :data:`HASHED` order."""
    return hashlib.sha256(orjson.dumps((prev_hash, values))).hexdigest()

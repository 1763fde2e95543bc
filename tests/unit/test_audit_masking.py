"""The audit trail's fast masking paths give exactly what the slow, general ones give.

``holds_secret``/``names_secret`` scan for literal hints before running the regexes;
``stored_json`` skips the structural walk when the JSON text shows nothing to mask.
Both are shortcuts: these properties fail if a shortcut ever lets a secret through or
changes a stored value."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.forming import mask_value, stored_json
from gateway.observability.masking import (
    _ANY,
    SECRET_FIELD_NAMES,
    holds_secret,
    names_secret,
)

# Text that often holds (pieces of) token shapes and secret-looking names.
_PIECES = [
    "mgw_live_AbCdEfGh12",
    "Bearer abc.DEF-ghi",
    "BEARER  x",
    "ghp_0123456789abcdefghijABCD",
    "github_pat_0123456789abcdefghij_x",
    "sk-ant-0123456789abcdefXYZ",
    "xoxb-0123456789ab",
    "AKIAABCDEFGHIJKLMNOP",
    "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl",
    "PassWord = hunter2",
    "API-KEY:x",
    "https://bob:pw@db/x",
    "Authorization",
    "private_key",
    "Credential",
    "hello",
    " ",
    "é",
    "pa\u017fs",  # long s: (?i) takes it for an "s"
    "to\u212aen",  # Kelvin sign: a "k"
    "\n",
    '"',
    "\\",
]
texts = st.lists(st.sampled_from(_PIECES) | st.text(max_size=8), max_size=6).map("".join)


@given(texts)
@settings(max_examples=400)
def test_the_hint_scans_agree_with_the_regexes(text: str) -> None:
    assert holds_secret(text) == (_ANY.search(text) is not None)
    assert names_secret(text) == (SECRET_FIELD_NAMES.search(text) is not None)


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@given(json_values, st.lists(st.sampled_from(["hunter2-sealed", "abc", "0123456789"]), max_size=2))
@settings(max_examples=400)
def test_stored_arguments_are_the_masked_walk_whatever_the_path(
    value: Any, sealed: list[str]
) -> None:
    secrets = tuple(sealed)
    if value is None:  # nothing to store
        assert stored_json(value, secrets) is None
        return
    slow = orjson.dumps(mask_value(value, secrets), option=orjson.OPT_SORT_KEYS).decode()
    if len(slow) <= 8192:
        assert stored_json(value, secrets) == slow


def test_a_sealed_secret_or_token_in_plain_arguments_is_masked() -> None:
    stored = stored_json(
        {"q": "use hunter2-sealed now", "t": "ghp_0123456789abcdefghijABCD"}, ("hunter2-sealed",)
    )
    assert stored is not None
    assert "hunter2-sealed" not in stored and "ghp_0123" not in stored
    assert stored_json({"Api_Key": "x1234"}) == '{"Api_Key":"***"}'

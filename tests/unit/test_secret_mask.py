"""One rule for masking a server's secrets in its results, whatever form they take.

The SDK path and REST mask a parsed result (:meth:`SecretMask.structure`); the fast
path relays bytes (:meth:`SecretMask.json`). Both must give the same message, however
the backend's encoder escaped it.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.observability.masking import SecretMask

SECRETS = [
    "tok_live_ABCdef123",  # verbatim in every encoder: masked on the bytes
    "pässwörd",  # non-ASCII: Python's json escapes it as \\u00e4
    "a/b/c/d",  # some encoders write \\/
    "<admin&co>",  # Go escapes <, > and & as \\u003c...
    'quo"te',  # always escaped
    "123456",  # could be read as a number outside a string
    "nabc",  # could run on from an escape such as \\n
]


def _encodings(message: object) -> list[bytes]:
    """The same message as different real encoders write it."""
    go_style = (
        json.dumps(message, ensure_ascii=False)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )
    return [
        orjson.dumps(message),  # orjson, Node's JSON.stringify: UTF-8, minimal escapes
        json.dumps(message).encode(),  # Python's default: ASCII only
        json.dumps(message, ensure_ascii=False).replace("/", "\\/").encode(),  # PHP-style
        go_style.encode(),
    ]


@pytest.mark.parametrize("secret", SECRETS)
def test_bytes_and_structure_give_the_same_message(secret: str) -> None:
    mask = SecretMask([secret])
    message = {
        "jsonrpc": "2.0",
        "id": "mcpgw-1",
        "result": {
            "content": [{"type": "text", "text": f"key={secret}\nline two {secret}"}],
            "structuredContent": {secret: [secret, 123456, f"x{secret}"]},
            "isError": False,
        },
    }
    expected = mask.structure(message)
    assert expected["result"]["content"][0]["text"] == "key=***\nline two ***"
    assert expected["result"]["structuredContent"] == {"***": ["***", 123456, "x***"]}
    for encoded in _encodings(message):
        assert orjson.loads(mask.json(encoded)) == expected, encoded


def test_a_numeric_secret_leaves_numbers_alone() -> None:
    mask = SecretMask(["123456"])
    masked = orjson.loads(mask.json(b'{"count":1234567,"text":"pin 123456"}'))
    assert masked == {"count": 1234567, "text": "pin ***"}


def test_an_escape_never_runs_into_a_secret() -> None:
    # "one\nabcd" holds a newline then "abcd": not the secret "nabcd", though its JSON
    # bytes (one\\nabcd) hold those letters.
    mask = SecretMask(["nabcd"])
    for encoded in _encodings({"text": "one\nabcd", "more": "nabcd"}):
        assert orjson.loads(mask.json(encoded)) == {"text": "one\nabcd", "more": "***"}


def test_short_values_are_not_masked_and_longest_goes_first() -> None:
    mask = SecretMask(["abc", "secret", "secret-extended"])
    assert mask.text("abc secret-extended secret") == "abc *** ***"
    assert not SecretMask(["", "ab"])  # nothing to mask: every path skips the work
    assert SecretMask(["ab"]).json(b'{"a":"ab"}') == b'{"a":"ab"}'


def test_token_shapes_in_a_result_are_the_tools_business() -> None:
    # A tool may return a token the user asked for; only the server's own secrets go.
    mask = SecretMask(["server-own-secret"])
    text = "new token ghp_abcdefghijklmnopqrstuvwxyz and server-own-secret"
    assert mask.text(text) == "new token ghp_abcdefghijklmnopqrstuvwxyz and ***"


def test_bytes_that_are_not_json_are_still_masked() -> None:
    mask = SecretMask(["pässwörd"])
    assert mask.json("not json pässwörd".encode()) == b"not json ***"


@settings(max_examples=300, deadline=None)
@given(
    secret=st.text(min_size=4, max_size=12),
    texts=st.lists(st.text(max_size=20), max_size=4),
)
def test_any_secret_in_any_message(secret: str, texts: list[str]) -> None:
    mask = SecretMask([secret])
    message = {"result": {"content": [{"text": t + secret + t} for t in texts], "n": 12}}
    expected = mask.structure(message)
    for encoded in _encodings(message):
        assert orjson.loads(mask.json(encoded)) == expected

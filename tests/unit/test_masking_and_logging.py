import json
import logging
from typing import cast

from mcp import types

from gateway.observability.logging import JsonFormatter, reset_request_id, set_request_id
from gateway.observability.masking import mask_mapping, mask_structure, mask_text
from gateway.servers.runtimes import CONNECTORS
from gateway.servers.runtimes.base import RuntimeContext, ServerSpec
from gateway.servers.runtimes.connection import McpConnection


def test_known_token_shapes_are_masked() -> None:
    samples = {
        "key mgw_live_AbCdEfGhIjKlMnOp end": "mgw_live_AbCdEfGhIjKlMnOp",
        "Authorization: Bearer abc.def-ghi": "abc.def-ghi",
        "token ghp_0123456789abcdefghijABCDEFGHIJ": "ghp_0123456789abcdefghijABCDEFGHIJ",
        "use sk-proj-0123456789abcdefghij please": "sk-proj-0123456789abcdefghij",
        "postgresql://bob:hunter2@db/x": "hunter2",
        "password=hunter2&x=1": "hunter2",
        "AKIAABCDEFGHIJKLMNOP": "AKIAABCDEFGHIJKLMNOP",
    }
    for text, secret in samples.items():
        masked = mask_text(text)
        assert secret not in masked, masked
        assert "***" in masked


def test_plain_text_is_untouched() -> None:
    assert mask_text("GET /api/v1/me 200 in 3 ms") == "GET /api/v1/me 200 in 3 ms"


def test_literal_extra_secrets_are_masked() -> None:
    assert mask_text("value is s3cr3t-v4lue", ("s3cr3t-v4lue",)) == "value is ***"


def test_mapping_masks_secret_named_fields_recursively() -> None:
    out = mask_mapping(
        {"api_key": "xyz", "nested": {"password": "p", "ok": "fine"}, "note": "Bearer qqq"}
    )
    assert out == {
        "api_key": "***",
        "nested": {"password": "***", "ok": "fine"},
        "note": "Bearer ***",
    }


def test_json_formatter_emits_one_masked_line_with_request_id() -> None:
    record = logging.makeLogRecord(
        {
            "name": "t",
            "levelname": "INFO",
            "levelno": 20,
            "msg": "got %s",
            "args": ("mgw_live_SECRETSECRETSECRET",),
            "token": "abc",
            "status": 200,
        }
    )
    token = set_request_id("req-1")
    try:
        line = JsonFormatter().format(record)
    finally:
        reset_request_id(token)
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["request_id"] == "req-1"
    assert payload["status"] == 200
    assert payload["token"] == "***"
    assert "SECRET" not in line


def test_secrets_in_nested_structures_are_masked_where_json_would_escape_them() -> None:
    secret = 'pä"ss\\wörd\n1'
    data = {"detail": [f"token {secret}", {"env": {secret: 3, "plain": f"x{secret}y"}}], "n": 1}
    masked = mask_structure(data, (secret,))
    assert masked == {"detail": ["token ***", {"env": {"***": 3, "plain": "x***y"}}], "n": 1}
    assert mask_structure(None, (secret,)) is None


def test_a_backend_error_data_secret_is_masked_despite_json_escapes() -> None:
    secret = 'Sch\u00e4tz"chen-42'
    spec = ServerSpec(id="i", name="s", type="uvx", config={}, secret_env={"TOKEN": secret})
    connection = McpConnection(spec, CONNECTORS["uvx"], cast(RuntimeContext, None))
    error = types.ErrorData(
        code=-32000,
        message=f"failed with {secret}",
        data={"env": {"TOKEN": secret}, "argv": ["--key", secret], "n": 2},
    )
    masked = connection._masked(error)
    assert secret not in json.dumps(masked.model_dump(), ensure_ascii=False)
    assert masked.message == "failed with ***"
    assert masked.data == {"env": {"TOKEN": "***"}, "argv": ["--key", "***"], "n": 2}

import json
import logging

from gateway.observability.logging import JsonFormatter, reset_request_id, set_request_id
from gateway.observability.masking import mask_mapping, mask_text


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

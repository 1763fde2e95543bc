"""Small pure pieces of the jobs core: the SSE parser the CLI uses, the job settings,
the kind registry."""

from __future__ import annotations

import os

import pytest

from gateway.cli_watch import parse_sse
from gateway.config import ConfigError, load_settings
from gateway.errors import InvalidInput
from gateway.jobs.kinds import ECHO, builtin_kinds


def test_parse_sse_events_comments_and_multiline_data() -> None:
    lines = [
        ": ping",
        "",
        "id: 1",
        "event: status",
        'data: {"status":',
        'data: "pending"}',
        "",
        "id: 2",
        "event: result",
        "data: not json",
        "",
    ]
    events = list(parse_sse(lines))
    assert [(e.id, e.event) for e in events] == [("1", "status"), ("2", "result")]
    assert events[0].data == {"status": "pending"}
    assert events[1].data == "not json"


def test_job_settings() -> None:
    assert load_settings().runs_embedded_worker
    with_redis = load_settings(redis_url="redis://127.0.0.1:6379/3")
    assert not with_redis.runs_embedded_worker
    assert load_settings(redis_url="redis://x", jobs_embedded_worker=True).runs_embedded_worker
    assert load_settings(redis_url="").redis_url is None
    with pytest.raises(ConfigError, match="MCPGW_REDIS_URL"):
        load_settings(redis_url="http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="MCPGW_JOBS_POLL_SECONDS"):
        load_settings(jobs_poll_seconds=0)


def test_kinds() -> None:
    kinds = builtin_kinds()
    assert kinds.names() == ["echo", "noop", "sleep"] and kinds.queues() == ["jobs"]
    with pytest.raises(ValueError, match="twice"):
        kinds.register(ECHO)
    with pytest.raises(InvalidInput):
        ECHO.validate({"surprise": 1})
    assert ECHO.summary({"value": "x" * 500}).endswith("…")


def test_an_embedded_worker_gets_the_gateways_telemetry_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker `serve` starts exports its jobs' spans where the gateway does, even
    when the gateway's settings did not come from the environment (headers as JSON)."""
    from pydantic import SecretStr

    from gateway.config import Settings
    from gateway.jobs.worker import worker_env

    settings = Settings(
        telemetry_exporter="otlp_http",
        telemetry_endpoint="http://127.0.0.1:4318",
        telemetry_headers={"x-team": "a"},
        telemetry_api_key=SecretStr("k"),
        telemetry_sample_ratio=0.5,
    )
    env = worker_env(settings)
    for name in [n for n in list(os.environ) if n.startswith("MCPGW_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("MCPGW_TELEMETRY_"):
            monkeypatch.setenv(name, value)
    seen = Settings()
    assert seen.telemetry_exporter == "otlp_http"
    assert seen.telemetry_endpoint == "http://127.0.0.1:4318"
    assert seen.telemetry_headers == {"x-team": "a"}
    assert seen.telemetry_api_key is not None and seen.telemetry_api_key.get_secret_value() == "k"
    assert seen.telemetry_sample_ratio == 0.5

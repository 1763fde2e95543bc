"""A telemetry change made through one replica reaches the others (they share the
database), on SQLite and PostgreSQL, without a restart."""

from __future__ import annotations

from gateway.auth.principal import Principal
from gateway.crypto import SecretBox
from gateway.db import Database
from gateway.observability.exporters import TelemetryConfig
from gateway.observability.settings import TelemetryService
from gateway.observability.tracing import Telemetry

BOX = SecretBox("k" * 40)
ADMIN = Principal(
    user_id="u1", email="a@example.com", name="a", role="admin", key_id="k", scopes=("*",)
)


async def test_a_change_on_one_replica_reaches_another(database: Database) -> None:
    one, two = Telemetry(), Telemetry()
    first, second = TelemetryService(database, BOX, one), TelemetryService(database, BOX, two)
    await first.start(TelemetryConfig())
    await second.start(TelemetryConfig())
    assert not one.enabled and not two.enabled
    assert await second.follow() is False  # nothing stored yet
    config = TelemetryConfig(
        exporter="otlp_http", endpoint="http://127.0.0.1:4318", api_key="secret-key-1234"
    )
    try:
        shown = await first.replace(ADMIN, config)
        assert shown["enabled"] is True and "secret-key-1234" not in str(shown)
        assert await first.follow() is False  # its own change: already applied
        assert await second.follow() is True
        assert two.enabled and second.config.api_key == "secret-key-1234"
        assert second.view(ADMIN)["source"] == "settings"
        # Off again, through the other replica.
        await second.replace(ADMIN, TelemetryConfig(exporter="none"))
        assert await first.follow() is True and not one.enabled
    finally:
        one.shutdown()
        two.shutdown()

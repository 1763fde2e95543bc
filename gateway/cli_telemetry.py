"""``mcpgw telemetry …``: where a running gateway sends its traces (``--url``/``--key``)."""

from __future__ import annotations

from typing import Annotated

import typer

from gateway.cli_client import (
    DEFAULT_URL,
    GatewayClient,
    KeyOption,
    UrlOption,
    json_option,
    print_json,
)

telemetry_app = typer.Typer(help="Tracing of a running gateway: show, set, test the exporter.")


@telemetry_app.command("show")
def show(url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """The tracing configuration (credentials are never shown)."""
    print_json(GatewayClient(url, key).request("GET", "/api/v1/settings/telemetry"))


@telemetry_app.command("set")
def set_config(
    config_json: Annotated[
        str, typer.Argument(help='The configuration, JSON: {"exporter": "otlp_http", …}.')
    ],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Replace the exporter at run time (no restart)."""
    body = json_option(config_json, "CONFIG_JSON")
    print_json(GatewayClient(url, key).request("PUT", "/api/v1/settings/telemetry", json=body))


@telemetry_app.command("test")
def send_test(url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Send a test span through the configured exporter; exit 1 unless it was delivered."""
    outcome = GatewayClient(url, key).request("POST", "/api/v1/settings/telemetry/test")
    typer.echo(outcome["message"])
    if not outcome["delivered"]:
        raise typer.Exit(1)

"""``mcpgw servers generate`` (a draft MCP server from API documentation) and ``mcpgw
skills generate`` (a draft skill from an intent) on a running gateway
(``--url``/``--key``); review the draft with ``mcpgw jobs approve|reject``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli_client import DEFAULT_URL, GatewayClient, KeyOption, UrlOption
from gateway.cli_jobs import watch_job
from gateway.cli_servers import _pairs, servers_app
from gateway.cli_skills import skills_app


@servers_app.command("generate")
def servers_generate(
    openapi: Annotated[
        Path | None,
        typer.Option(
            help="An OpenAPI 3.x / Swagger 2.0 file (JSON or YAML).", exists=True, dir_okay=False
        ),
    ] = None,
    spec_url: Annotated[
        str | None, typer.Option("--spec-url", help="Fetch the OpenAPI document here.")
    ] = None,
    docs_url: Annotated[
        str | None, typer.Option(help="A documentation page; the model writes the document.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="The server's name.")] = None,
    base_url: Annotated[str | None, typer.Option(help="Call the API here.")] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="A secret header the API wants, NAME=VALUE."),
    ] = None,
    test_calls: Annotated[
        bool, typer.Option(help="Let the job call the read-only tools against the API.")
    ] = False,
    watch: Annotated[bool, typer.Option(help="Follow the job until its draft is ready.")] = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Start a generation; prints the job id (with --watch: follows it to the draft)."""
    sources = [s for s in (openapi, spec_url, docs_url) if s is not None]
    if len(sources) != 1:
        raise typer.BadParameter("give exactly one of --openapi, --spec-url, --docs-url")
    body: dict[str, Any] = {"name": name, "base_url": base_url, "test_calls": test_calls}
    if openapi is not None:
        body["openapi"] = openapi.read_text()
    elif spec_url is not None:
        body["url"] = spec_url
    else:
        body["docs_url"] = docs_url
    if header:
        body["secret_headers"] = _pairs(header, "--header")
    client = GatewayClient(url, key)
    body = {k: v for k, v in body.items() if v is not None}
    job_id = str(client.request("POST", "/api/v1/servers/generate", json=body)["job_id"])
    typer.echo(job_id)
    if watch:
        watch_job(client, job_id)


@skills_app.command("generate")
def skills_generate(
    intent: Annotated[str, typer.Argument(help="What the skill should teach (10-2000 chars).")],
    server: Annotated[
        list[str] | None,
        typer.Option("--server", "-s", help="A server whose tools the skill teaches (repeat)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="The skill's name.")] = None,
    model: Annotated[
        bool | None,
        typer.Option(
            "--model/--template",
            help="Have the model write it, or fill the template "
            "(default: the model when one is configured).",
        ),
    ] = None,
    watch: Annotated[bool, typer.Option(help="Follow the job until its draft is ready.")] = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Start a skill generation; prints the job id (with --watch: follows it to the draft)."""
    body: dict[str, Any] = {"intent": intent, "servers": server or [], "name": name,
                            "model": model}  # fmt: skip
    client = GatewayClient(url, key)
    body = {k: v for k, v in body.items() if v is not None}
    job_id = str(client.request("POST", "/api/v1/skills/generate", json=body)["job_id"])
    typer.echo(job_id)
    if watch:
        watch_job(client, job_id)

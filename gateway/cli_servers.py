"""``mcpgw servers …`` and ``mcpgw tools …``: manage servers of a running gateway.

``mcpgw servers add NAME -- npx -y @modelcontextprotocol/server-everything`` reads
the command the way ``claude mcp add`` does: ``npx``, ``uvx`` and ``docker run``
commands become servers of those types, a URL becomes a ``remote`` server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from gateway.cli_client import (
    DEFAULT_URL,
    GatewayClient,
    KeyOption,
    UrlOption,
    json_option,
    print_json,
    print_table,
)

servers_app = typer.Typer(help="MCP servers registered with a running gateway (--url/--key).")
tools_app = typer.Typer(help="Tools of a running gateway (--url/--key).")

_DOCKER_VALUE_FLAGS = {
    "-e",
    "--env",
    "-p",
    "--publish",
    "-v",
    "--volume",
    "--name",
    "--network",
    "-w",
    "--workdir",
    "-u",
    "--user",
    "--entrypoint",
    "--memory",
    "--cpus",
}


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        out[key] = value
    return out


def parse_limits(
    call_timeout: float | None,
    max_request_bytes: int | None,
    tool_timeout: list[str] | None,
    tool_max_bytes: list[str] | None,
) -> dict[str, Any] | None:
    """The server's ``limits`` from the CLI options (None: none given); the gateway
    validates the values (a 422 names the field)."""
    limits: dict[str, Any] = {}
    if call_timeout is not None:
        limits["call_timeout_seconds"] = call_timeout
    if max_request_bytes is not None:
        limits["max_request_bytes"] = max_request_bytes
    tools: dict[str, dict[str, Any]] = {}
    for option, field, values, kind in (
        ("--tool-timeout", "call_timeout_seconds", tool_timeout, float),
        ("--tool-max-bytes", "max_request_bytes", tool_max_bytes, int),
    ):
        for tool, value in _pairs(values, option).items():
            try:
                tools.setdefault(tool, {})[field] = kind(value)
            except ValueError:
                raise typer.BadParameter(
                    f"{tool}: {value!r} is not a number", param_hint=option
                ) from None
    if tools:
        limits["tools"] = tools
    return limits or None


def parse_replicas(
    replica: list[str] | None, processes: int | None, strategy: str | None
) -> dict[str, Any] | None:
    """The server's ``config.replicas`` from the CLI options (None: none given):
    ``--replica URL`` or ``URL=WEIGHT`` (repeatable), ``--processes N``, ``--strategy``;
    the gateway validates them (a 422 names the field)."""
    out: dict[str, Any] = {}
    endpoints = []
    for item in replica or []:
        address, sep, weight = item.rpartition("=")
        if sep and weight.isdigit():
            endpoints.append({"url": address, "weight": int(weight)})
        else:
            endpoints.append({"url": item})
    if endpoints:
        out["endpoints"] = endpoints
    if processes is not None:
        out["count"] = processes
    if strategy is not None:
        out["strategy"] = strategy
    return out or None


def read_transforms(file: str) -> dict[str, Any]:
    """A server's ``transforms`` from a YAML (or JSON) file, ``-`` for stdin: the object
    itself, or a document with it under ``transforms``; the gateway checks it (a 422
    names the field)."""
    if file == "-":
        text = sys.stdin.read()
    else:
        path = Path(file)
        if not path.is_file():
            raise typer.BadParameter(f"no such file: {file}", param_hint="--transforms")
        text = path.read_text()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"not YAML: {exc}", param_hint="--transforms") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise typer.BadParameter("expected a mapping", param_hint="--transforms")
    if set(document) == {"transforms"} and isinstance(document["transforms"], dict):
        return dict(document["transforms"])
    return document


def parse_command(command: list[str]) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Turn ``npx …``/``uvx …``/``docker run …``/a URL into (type, config, env)."""
    if not command:
        raise typer.BadParameter(
            "give the server after '--': a URL, or an npx, uvx or docker run command",
            param_hint="COMMAND",
        )
    head, rest = command[0], command[1:]
    if head.startswith(("http://", "https://")):
        return "remote", {"url": head}, {}
    if head == "npx":
        args = list(rest)
        while args and args[0].startswith("-"):
            args.pop(0)  # -y / --yes and friends
        if not args:
            raise typer.BadParameter("npx needs a package", param_hint="COMMAND")
        package, version = args[0], None
        if package.rfind("@") > 0:  # name@version (not the scope's leading @)
            package, version = package[: package.rfind("@")], package[package.rfind("@") + 1 :]
        config: dict[str, Any] = {"package": package, "args": args[1:]}
        if version:
            config["version"] = version
        return "npx", config, {}
    if head == "uvx":
        args = list(rest)
        source = None
        if len(args) >= 2 and args[0] == "--from":
            source, args = args[1], args[2:]
        if not args:
            raise typer.BadParameter("uvx needs a package", param_hint="COMMAND")
        command_name, args = args[0], args[1:]
        package = source or command_name
        version = None
        if "==" in package:
            package, version = package.split("==", 1)
        config = {"package": package, "args": args}
        if command_name != package and source:
            config["command"] = command_name
        if version:
            config["version"] = version
        return "uvx", config, {}
    if head == "docker":
        args = list(rest)
        if not args or args[0] != "run":
            raise typer.BadParameter("expected 'docker run … IMAGE [ARGS]'", param_hint="COMMAND")
        args = args[1:]
        env: dict[str, str] = {}
        while args and args[0].startswith("-"):
            flag = args.pop(0)
            if flag in _DOCKER_VALUE_FLAGS and args:
                value = args.pop(0)
                if flag in {"-e", "--env"} and "=" in value:
                    key, _, val = value.partition("=")
                    env[key] = val
        if not args:
            raise typer.BadParameter("docker run needs an image", param_hint="COMMAND")
        return "docker", {"image": args[0], "args": args[1:]}, env
    raise typer.BadParameter(
        f"unsupported command {head!r}: use a URL, npx, uvx or docker run "
        "(or --type with --config for generated and bundle servers)",
        param_hint="COMMAND",
    )


@servers_app.command("add")
def servers_add(
    name: Annotated[str, typer.Argument(help="Server name: becomes the tool namespace.")],
    command: Annotated[
        list[str] | None, typer.Argument(help="After '--': a URL or an npx/uvx/docker command.")
    ] = None,
    server_type: Annotated[
        str | None, typer.Option("--type", help="Server type, with --config (JSON).")
    ] = None,
    config: Annotated[str | None, typer.Option(help="Type config as JSON.")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE")] = None,
    secret: Annotated[
        list[str] | None, typer.Option("--secret", help="KEY=VALUE env var, stored encrypted.")
    ] = None,
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="KEY=VALUE")] = None,
    secret_header: Annotated[
        list[str] | None, typer.Option("--secret-header", help="KEY=VALUE, stored encrypted.")
    ] = None,
    transport: Annotated[
        str | None, typer.Option(help="remote: auto, streamable_http or sse.")
    ] = None,
    description: Annotated[str, typer.Option(help="What the server is for.")] = "",
    offline: Annotated[
        bool, typer.Option("--offline", help="npx/uvx: no network inside its sandbox.")
    ] = False,
    isolation: Annotated[
        str | None,
        typer.Option(
            help="npx/uvx: 'none' runs it as a host process that can read the gateway's "
            "secrets (admins only; dangerous)."
        ),
    ] = None,
    call_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds a call of its tools may take (default: the global)."),
    ] = None,
    max_request_bytes: Annotated[
        int | None,
        typer.Option(help="Largest arguments of a call, in bytes (at most the global limit)."),
    ] = None,
    tool_timeout: Annotated[
        list[str] | None,
        typer.Option(help="TOOL=SECONDS: one tool's own call timeout (repeatable)."),
    ] = None,
    tool_max_bytes: Annotated[
        list[str] | None,
        typer.Option(help="TOOL=BYTES: one tool's own arguments size limit (repeatable)."),
    ] = None,
    transforms: Annotated[
        str | None,
        typer.Option(
            help="YAML (or JSON) file of its tool transforms (rename, hide, fixed arguments, "
            "result redaction; docs/resilience.md#transforms); - for stdin."
        ),
    ] = None,
    replica: Annotated[
        list[str] | None,
        typer.Option(
            help="remote: another endpoint of the same server, URL or URL=WEIGHT "
            "(repeatable; docs/resilience.md#replicas)."
        ),
    ] = None,
    processes: Annotated[
        int | None, typer.Option(help="npx/uvx/docker: run this many processes, balanced.")
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(help="With replicas: round_robin, weighted, least_in_flight or failover."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until connected and catalogued.")] = True,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Register a server.

    Example: `mcpgw servers add everything -- npx -y @modelcontextprotocol/server-everything`
    """
    if server_type:
        try:
            parsed_config = json.loads(config or "{}")
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--config") from exc
        parsed_type, extra_env = server_type, dict[str, str]()
    else:
        parsed_type, parsed_config, extra_env = parse_command(command or [])
    headers = _pairs(header, "--header")
    if headers:
        parsed_config["headers"] = headers
    if transport:
        parsed_config["transport"] = transport
    if offline:
        parsed_config["offline"] = True
    if isolation:
        parsed_config["isolation"] = isolation
    replicas = parse_replicas(replica, processes, strategy)
    if replicas is not None:
        parsed_config["replicas"] = replicas
    body = {
        "name": name,
        "type": parsed_type,
        "config": parsed_config,
        "description": description,
        "env": {**extra_env, **_pairs(env, "--env")},
        "secrets": _pairs(secret, "--secret"),
        "secret_headers": _pairs(secret_header, "--secret-header"),
    }
    limits = parse_limits(call_timeout, max_request_bytes, tool_timeout, tool_max_bytes)
    if limits is not None:
        body["limits"] = limits
    if transforms is not None:
        body["transforms"] = read_transforms(transforms)
    created = GatewayClient(url, key, timeout=180).request(
        "POST", "/api/v1/servers", json=body, params={"wait": wait}
    )
    health = created["health"]
    typer.echo(
        f"registered {created['name']} ({created['type']}): {health['status']}, "
        f"{created['tool_count']} tools"
        + (f"\n  last error: {health['last_error']}" if health.get("last_error") else "")
    )


@servers_app.command("transforms")
def servers_transforms(
    name: str,
    file: Annotated[
        str | None,
        typer.Option("-f", "--file", help="Set them from this YAML (or JSON) file; - for stdin."),
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove them all.")] = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Show a server's tool transforms as YAML, or set (-f) or remove (--remove) them."""
    client = GatewayClient(url, key)
    if file is None and not remove:
        server = client.request("GET", f"/api/v1/servers/{name}")
        typer.echo(yaml.safe_dump(server.get("transforms") or {}, sort_keys=False), nl=False)
        return
    body = {"transforms": {} if remove else read_transforms(file or "-")}
    server = client.request("PATCH", f"/api/v1/servers/{name}", json=body)
    typer.echo(f"{name}: transforms {'set' if server.get('transforms') else 'removed'}")


@servers_app.command("list")
def servers_list(url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """List registered servers with their health and tool counts."""
    page = GatewayClient(url, key).request("GET", "/api/v1/servers", params={"limit": 1000})
    rows = [{**s, "status": s["health"]["status"], "tools": s["tool_count"]} for s in page["items"]]
    print_table(rows, ["name", "type", "enabled", "status", "tools", "version"])


@servers_app.command("health")
def servers_health(name: str, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Show a server's health: status, circuit breaker, and each replica's state."""
    health = GatewayClient(url, key).request("GET", f"/api/v1/servers/{name}/health")
    breaker = health.get("breaker") or {}
    typer.echo(
        f"{name}: {health['status']}, {health['in_flight']} in flight, "
        f"breaker {breaker.get('state', 'closed')}"
        + (f"\n  last error: {health['last_error']}" if health.get("last_error") else "")
    )
    replicas = health.get("replicas")
    if replicas:
        print_table(replicas, ["replica", "endpoint", "weight", "status", "in_flight", "calls"])


@servers_app.command("remove")
def servers_remove(name: str, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Remove a server (its catalog goes with it)."""
    GatewayClient(url, key).request("DELETE", f"/api/v1/servers/{name}")
    typer.echo(f"removed {name}")


@servers_app.command("tools")
def servers_tools(name: str, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """List a server's tools by their gateway names."""
    page = GatewayClient(url, key).request("GET", f"/api/v1/servers/{name}/tools")
    rows = [
        {"tool": t["qualified_name"], "description": (t["description"] or "")[:70]}
        for t in page["items"]
    ]
    print_table(rows, ["tool", "description"])


@servers_app.command("refresh")
def servers_refresh(name: str, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Re-read a server's tools, resources and prompts."""
    print_json(
        GatewayClient(url, key, timeout=180).request("POST", f"/api/v1/servers/{name}/refresh")
    )


@servers_app.command("cache")
def servers_cache(
    name: str,
    clear: Annotated[
        bool, typer.Option("--clear", help="Forget the server's cached answers.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Show a server's response cache figures, or clear its cached answers."""
    method = "DELETE" if clear else "GET"
    print_json(GatewayClient(url, key).request(method, f"/api/v1/servers/{name}/cache"))


@tools_app.command("call")
def tools_call(
    tool: Annotated[str, typer.Argument(help="`{server}__{tool}`")],
    arguments: Annotated[str, typer.Option("--args", help="Arguments as a JSON object.")] = "{}",
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Call a tool and print the MCP result; exit 1 if the tool reported an error."""
    parsed = json_option(arguments, "--args")
    result = GatewayClient(url, key, timeout=600).request(
        "POST", "/api/v1/tools/execute", json={"tool": tool, "arguments": parsed}
    )
    print_json(result)
    if result.get("isError"):
        raise typer.Exit(1)

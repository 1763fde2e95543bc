"""``mcpgw sandboxes …``: create, list, run code in, stop, resume and destroy sandboxes on a
running gateway (``--url``/``--key``); ``image build`` builds template images locally."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from gateway.cli_client import (
    DEFAULT_URL,
    GatewayClient,
    KeyOption,
    UrlOption,
    print_json,
    print_table,
)

sandboxes_app = typer.Typer(
    help="Sandboxes: persistent, isolated computers for code (uses --url/--key)."
)
image_app = typer.Typer(help="Template images for the docker provider, built locally.")
sandboxes_app.add_typer(image_app, name="image")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
BASE = "/api/v1/sandboxes"


def _row(s: dict[str, Any]) -> dict[str, Any]:
    return {**s, "disk": s["usage"].get("disk_bytes"), "execs": s["usage"].get("exec_count")}


@sandboxes_app.command("list")
def sandboxes_list(
    all_users: Annotated[bool, typer.Option("--all", help="Everyone's (admins).")] = False,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """List your sandboxes (not destroyed)."""
    page = GatewayClient(url, key).request("GET", BASE, params={"all": all_users, "limit": 1000})
    if as_json:
        print_json(page)
        return
    print_table(
        [_row(s) for s in page["items"]],
        ["id", "name", "template", "provider", "status", "execs", "last_activity_at"],
    )


@sandboxes_app.command("create")
def sandboxes_create(
    template: Annotated[str, typer.Option(help="python, node, multi or an admin's.")] = "python",
    provider: Annotated[
        str | None, typer.Option(help="local, docker, kubernetes or agent-sandbox.")
    ] = None,
    name: Annotated[str, typer.Option(help="A label for you.")] = "",
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Create a sandbox; prints its id."""
    body: dict[str, Any] = {"template": template, "name": name}
    if provider:
        body["provider"] = provider
    created = GatewayClient(url, key, timeout=300).request("POST", BASE, json=body)
    if as_json:
        print_json(created)
    else:
        typer.echo(created["id"])


@sandboxes_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def sandboxes_exec(
    ctx: typer.Context,
    sandbox_id: Annotated[str, typer.Argument(help="The sandbox's id.")],
    code: Annotated[
        str | None, typer.Option("--code", help="Code to run (with --language).")
    ] = None,
    language: Annotated[str | None, typer.Option("--language", "-l")] = None,
    cwd: Annotated[str | None, typer.Option(help="Working directory.")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="NAME=VALUE")] = None,
    secret_env: Annotated[
        list[str] | None, typer.Option("--secret-env", help="NAME=VALUE, never logged.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds.")] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Feed this terminal's stdin.")] = False,
    as_json: JsonOption = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Run a command (the words after the id; use -- before options of the command) or
    --code; prints its output and exits with its exit code."""

    def pairs(items: list[str] | None) -> dict[str, str]:
        out = {}
        for item in items or []:
            name, sep, value = item.partition("=")
            if not sep:
                raise typer.BadParameter(f"{item!r} is not NAME=VALUE")
            out[name] = value
        return out

    body: dict[str, Any] = {"env": pairs(env), "secret_env": pairs(secret_env)}
    if code is not None:
        body.update(code=code, language=language or "python")
    elif ctx.args:
        body["command"] = " ".join(ctx.args) if len(ctx.args) == 1 else list(ctx.args)
    else:
        raise typer.BadParameter("give a command or --code", param_hint="COMMAND")
    if cwd:
        body["cwd"] = cwd
    if timeout:
        body["timeout"] = timeout
    if stdin:
        body["stdin"] = sys.stdin.read()
    result = GatewayClient(url, key, timeout=(timeout or 600) + 30).request(
        "POST", f"{BASE}/{sandbox_id}/exec", json=body
    )
    if as_json:
        print_json(result)
    else:
        sys.stdout.write(result["stdout"])
        sys.stderr.write(result["stderr"])
        if result.get("error"):
            typer.echo(f"error: {result['error']}", err=True)
    code_out = result["exit_code"]
    raise typer.Exit(124 if result["timed_out"] else int(code_out or 0))


def _action(action: str, sandbox_id: str, url: str, key: str | None) -> None:
    client = GatewayClient(url, key, timeout=300)
    if action == "destroy":
        client.request("DELETE", f"{BASE}/{sandbox_id}")
        typer.echo(f"{sandbox_id} destroyed")
        return
    row = client.request("POST", f"{BASE}/{sandbox_id}/{action}")
    typer.echo(f"{sandbox_id} {row['status']}")


@sandboxes_app.command("stop")
def sandboxes_stop(sandbox_id: str, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Stop a sandbox: its processes end, its files stay."""
    _action("stop", sandbox_id, url, key)


@sandboxes_app.command("resume")
def sandboxes_resume(sandbox_id: str, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Resume a stopped sandbox."""
    _action("resume", sandbox_id, url, key)


@sandboxes_app.command("destroy")
def sandboxes_destroy(sandbox_id: str, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Destroy a sandbox and everything in it."""
    _action("destroy", sandbox_id, url, key)


@image_app.command("build")
def image_build(
    template: Annotated[str, typer.Option(help="python, node or multi.")] = "python",
    base: Annotated[
        str, typer.Option(help="Base image (scripts/docker-base-image.sh builds it).")
    ] = "mcpgw-sandbox-base:bookworm",
) -> None:
    """Build mcpgw-sandbox-TEMPLATE:latest from sandboxes/images/TEMPLATE/Dockerfile."""
    from sandboxes.images import ImageBuildError, build_template_image

    try:
        built = build_template_image(template, base=base)
    except ImageBuildError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"tag": built.tag, "id": built.image_id}))


@image_app.command("generate")
def image_generate(
    name: Annotated[str, typer.Argument(help="The template the image becomes.")],
    package: Annotated[
        list[str],
        typer.Option(
            "--package",
            "-p",
            help="A Debian package (jq, jq=1.6-2.1), pip:NAME==VERSION or npm:NAME@VERSION; "
            "repeat the option for more.",
        ),
    ],
    description: Annotated[
        str, typer.Option(help="The template's description (default: its packages).")
    ] = "",
    watch: Annotated[bool, typer.Option("--watch", help="Follow the build to its end.")] = False,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
) -> None:
    """Have the gateway build a hardened image from packages and register it as the
    template NAME for the docker provider (admins; a job: prints its id, or follows it)."""
    client = GatewayClient(url, key)
    body = {"name": name, "packages": package, "template_description": description}
    job_id = str(client.request("POST", f"{BASE}/images/generate", json=body)["job_id"])
    if not watch:
        typer.echo(job_id)
        return
    from gateway.cli_jobs import watch_job

    watch_job(client, job_id)

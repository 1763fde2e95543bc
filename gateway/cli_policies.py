"""``mcpgw policies …``: the policy of a running gateway as one YAML document (export,
apply with a plan and ``--dry-run``), its versions, and explain (``--url``/``--key``;
reading needs ``policies:read``, applying an admin). ``--team NAME``: that team's own
document instead (its members read it, its owners and admins apply it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from gateway.cli_client import (
    DEFAULT_URL,
    GatewayClient,
    KeyOption,
    UrlOption,
    json_option,
    print_json,
    print_table,
)

TeamOption = Annotated[
    str | None,
    typer.Option("--team", help="A team's own document (name or id) instead of the platform's."),
]


def _path(team: str | None) -> str:
    """The document's REST path: the platform's, or a team's."""
    if team is None:
        return "/api/v1/policies"
    return f"/api/v1/teams/{quote(team, safe='')}/policy"


policies_app = typer.Typer(
    help="Rules and limits as one YAML document: export, apply (plan, --dry-run), explain."
)


@policies_app.command("export")
def export(
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")
    ] = None,
    team: TeamOption = None,
) -> None:
    """Print the policy in force as YAML (what `apply -f` takes back unchanged)."""
    text = GatewayClient(url, key).request("GET", _path(team), params={"format": "yaml"}, raw=True)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


@policies_app.command("apply")
def apply(
    file: Annotated[
        str, typer.Option("-f", "--file", help="The YAML (or JSON) document; - for stdin.")
    ],
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; store nothing.")
    ] = False,
    team: TeamOption = None,
) -> None:
    """Make the document the policy: print the plan (+ added, - removed, ~ changed),
    then apply it unless --dry-run. An invalid document changes nothing (exit 1)."""
    if file == "-":
        text = sys.stdin.read()
    else:
        path = Path(file)
        if not path.is_file():
            raise typer.BadParameter(f"no such file: {file}", param_hint="-f")
        text = path.read_text()
    out = GatewayClient(url, key).request(
        "PUT",
        _path(team),
        content=text.encode(),
        headers={"Content-Type": "application/yaml"},
        params={"dry_run": "true"} if dry_run else {},
    )
    for line in out["lines"]:
        typer.echo(line)
    if not out["changed"]:
        typer.echo(f"no changes: version {out['version']} stays in force")
    elif dry_run:
        typer.echo(f"dry run: nothing applied (version {out['version']} stays in force)")
    else:
        typer.echo(f"applied: version {out['version']} is in force")


@policies_app.command("versions")
def versions(url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Applied versions, newest first."""
    rows = GatewayClient(url, key).request("GET", "/api/v1/policies/versions")
    print_table(rows, ["version", "created_at", "created_by", "summary"])


@policies_app.command("evaluate")
def evaluate(
    action: Annotated[str, typer.Option(help="tools/call, resources/read, prompts/get, ...")],
    target: Annotated[str, typer.Option(help="server__tool, server__uri or server__prompt")],
    role: Annotated[str | None, typer.Option(show_default=False)] = None,
    user: Annotated[str | None, typer.Option(help="Email or id.", show_default=False)] = None,
    as_key: Annotated[
        str | None, typer.Option("--as-key", help="A key's prefix or id.", show_default=False)
    ] = None,
    team: Annotated[str | None, typer.Option(show_default=False)] = None,
    arguments: Annotated[
        str | None, typer.Option("--args", help="The call's arguments (JSON).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    key: KeyOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Explain a decision: allow or deny, the rule that decided, every rule that matched."""
    subject = {
        k: v for k, v in (("role", role), ("user", user), ("key", as_key), ("team", team)) if v
    }
    body: dict[str, Any] = {"subject": subject, "action": action, "target": target}
    if arguments is not None:
        body["arguments"] = json_option(arguments, "--args")
    out = GatewayClient(url, key).request("POST", "/api/v1/policies/evaluate", json=body)
    if as_json:
        print_json(out)
        return
    typer.echo(f"{out['decision']}: {out['reason']}")
    if out["matched"]:
        typer.echo(f"matched: {', '.join(out['matched'])}")
    for error in out["errors"]:
        typer.echo(f"could not evaluate {error['rule']}: {error['message']}")
    if out["decision"] != "allow":
        raise typer.Exit(2)

"""HTTP helper for CLI commands that talk to a running gateway (`--url`, `--key`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

# The options every command that talks to a running gateway takes.
UrlOption = Annotated[
    str,
    typer.Option("--url", envvar="MCPGW_URL", help="Gateway base URL.", show_default=True),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", envvar="MCPGW_API_KEY", help="API key.", show_default=False),
]
DEFAULT_URL = "http://127.0.0.1:8000"


class GatewayClient:
    def __init__(self, url: str, key: str | None, timeout: float = 30.0) -> None:
        if not key:
            from gateway.cli_login import stored_token  # (it imports this module)

            key = stored_token(url)
        if not key:
            raise typer.BadParameter(
                "no credential: pass --key, set MCPGW_API_KEY or run `mcpgw login`",
                param_hint="--key",
            )
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
        )

    def request(self, method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
        """The JSON answer (``raw``: the text), or exit with the error printed: its code,
        message and each field error."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            typer.echo(f"error: cannot reach the gateway at {self.http.base_url}: {exc}", err=True)
            raise typer.Exit(3) from exc
        if response.status_code >= 400:
            errors: list[Any] = []
            try:
                body = response.json()
                message = f"{body.get('code')}: {body.get('message')}"
                errors = body.get("errors") or []
            except (ValueError, AttributeError):
                message = response.text[:500]
            typer.echo(f"error ({response.status_code}) {message}", err=True)
            for error in errors[:50] if len(errors) > 1 else []:
                if isinstance(error, dict):
                    where = " ".join(
                        str(error[k]) for k in ("rule", "field") if error.get(k) is not None
                    )
                    typer.echo(f"  {where}: {error.get('message')}", err=True)
            raise typer.Exit(1)
        if raw:
            return response.text
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def json_option(text: str, param_hint: str) -> Any:
    """A command-line option's JSON value, or a usage error naming the option."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint=param_hint) from exc


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print ``rows`` as a table, in one write: a script piping it into `grep -q` (which
    stops reading at its first match) under `set -o pipefail` must not see this command
    fail on a broken pipe, as it could when every line was written and flushed apart."""
    if not rows:
        typer.echo("(none)")
        return
    cells = [[str(r.get(c) if r.get(c) is not None else "-") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    typer.echo("\n".join(lines))

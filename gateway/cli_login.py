"""``mcpgw login`` / ``mcpgw logout``: the CLI signs in the way an MCP client does.

It registers itself with the gateway's authorization server (RFC 7591) as a public
native client, sends the person's browser to ``/oauth/authorize`` with PKCE and
``resource=<gateway>/api/v1``, and takes the code back on a loopback redirect
(RFC 8252) — or, with ``--no-browser`` (a remote shell), prints the URL and reads the
code the gateway shows after approval. authlib builds the request and exchanges and
refreshes the tokens. They are kept per gateway URL in
``$XDG_CONFIG_HOME/mcpgw/credentials.json`` (0600) and used by every command that
talks to a gateway when no ``--key``/``MCPGW_API_KEY`` is given.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import typer
from authlib.integrations.httpx_client import OAuth2Client

from gateway.cli_client import UrlOption

CLIENT_NAME = "mcpgw CLI"
_WAIT_SECONDS = 300.0
_REFRESH_MARGIN = 60.0  # refresh a token this long before it expires


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mcpgw" / "credentials.json"


def _load() -> dict[str, Any]:
    path = credentials_path()
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _save(data: dict[str, Any]) -> None:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written 0600 from the start: tokens never sit in a readable file, even briefly.
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(path.with_suffix(".tmp"), path)


def _normal(url: str) -> str:
    return url.rstrip("/")


def stored_token(url: str) -> str | None:
    """A live access token for ``url`` from ``mcpgw login``, refreshed when it is about
    to expire; None when there is none (or the refresh was refused)."""
    data = _load()
    entry = data.get(_normal(url))
    if not isinstance(entry, dict):
        return None
    if float(entry.get("expires_at", 0)) - _REFRESH_MARGIN > time.time():
        return str(entry["access_token"])
    try:
        with _oauth_client(url, entry["client_id"], None) as client:
            token = client.refresh_token(
                f"{_normal(url)}/oauth/token", refresh_token=entry["refresh_token"]
            )
    except Exception:  # refused (revoked, expired) or unreachable: sign in again
        return None
    data[_normal(url)] = _entry(entry["client_id"], token)
    _save(data)
    return str(token["access_token"])


def _entry(client_id: str, token: dict[str, Any]) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "access_token": token["access_token"],
        "refresh_token": token.get("refresh_token"),
        "expires_at": time.time() + float(token.get("expires_in") or 3600),
    }


def _oauth_client(url: str, client_id: str, redirect_uri: str | None) -> OAuth2Client:
    return OAuth2Client(
        client_id=client_id,
        token_endpoint_auth_method="none",  # noqa: S106 (a public client: no secret)
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=30.0,
    )


def _register(url: str, redirect_uri: str) -> str:
    response = httpx.post(
        f"{_normal(url)}/oauth/register",
        json={
            "client_name": CLIENT_NAME,
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "*",
        },
        timeout=30.0,
    )
    if response.status_code != 201:
        raise typer.BadParameter(
            f"the gateway at {url} does not let clients register ({response.status_code}): "
            "use an API key (--key) instead"
        )
    return str(response.json()["client_id"])


class _Callback:
    """A one-shot loopback listener for the authorization response (RFC 8252 §7.3)."""

    def __init__(self) -> None:
        self.query: dict[str, str] | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/callback":
                    self.send_error(404)
                    return
                outer.query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                body = b"Signed in. You can close this tab and go back to the terminal."
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # the terminal is the user's
                return

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.redirect_uri = f"http://127.0.0.1:{self.server.server_port}/callback"

    def wait(self, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        self.server.timeout = 1.0
        while self.query is None and time.monotonic() < deadline:
            self.server.handle_request()
        self.server.server_close()
        if self.query is None:
            raise typer.BadParameter("no answer from the browser in time; run `mcpgw login` again")
        return self.query


def login(
    url: UrlOption = "http://127.0.0.1:8000",
    no_browser: Annotated[
        bool,
        typer.Option("--no-browser", help="Print the sign-in URL and read the code it ends with."),
    ] = False,
) -> None:
    """Sign in to a gateway in the browser; later commands use the token."""
    callback = None if no_browser else _Callback()
    redirect_uri = f"{_normal(url)}/oauth/code" if callback is None else callback.redirect_uri
    client_id = _register(url, redirect_uri)
    verifier, state = secrets.token_urlsafe(64), secrets.token_urlsafe(24)
    with _oauth_client(url, client_id, redirect_uri) as client:
        address, _ = client.create_authorization_url(
            f"{_normal(url)}/oauth/authorize",
            state=state,
            code_verifier=verifier,
            resource=f"{_normal(url)}/api/v1",
            scope="*",
        )
        if callback is None:
            typer.echo(f"Open this URL in a browser, sign in and approve:\n\n  {address}\n")
            answer = {"code": typer.prompt("Code shown after approval").strip(), "state": state}
        else:
            typer.echo(f"Opening the browser to sign in (or open {address} yourself)…")
            threading.Thread(target=webbrowser.open, args=(address,), daemon=True).start()
            answer = callback.wait(_WAIT_SECONDS)
        if answer.get("error"):
            raise typer.BadParameter(f"sign-in not completed: {answer['error']}")
        if not secrets.compare_digest(answer.get("state", ""), state):
            raise typer.BadParameter("the answer does not belong to this sign-in; try again")
        token = client.fetch_token(
            f"{_normal(url)}/oauth/token", code=answer.get("code", ""), code_verifier=verifier
        )
    data = _load()
    data[_normal(url)] = _entry(client_id, token)
    _save(data)
    me = httpx.get(
        f"{_normal(url)}/api/v1/me",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=30.0,
    ).json()
    typer.echo(f"Signed in to {_normal(url)} as {me['user']['email']} ({me['user']['role']}).")


def logout(url: UrlOption = "http://127.0.0.1:8000") -> None:
    """Revoke the token ``mcpgw login`` stored for this gateway and forget it."""
    data = _load()
    entry = data.pop(_normal(url), None)
    if not isinstance(entry, dict):
        typer.echo(f"Not signed in to {_normal(url)}.")
        return
    for kind in ("refresh_token", "access_token"):
        if entry.get(kind):
            try:  # revoking either ends the grant; best effort when the gateway is away
                httpx.post(
                    f"{_normal(url)}/oauth/revoke",
                    data={"token": entry[kind], "client_id": entry["client_id"]},
                    timeout=10.0,
                )
                break
            except httpx.HTTPError:
                continue
    _save(data)
    typer.echo(f"Signed out of {_normal(url)}.")

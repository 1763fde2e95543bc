"""The OAuth endpoints: metadata documents (RFC 9728, RFC 8414) and the MCP SDK's
protocol handlers (authorize, token, register, revoke) over :class:`OAuthService`.

The SDK's handlers parse and validate requests, verify PKCE and client secrets and
shape every response and error as the RFCs say; what they ask of a provider is
answered here from the service the app holds (``app.state.oauth``), which exists once
the app has started. Addresses depend on the request (``MCPGW_PUBLIC_URL`` unset):
each handler runs with the request's base URL in a context variable.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from mcp.server.auth.handlers.authorize import AuthorizationHandler
from mcp.server.auth.handlers.register import RegistrationHandler
from mcp.server.auth.handlers.token import TokenHandler
from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from mcp.server.auth.provider import AuthorizationParams
from mcp.server.auth.settings import ClientRegistrationOptions
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth.oauth.resources import (
    MCP_SCOPES,
    WELL_KNOWN_RESOURCE,
    WELL_KNOWN_SERVER,
    request_base,
    resource_metadata,
    resource_path,
)
from gateway.auth.oauth.service import (
    GrantedAccess,
    GrantedRefresh,
    IssuedCode,
    OAuthService,
)
from gateway.auth.rbac import ACTIONS, RESOURCES

AUTHORIZE, TOKEN, REGISTER, REVOKE = (
    "/oauth/authorize",
    "/oauth/token",
    "/oauth/register",
    "/oauth/revoke",
)
CONSENT = "/oauth/consent"
# Every scope a client may ask for: the key scopes (role still bounds what they grant).
ALL_SCOPES = ["*", *sorted(f"{r}:{a}" for r in RESOURCES for a in (*sorted(ACTIONS), "*"))]

_BASE: ContextVar[str] = ContextVar("oauth_base")


class _Provider:
    """The SDK's ``OAuthAuthorizationServerProvider``, answered by the app's service."""

    def __init__(self, app: Any) -> None:
        self.app = app

    @property
    def service(self) -> OAuthService:
        service: OAuthService = self.app.state.oauth
        return service

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return await self.service.get_client(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        await self.service.register_client(client_info)

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        base = _BASE.get()
        request_id = await self.service.begin(client, params, base)
        return f"{base}{CONSENT}?request={request_id}"

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> IssuedCode | None:
        return await self.service.load_code(client, authorization_code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: IssuedCode
    ) -> OAuthToken:
        return await self.service.exchange_code(client, authorization_code)

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> GrantedRefresh | None:
        return await self.service.load_refresh(client, refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: GrantedRefresh, scopes: list[str]
    ) -> OAuthToken:
        return await self.service.exchange_refresh(client, refresh_token, scopes)

    async def load_access_token(self, token: str) -> GrantedAccess | None:
        return await self.service.load_access(token)

    async def revoke_token(self, token: GrantedAccess | GrantedRefresh) -> None:
        await self.service.revoke(token)


class _WithBase:
    """Runs an endpoint with the request's base URL at hand (see :data:`_BASE`)."""

    def __init__(self, app: ASGIApp, public_url: str | None) -> None:
        self.app, self.public_url = app, public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _BASE.set(request_base(scope, self.public_url))
        try:
            await self.app(scope, receive, send)
        finally:
            _BASE.reset(token)


def _open_to_browsers(app: ASGIApp, *methods: str) -> ASGIApp:
    # Browser-based MCP clients (the Inspector) read metadata and fetch tokens cross-origin.
    return CORSMiddleware(
        app, allow_origins=["*"], allow_methods=list(methods), allow_headers=["*"]
    )


def oauth_routes(app: Any, public_url: str | None, *, registration: bool) -> list[Route]:
    """The authorization server's routes (the gateway's own AS)."""
    provider: Any = _Provider(app)
    clients = ClientAuthenticator(provider)

    def endpoint(handler: Any, *methods: str, cors: bool = True) -> ASGIApp:
        inner: ASGIApp = _WithBase(request_response(handler), public_url)
        return _open_to_browsers(inner, *methods, "OPTIONS") if cors else inner

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(authorization_server_metadata(_BASE.get(), registration=registration))

    routes = [
        Route(WELL_KNOWN_SERVER, endpoint(server_metadata, "GET"), methods=["GET", "OPTIONS"]),
        # No CORS: a browser is sent here, not a script.
        Route(
            AUTHORIZE,
            endpoint(AuthorizationHandler(provider).handle, cors=False),
            methods=["GET", "POST"],
        ),
        Route(
            TOKEN,
            endpoint(TokenHandler(provider, clients).handle, "POST"),
            methods=["POST", "OPTIONS"],
        ),
        Route(
            REVOKE, endpoint(_revocation(provider, clients), "POST"), methods=["POST", "OPTIONS"]
        ),
    ]
    if registration:
        options = ClientRegistrationOptions(
            enabled=True, valid_scopes=ALL_SCOPES, default_scopes=list(MCP_SCOPES)
        )
        handler = RegistrationHandler(provider, options=options)
        routes.append(
            Route(REGISTER, endpoint(handler.handle, "POST"), methods=["POST", "OPTIONS"])
        )
    # The 2025-03-26 specification's default paths, which clients use when they have no
    # metadata (the Python SDK does after a restart with stored tokens): the same
    # endpoints under their root names.
    for path, route in ((AUTHORIZE, "/authorize"), (TOKEN, "/token"), (REGISTER, "/register")):
        for found in [r for r in routes if r.path == path]:
            routes.append(Route(route, found.endpoint, methods=list(found.methods or ())))
    return routes


def _revocation(provider: _Provider, clients: ClientAuthenticator) -> Any:
    """RFC 7009 revocation. (The SDK's handler requires a ``client_secret`` field, which
    a public client, the usual MCP client, does not have.)"""

    async def revoke(request: Request) -> Response:
        try:
            client = await clients.authenticate_request(request)
        except AuthenticationError as exc:
            return JSONResponse(
                {"error": "invalid_client", "error_description": exc.message}, 401, _NO_STORE
            )
        token = (await request.form()).get("token")
        if not isinstance(token, str) or not token:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "token is required"},
                400,
                _NO_STORE,
            )
        found = await provider.load_access_token(token) or await provider.load_refresh_token(
            client, token
        )
        if found is not None and found.client_id == client.client_id:
            await provider.revoke_token(found)
        return JSONResponse({}, 200, _NO_STORE)  # unknown tokens too (RFC 7009 §2.2)

    return revoke


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def protected_resource_routes(
    public_url: str | None, authorization_server: str | None
) -> list[Route]:
    """RFC 9728 metadata for every resource, at the root and per path (``/mcp``,
    ``/mcp/servers/<name>``, ``/api/v1``). ``authorization_server``: an external one
    that clients should use instead of the gateway's own."""

    async def document(request: Request) -> Response:
        base = _BASE.get()
        tail = request.path_params.get("path")
        path = "/mcp" if tail is None else "/" + str(tail)
        if resource_path(path) != path:
            return JSONResponse(
                {"code": "not_found", "message": f"no protected resource at {path!r}"}, 404
            )
        servers = [authorization_server or base]
        return JSONResponse(resource_metadata(base, path, servers, MCP_SCOPES))

    handler = _open_to_browsers(_WithBase(request_response(document), public_url), "GET", "OPTIONS")
    return [
        Route(WELL_KNOWN_RESOURCE, handler, methods=["GET", "OPTIONS"]),
        Route(WELL_KNOWN_RESOURCE + "/{path:path}", handler, methods=["GET", "OPTIONS"]),
    ]


def authorization_server_metadata(base: str, *, registration: bool) -> dict[str, object]:
    """RFC 8414 metadata of the gateway's own authorization server."""
    metadata: dict[str, object] = {
        "issuer": base,
        "authorization_endpoint": base + AUTHORIZE,
        "token_endpoint": base + TOKEN,
        "revocation_endpoint": base + REVOKE,
        "scopes_supported": ALL_SCOPES,
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "client_secret_basic",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_post",
            "client_secret_basic",
            "none",
        ],
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": True,
    }
    if registration:
        metadata["registration_endpoint"] = base + REGISTER
    return metadata

"""FastAPI dependencies: the caller's principal and permission checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from gateway.auth.authenticator import Authenticator
from gateway.auth.bearer import bearer_token
from gateway.auth.principal import Principal
from gateway.provided import provided


async def current_principal(request: Request) -> Principal:
    """Authenticate ``Authorization: Bearer <token>`` or answer 401."""
    token = bearer_token(request.headers.get("authorization"))
    principal = await provided(request, "authenticator", Authenticator).authenticate(token)
    request.state.user_id = principal.user_id
    request.state.principal = principal  # for the audit row of a refusal (errors.py)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that passes the principal through if it holds ``permission``."""

    async def check(principal: CurrentPrincipal) -> Principal:
        principal.require(permission)
        return principal

    return check

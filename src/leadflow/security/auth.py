"""Request authentication: ``Authorization: Bearer <token>`` and per-endpoint scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from leadflow.errors import ApiError
from leadflow.kit.state import CoreState, CoreStateDep
from leadflow.security.tokens import Principal

bearer = HTTPBearer(auto_error=False, description="An API token created with `leadflow tokens create`")


async def optional_principal(
    request: Request,
    state: CoreStateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal | None:
    return await authenticate(request, state, credentials)


async def authenticate(
    request: Request, state: CoreState, credentials: HTTPAuthorizationCredentials | None
) -> Principal | None:
    """The principal of the bearer token (None without one); 401 for a bad token, which counts as a
    failure towards the address's lock-out."""
    if credentials is None:
        return None
    guard = state.guard
    ip = request.scope.get("state", {}).get("client_ip") or "unknown"
    await guard.raise_if_locked(ip)
    principal: Principal | None = await state.tokens.resolve(credentials.credentials)
    if principal is None:
        await guard.record_failure(ip)  # guessing tokens gets an address locked out
        raise ApiError(401, "UNAUTHORIZED", "The API token is invalid, expired or revoked")
    request.state.principal = principal
    return principal


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency: a valid token whose role grants ``scope`` (401 without one, 403 with a wrong role)."""

    async def dependency(principal: Principal | None = Depends(optional_principal)) -> Principal:
        if principal is None:
            raise ApiError(
                401, "UNAUTHORIZED", "An API token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        if scope not in principal.scopes:
            raise ApiError(403, "FORBIDDEN", f"The {principal.role} role may not do this ({scope})")
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency

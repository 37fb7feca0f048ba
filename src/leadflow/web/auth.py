"""Who is signed in, what they may do, CSRF on every change, and audit of what they view.

A page module declares its router with :func:`page_router` and its permission with the API's scope
names (ONE policy, ``security/tokens.py`` ``SCOPES``)::

    router = page_router()
    Reader = Annotated[SessionPrincipal, Depends(require_page("leads:read"))]  # typed for mypy

    @router.get("/leads/{lead_id}")
    async def lead_page(request: Request, user: Reader, ...) -> Response:
        ...
        await audit_view(request, user, "lead.read", "lead", lead_id)   # personal data shown
        return render(request, "lead.html", {...})

* Not signed in: a page answers ``303`` to ``/login?next=<this path>`` (an htmx request gets
  ``HX-Redirect``); a role without the scope gets a 403 page. The API's checks are the same ones:
  :class:`SessionPrincipal` is a :class:`Principal` whose role grants ``SCOPES[role]``, and a sales
  user's ``subject`` is their routing member's e-mail (the "my leads" filter of a sales token).
* Every POST/PUT/PATCH/DELETE of a page router passes :func:`csrf_protect` first (403 page without a
  valid token), whatever the handler does.
* Errors of a page (``ApiError`` from a service, :class:`PageError`, invalid form input) are rendered
  as an HTML page with the status, never the API's JSON; refusals are counted in the audit log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response

from leadflow.errors import ApiError, validation_error
from leadflow.kit.state import AfterCommitDep, AppStateDep, WriteConn, state_of
from leadflow.security.audit import Actor, Change, note_refusal, record_now
from leadflow.security.sessions import COOKIE, SessionPolicy, SessionPrincipal, resolve
from leadflow.web.security import (
    PRE_COOKIE,
    SAFE_METHODS,
    apply_headers,
    ensure_presession,
    presession_token,
    set_cookie,
    submitted_token,
    tokens_match,
)

CHANNEL = "dashboard"  # the audit log's channel for the workspace


class SignInRequired(Exception):
    """The page needs a signed-in user (answered with a redirect to the sign-in page)."""


class PageError(Exception):
    """An expected failure shown as a page: 403 forbidden, 404 not found, 409 conflict..."""

    def __init__(self, status: int, title: str, message: str, error: str = "PAGE_ERROR") -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.error = error


def safe_next(value: str | None) -> str:
    """A local path to return to after sign-in; anything else (another site, a scheme) is ``/``."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 2000:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(c in value for c in "\r\n\t\\"):
        return "/"
    return value


async def current_user(request: Request) -> SessionPrincipal | None:
    """Dependency: the signed-in user of this request (looked up once per request), or None."""
    if hasattr(request.state, "page_principal"):
        cached = request.state.page_principal
        return cached if isinstance(cached, SessionPrincipal) else None
    state = state_of(request.app)
    user = await resolve(
        state.engine, request.cookies.get(COOKIE), SessionPolicy.of(state.settings), state.reads
    )
    request.state.page_principal = user
    if user is not None:
        request.state.principal = user  # refusals are audited under the user's name
        request.state.csrf_token = user.csrf_token
    return user


def require_page(scope: str) -> Callable[..., Awaitable[SessionPrincipal]]:
    """Dependency: a signed-in user whose role grants ``scope`` (the API's scope names)."""

    async def dependency(user: SessionPrincipal | None = Depends(current_user)) -> SessionPrincipal:
        if user is None:
            raise SignInRequired
        if scope not in user.scopes:
            raise PageError(
                403, "Not allowed", f"Your role ({user.role}) may not open this page.", "FORBIDDEN"
            )
        return user

    dependency.__name__ = f"page_requires_{scope.replace(':', '_')}"
    return dependency


def PageUser(scope: str) -> Any:
    """``user: PageUser("leads:read")``: the signed-in user, who must have ``scope`` (the same annotation
    as the typed alias above, built inline: mypy does not accept a call as a type, so page modules use
    the alias)."""
    return Annotated[SessionPrincipal, Depends(require_page(scope))]


async def csrf_protect(request: Request, user: SessionPrincipal | None = Depends(current_user)) -> None:
    """Router dependency: refuse a state-changing request without the right CSRF token."""
    if request.method in SAFE_METHODS:
        if user is None:  # anonymous pages (sign-in, reset) get a pre-session token for their form
            cookie, new = ensure_presession(request)
            request.state.csrf_token = presession_token(state_of(request.app).settings, cookie)
            if new:
                request.state.new_presession = cookie
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise _csrf_refused()
    if user is not None:
        expected = user.csrf_token
    else:
        cookie = request.cookies.get(PRE_COOKIE, "")
        expected = presession_token(state_of(request.app).settings, cookie) if cookie else ""
    if not tokens_match(expected, await submitted_token(request)):
        raise _csrf_refused()


def _csrf_refused() -> PageError:
    return PageError(
        403,
        "Form expired",
        "This form could not be checked (it may have expired or come from another site). "
        "Reload the page and try again.",
        "CSRF_FAILED",
    )


def page_router(**kwargs: Any) -> APIRouter:
    """The router of a workspace page module: HTML errors, CSRF on changes, hidden from OpenAPI."""
    dependencies = [Depends(csrf_protect), *kwargs.pop("dependencies", [])]
    return APIRouter(route_class=PageRoute, dependencies=dependencies, include_in_schema=False, **kwargs)


def actor(request: Request, user: SessionPrincipal | None) -> Actor:
    return Actor.from_request(request, user, channel=CHANNEL)


def page_change(scope: str) -> Callable[..., Awaitable[Change]]:
    """Dependency: the API's :class:`Change` (write connection committed by the boundary, audit entry in
    its transaction, after-commit hook) for a signed-in user with ``scope``; the actor's channel is
    ``dashboard``. ``edit: Annotated[Change, Depends(page_change("admin"))]``."""

    async def dependency(
        request: Request,
        *,
        user: SessionPrincipal = Depends(require_page(scope)),
        state: AppStateDep,
        conn: WriteConn,
        after: AfterCommitDep,
    ) -> Change:
        return Change(conn, actor(request, user), user, state, after)

    dependency.__name__ = f"page_change_{scope.replace(':', '_')}"
    return dependency


async def audit_view(
    request: Request,
    user: SessionPrincipal,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record that ``user`` viewed personal data (one entry, own transaction), as the API does for
    its reads: call it from every page or fragment that shows a lead's contact data."""
    await record_now(
        state_of(request.app).engine, actor(request, user), action, target_type, target_id, details
    )


def count_view(
    request: Request,
    user: SessionPrincipal,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
) -> None:
    """Count a view of data without personal fields (campaigns, analytics): aggregated per minute."""
    state_of(request.app).audit.add(actor(request, user), action, target_type, target_id)


# -- answering failures with pages -----------------------------------------------------------------------
def sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = "/login?next=" + quote(safe_next(target) if request.method == "GET" else "/", safe="/")
    if request.headers.get("HX-Request"):
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    from leadflow.web.render import render

    return render(
        request, "error.html", {"title": title, "message": message, "status": status}, status_code=status
    )


class PageAnswer(Exception):
    """An error page on its way out. Raised, not returned, so that it passes the request's function-scoped
    dependencies as an exception: a ``WriteConn`` rolls back what the handler wrote before failing."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def answer_page(_: Request, exc: Exception) -> Response:
    """The application's exception handler for :class:`PageAnswer` (``web.install`` registers it)."""
    assert isinstance(exc, PageAnswer)
    return exc.response


class PageRoute(APIRoute):
    """A page: failures become HTML pages (after a rollback); every answer gets the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return _finish(request, await handler(request))
            except SignInRequired:
                note_refusal(request.scope, 401, "SIGN_IN_REQUIRED")
                failed = sign_in_redirect(request)
            except PageError as exc:
                note_refusal(request.scope, exc.status, exc.error)
                failed = error_page(request, exc.status, exc.title, exc.message)
            except ApiError as exc:
                note_refusal(request.scope, exc.status, exc.error)
                failed = error_page(request, exc.status, _TITLES.get(exc.status, "Error"), exc.message)
                for name, value in (exc.headers or {}).items():
                    failed.headers[name] = value
            except RequestValidationError as exc:
                problem = validation_error(list(exc.errors()))
                failed = error_page(request, 400, "Invalid input", problem.message)
            raise PageAnswer(_finish(request, failed))

        return page_handler


def _finish(request: Request, response: Response) -> Response:
    new_cookie = getattr(request.state, "new_presession", None)
    if new_cookie:
        set_cookie(response, request, state_of(request.app).settings, PRE_COOKIE, new_cookie, None)
    return apply_headers(response)


_TITLES = {
    400: "Invalid input",
    401: "Sign in required",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    429: "Too many attempts",
    503: "Temporarily unavailable",
}

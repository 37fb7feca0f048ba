"""Sign-in, sign-out and the password-reset page (the link ``leadflow users reset-password`` prints)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from starlette.responses import RedirectResponse, Response

from leadflow.errors import ApiError
from leadflow.kit.clock import utcnow
from leadflow.kit.state import AppStateDep, WriteConn
from leadflow.security import repository, sessions, users
from leadflow.security.audit import record
from leadflow.security.sessions import COOKIE, SessionPolicy
from leadflow.web.auth import actor, current_user, page_router, safe_next
from leadflow.web.render import render
from leadflow.web.security import clear_session_cookie, set_session_cookie

router = page_router()

FAILED = "The e-mail address or password is not correct."


def _client_ip(request: Request) -> str:
    return str(request.scope.get("state", {}).get("client_ip") or "unknown")


@router.get("/login")
async def login_page(request: Request, next: str = "/", reset: bool = False) -> Response:
    if await current_user(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    notice = "Your password has been changed. Sign in with it." if reset else None
    return render(request, "login.html", {"title": "Sign in", "next": safe_next(next), "notice": notice})


@router.post("/login")
async def login(
    request: Request,
    state: AppStateDep,
    conn: WriteConn,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=users.MAX_PASSWORD_LENGTH)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    target = safe_next(next)
    ip = _client_ip(request)
    context = {"title": "Sign in", "next": target, "email": email[:320]}
    try:
        await state.guard.raise_if_locked(ip)  # the API's lock-out: failures count for both
    except ApiError as exc:
        context["error"] = "Too many failed sign-ins from this address. Try again later."
        await record(conn, actor(request, None), "auth.sign_in_locked", "user", None)
        return render(request, "login.html", context, status_code=429, headers=exc.headers)
    outcome = await users.authenticate(conn, email, password)
    if outcome.user is None:
        await state.guard.record_failure(ip)
        account = str(outcome.account_id) if outcome.account_id is not None else None
        await record(
            conn, actor(request, None), "auth.sign_in_failed", "user", account, {"reason": outcome.reason}
        )
        context["error"] = FAILED
        return render(request, "login.html", context, status_code=401)
    user = outcome.user
    policy = SessionPolicy.of(state.settings)
    await sessions.end(conn, request.cookies.get(COOKIE))  # rotation: the old id never signs anyone in
    now = utcnow()
    await repository.delete_stale_sessions(conn, now, now - policy.idle)  # housekeeping, small table
    session = await sessions.start(conn, user, policy)
    await record(
        conn,
        actor(request, sessions.SessionPrincipal.of(user, session.csrf_token, session.expires_at)),
        "auth.sign_in",
        "user",
        str(user.id),
    )
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, state.settings, session.token)
    return response


@router.post("/logout")
async def logout(request: Request, state: AppStateDep, conn: WriteConn) -> Response:
    user = await current_user(request)
    await sessions.end(conn, request.cookies.get(COOKIE))
    if user is not None:
        await record(conn, actor(request, user), "auth.sign_out", "user", str(user.user_id))
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request, state.settings)
    return response


@router.get(users.RESET_PATH + "{token}")
async def reset_page(request: Request, token: str, conn: WriteConn) -> Response:
    user = await users.reset_user(conn, token)
    if user is None:
        return _reset_unusable(request)
    return render(request, "reset.html", {"title": "Choose a new password", "email": user.email})


@router.post(users.RESET_PATH + "{token}")
async def reset(
    request: Request,
    token: str,
    state: AppStateDep,
    conn: WriteConn,
    password: Annotated[str, Form(max_length=users.MAX_PASSWORD_LENGTH)] = "",
    confirm: Annotated[str, Form(max_length=users.MAX_PASSWORD_LENGTH)] = "",
) -> Response:
    user = await users.reset_user(conn, token)
    if user is None:
        return _reset_unusable(request)
    context = {"title": "Choose a new password", "email": user.email}
    if password != confirm:
        context["error"] = "The two passwords differ."
        return render(request, "reset.html", context, status_code=400)
    try:
        done = await users.complete_reset(conn, token, password)
    except users.PasswordRejected as exc:
        context["error"] = str(exc).capitalize() + "."
        return render(request, "reset.html", context, status_code=400)
    if done is None:
        return _reset_unusable(request)
    await record(conn, actor(request, None), "auth.password_reset", "user", str(user.id))
    response = RedirectResponse("/login?reset=1", status_code=303)
    clear_session_cookie(response, request, state.settings)
    return response


def _reset_unusable(request: Request) -> Response:
    return render(
        request,
        "error.html",
        {
            "title": "Link not usable",
            "status": 404,
            "message": "This password-reset link has expired or has been used. Ask an administrator "
            "for a new one.",
        },
        status_code=404,
    )

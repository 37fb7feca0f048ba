"""The landing-page kit over HTTP: the embed script, the no-JS form endpoint and the hosted form pages.

``POST /v1/forms/{campaign_id}`` turns the HTML form post into the capture request and calls
:func:`leadflow.leads.capture.http.capture_lead`, the function behind ``POST /v1/api/leads``: the same
lock-out, rate limits, validation, campaign, origin and token checks, bot checks, de-duplication and
idempotency apply. Only the answer differs: a redirect or a plain HTML page instead of JSON.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

import jinja2
import orjson
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from starlette.types import Message

from leadflow.errors import ApiError, responses, validation_error
from leadflow.forms import service
from leadflow.forms.embed import Asset, embed_script
from leadflow.kit.clock import utcnow
from leadflow.kit.state import AppState, AppStateDep, ReadConn
from leadflow.leads.capture.http import capture_lead
from leadflow.leads.capture.policy import campaign_closed
from leadflow.leads.capture.service import read_body

router = APIRouter(tags=["forms"])

CampaignId = Annotated[str, Path(max_length=100, examples=["nextcloud-installation-2025"])]
FORM_MEDIA = "application/x-www-form-urlencoded"
# Headers of the browser's post that must not reach the capture function as they are.
_REPLACED = frozenset({b"content-type", b"content-length", b"x-campaign-token", b"idempotency-key"})


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("leadflow.forms", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


@cache
def _css() -> tuple[str, str]:
    """The pages' style sheet (inline) and its CSP source."""
    css = files("leadflow.forms").joinpath("templates/form.css").read_text().strip()
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return css, f"'sha256-{digest}'"


def _page(
    template: str,
    status: int,
    form: service.HostedForm | None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    css, css_source = _css()
    ancestors = form.frame_ancestors_csp() if form else "'self'"
    form_action = form.form_action_csp() if form else "'self'"
    csp = (
        f"default-src 'none'; script-src 'self'; style-src {css_source}; connect-src 'self'; "
        f"img-src 'self'; form-action {form_action}; frame-ancestors {ancestors}; base-uri 'none'"
    )
    html = _templates().get_template(template).render(css=css, form=form, **context)
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "strict-origin-when-cross-origin",
            **(headers or {}),
        },
    )


def _message(
    status: int,
    title: str,
    lines: list[str],
    form: service.HostedForm | None = None,
    problems: list[tuple[str | None, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    return _page("message.html", status, form, headers, title=title, lines=lines, problems=problems or [])


def _html_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {"text/html": {"schema": {"type": "string"}}}
    return {
        code: {"description": "A plain HTML page saying what is wrong", "content": text} for code in codes
    }


# ---------------------------------------------------------------------------------------------- script


def _script_response(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {
        "Cache-Control": cache_control,
        "ETag": asset.etag,
        "Access-Control-Allow-Origin": "*",  # <script crossorigin integrity=...> needs it
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
        "Link": f'<{asset.path}>; rel="canonical"',
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    media = "text/javascript; charset=utf-8"
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        return Response(asset.gzipped, media_type=media, headers={**headers, "Content-Encoding": "gzip"})
    return Response(asset.body, media_type=media, headers=headers)


_SCRIPT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The script", "content": {"text/javascript": {"schema": {"type": "string"}}}},
    304: {"description": "Not modified (If-None-Match)"},
}


@router.get(
    "/v1/embed.js",
    summary="The landing-page script",
    description=(
        "Sends forms marked `data-leadflow-campaign` to `POST /v1/api/leads` (see docs/embed.md). "
        "Cached for an hour; for long caching and Subresource Integrity use the versioned URL from "
        "`GET /v1/embed.json`."
    ),
    response_class=Response,
    responses=_SCRIPT_RESPONSES,
)
async def embed_js(request: Request) -> Response:
    return _script_response(request, embed_script(), "public, max-age=3600")


@router.get(
    "/v1/embed-{version}.js",
    summary="The landing-page script, versioned",
    description="The same script under a name that changes with its content: cached for a year, immutable.",
    response_class=Response,
    responses={**_SCRIPT_RESPONSES, **responses(404)},
)
async def embed_js_versioned(
    request: Request, version: Annotated[str, Path(max_length=64, examples=["0123456789abcdef"])]
) -> Response:
    asset = embed_script()
    if version != asset.version:
        raise ApiError(404, "NOT_FOUND", f"No such script version; the current one is {asset.path}")
    return _script_response(request, asset, "public, max-age=31536000, immutable")


@router.get(
    "/v1/embed.json",
    summary="Version and integrity hash of the landing-page script",
    description="What a page needs to load the script with `integrity` and long caching.",
    responses={
        200: {
            "description": "The current script",
            "content": {
                "application/json": {
                    "example": {
                        "version": "0123456789abcdef",
                        "path": "/v1/embed-0123456789abcdef.js",
                        "integrity": "sha384-…",
                        "bytes": 12000,
                        "gzip_bytes": 4000,
                    }
                }
            },
        }
    },
)
async def embed_info() -> dict[str, Any]:
    asset = embed_script()
    return {
        "version": asset.version,
        "path": asset.path,
        "integrity": asset.integrity,
        "bytes": len(asset.body),
        "gzip_bytes": len(asset.gzipped),
    }


# ------------------------------------------------------------------------------------- no-JS endpoint

_FORM_FIELDS = {
    name: {"type": "string"}
    for name in (
        *service.CONTACT_FIELDS,
        *service.DETAIL_FIELDS,
        *service.UTM_FIELDS,
        "consent_given",
        "consent_notice_version",
        "source",
        service.TOKEN_FIELD,
        service.KEY_FIELD,
        service.HONEYPOT_FIELD,
        service.STARTED_FIELD,
    )
}


@router.post(
    "/v1/forms/{campaign_id}",
    status_code=303,
    summary="Submit a campaign form without JavaScript",
    description=(
        "An HTML form post (`application/x-www-form-urlencoded`) with the spec's input names "
        "(`firstName`, `lastName`, `email`, `phone`, `company`, `service_interest`, `urgency`, `message`, "
        "`budget_range`, `timeline`, `consent_given`, optional `utm_*`) plus `lf_token` (the campaign "
        "token, if it has one), `lf_key` (an idempotency key), `lf_hp` (honeypot, left empty) and "
        "`lf_started` (ISO time the form was shown, for the minimum fill time). It goes through the "
        "same checks as `POST /v1/api/leads`. Answer: 303 to the campaign's `thank_you_url` (or its "
        "plain thank-you page) when stored or already stored (duplicate), else a plain HTML page "
        "listing what to fix, with the capture endpoint's status code."
    ),
    response_class=Response,
    responses={
        303: {
            "description": "Stored: go to the thank-you page",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        **_html_responses(400, 401, 403, 404, 409, 413, 415, 429, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FORM_MEDIA: {
                    "schema": {"type": "object", "properties": _FORM_FIELDS},
                    "example": {
                        "firstName": "John",
                        "lastName": "Doe",
                        "email": "john.doe@company.com",
                        "service_interest": "Nextcloud Installation",
                        "consent_given": "true",
                    },
                }
            },
        }
    },
)
async def submit_form(request: Request, state: AppStateDep, campaign_id: CampaignId) -> Response:
    headers = [(k, v) for k, v in request.scope["headers"] if k not in _REPLACED]
    headers.append((b"content-type", b"application/json"))
    problem: ApiError | None = None
    payload = b""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != FORM_MEDIA:
        problem = ApiError(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type must be {FORM_MEDIA} (an HTML form)")
    else:
        try:
            raw = await read_body(
                request.receive, request.headers.get("content-length"), state.settings.max_body_bytes
            )
            pairs = parse_qsl(raw.decode("utf-8", "replace"), max_num_fields=service.MAX_FIELDS)
            post = service.form_post(campaign_id, pairs)
            payload = orjson.dumps(post.body)
            if post.token:
                headers.append((b"x-campaign-token", post.token.encode("latin-1", "replace")))
            if post.idempotency_key:
                headers.append((b"idempotency-key", post.idempotency_key.encode("latin-1", "replace")))
        except ApiError as exc:
            problem = exc
        except ValueError:
            problem = ApiError(400, "VALIDATION_ERROR", "Too many form fields")

    async def receive() -> Message:
        # The capture function reads the body after its lock-out and rate-limit checks; a problem
        # found while reading the form is raised there, so it counts as that function's own would.
        if problem is not None:
            raise problem
        return {"type": "http.request", "body": payload, "more_body": False}

    try:
        await capture_lead(state, {**request.scope, "headers": headers}, receive)
    except ApiError as exc:
        if exc.error != "DUPLICATE_SUBMISSION":
            return await _form_error(state, campaign_id, exc)
    except ValidationError as exc:
        return await _form_error(state, campaign_id, validation_error(exc.errors(include_input=False)))
    async with state.engine.connect() as conn:  # after the capture: it may hold the pool's connection
        form = await service.hosted_form(conn, campaign_id)
    target = form.thank_you_url if form and form.thank_you_url else f"/f/{quote(campaign_id, safe='')}/thanks"
    return RedirectResponse(target, status_code=303)


async def _form_error(state: AppState, campaign_id: str, exc: ApiError) -> HTMLResponse:
    form = None
    if exc.error != "CAMPAIGN_NOT_FOUND":
        async with state.engine.connect() as conn:
            form = await service.hosted_form(conn, campaign_id)
    name = service.input_name(exc.field)
    label = service.LABELS.get(name or "", name)
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "retry-after"}
    if exc.status in (429, 503):
        lines = ["We could not take your request right now. Please try again in a minute."]
        return _message(exc.status, "Please try again", lines, form, headers=headers)
    if exc.error == "CAMPAIGN_INACTIVE":
        return _message(exc.status, "This form is closed", [exc.message], form)
    if exc.error == "INVALID_CAMPAIGN_TOKEN":
        lines = ["This form is missing its campaign token. Please tell the site's owner."]
        return _message(exc.status, "This form cannot be sent", lines, form)
    lines = ["We could not accept your request."]
    return _message(exc.status, "Please check the form", lines, form, problems=[(label, exc.message)])


# --------------------------------------------------------------------------------------- hosted form


@router.get(
    "/f/{campaign_id}",
    summary="Hosted form",
    description=(
        "A mobile-first form page for the campaign (its services, consent text and privacy notice), "
        "usable as a landing page or in an iframe from the campaign's `frame_ancestors`. It uses "
        "embed.js and works without JavaScript. `utm_*` query parameters are carried into the lead."
    ),
    response_class=HTMLResponse,
    responses={
        200: {"description": "The form page", "content": {"text/html": {}}},
        **_html_responses(404, 409),
    },
)
async def hosted_form(request: Request, conn: ReadConn, campaign_id: CampaignId) -> HTMLResponse:
    form = await service.hosted_form(conn, campaign_id)
    if form is None or form.status == "draft":
        return _message(404, "Form not found", ["There is no form at this address."])
    closed = campaign_closed(form.status, form.end_date, utcnow().date())
    if closed is not None:
        return _message(409, "This form is closed", [closed], form)
    if form.has_token:
        lines = ["This campaign requires a campaign token, so it has no hosted form. Use embed.js instead."]
        return _message(409, "Form not available", lines, form)
    utm = [
        (name, value[:255])
        for name in service.UTM_FIELDS
        if (value := request.query_params.get(name, "").strip())
    ]
    return _page(
        "form.html",
        200,
        form,
        title=form.title,
        action=f"/v1/forms/{quote(form.campaign_id, safe='')}",
        script=embed_script(),
        labels=service.LABELS,
        urgency=service.URGENCY_CHOICES,
        timeline=service.TIMELINE_CHOICES,
        budget=service.BUDGET_CHOICES,
        key=service.new_form_key(),
        started=utcnow().isoformat(),
        utm=utm,
    )


@router.get(
    "/f/{campaign_id}/thanks",
    summary="Hosted thank-you page",
    description="Where a form post goes when the campaign has no `thank_you_url`.",
    response_class=HTMLResponse,
    responses={200: {"description": "The page", "content": {"text/html": {}}}, **_html_responses(404)},
)
async def thanks(conn: ReadConn, campaign_id: CampaignId) -> HTMLResponse:
    form = await service.hosted_form(conn, campaign_id)
    if form is None:
        return _message(404, "Form not found", ["There is no form at this address."])
    lines = ["We received your request and will be in touch soon."]
    return _message(200, "Thank you!", lines, form)

"""CSV import (``/leads/import``): upload, map columns, preview with per-row errors, import.

Step one uploads the file; step two shows the columns mapped to lead fields (guessed from the header,
changeable) and the first rows with their validation errors; step three imports the valid rows through
the capture core (:func:`leadflow.leads.entry.import_file`): each row is keyed by the file's digest
and its line, so importing the same file again creates nothing twice. The file travels between the
steps in the form itself (no server-side upload store: any API process can answer each step).
Scope ``leads:create``, as for capturing through the API; the CLI twin is ``leadflow leads import``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response

from leadflow.campaigns import repository as campaigns_repo
from leadflow.kit.state import AppState, AppStateDep
from leadflow.leads import entry
from leadflow.security.sessions import SessionPrincipal
from leadflow.web.auth import actor, page_router, require_page
from leadflow.web.render import render

router = page_router()
Creator = Annotated[SessionPrincipal, Depends(require_page("leads:create"))]
PREVIEW_ROWS = 20


async def _campaigns(state: AppState) -> list[Any]:
    async with state.engine.connect() as conn:
        return [c for c in await campaigns_repo.list_all(conn) if c.status == "active"]


@router.get("/leads/import")
async def import_page(request: Request, state: AppStateDep, user: Creator) -> Response:
    context = {
        "title": "Import leads",
        "step": "upload",
        "campaigns": await _campaigns(state),
        "campaign_id": "",
        "errors": {},
    }
    return render(request, "import.html", context)


@router.post("/leads/import")
async def import_step(request: Request, state: AppStateDep, user: Creator) -> Response:
    form = await request.form()
    campaign_id = _text(form, "campaign_id")
    step = _text(form, "step") or "upload"
    context: dict[str, Any] = {
        "title": "Import leads",
        "campaigns": await _campaigns(state),
        "campaign_id": campaign_id,
        "errors": {},
        "fields": entry.FIELDS,
    }
    try:
        raw = await _content(form)
        file = entry.CsvFile.parse(raw)
    except entry.EntryRefused as exc:
        context |= {"step": "upload", "errors": exc.errors}
        return render(request, "import.html", context, status_code=400)
    pairs = ((k, v) for k, v in form.multi_items() if isinstance(v, str))
    mapping = file.guess_mapping() if step == "upload" else entry.mapping_of(pairs, len(file.header))
    errors: dict[str, str] = {}
    campaign = None
    try:
        campaign = entry.check_campaign(await state.campaigns.get(campaign_id) if campaign_id else None)
    except entry.EntryRefused as exc:
        errors |= exc.errors
    if "email" not in mapping and "phone" not in mapping:
        errors["mapping"] = "Map a column to Email or Phone."
    region = state.settings.default_phone_region
    if step != "run" or errors or campaign is None:
        checked = entry.check_rows(file, mapping, campaign_id, region)
        context |= {
            "step": "preview",
            "errors": errors,
            "file": file,
            "mapping": mapping,
            "content": base64.b64encode(raw).decode(),
            "preview": checked[:PREVIEW_ROWS],
            "total": len(checked),
            "invalid": sum(1 for _, c in checked if isinstance(c, entry.EntryRefused)),
        }
        return render(request, "import.html", context, status_code=400 if step == "run" else 200)
    report = await entry.import_file(
        entry.Core.of(state), file, mapping, campaign, actor=actor(request, user)
    )
    state.wake_worker()
    context |= {"step": "done", "report": report}
    return render(request, "import.html", context)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip()[:200] if isinstance(value, str) else ""


async def _content(form: FormData) -> bytes:
    """The CSV file: uploaded (step one) or carried in the form as base64 (later steps)."""
    upload = form.get("file")
    if isinstance(upload, UploadFile):
        data = await upload.read(entry.MAX_IMPORT_BYTES + 1)
        if not data:
            raise entry.EntryRefused({"file": "Choose a CSV file."})
        return data
    carried = form.get("content")
    if not isinstance(carried, str) or not carried:
        raise entry.EntryRefused({"file": "Choose a CSV file."})
    try:
        return base64.b64decode(carried, validate=True)
    except (binascii.Error, ValueError):
        raise entry.EntryRefused({"file": "The upload was damaged; choose the file again."}) from None

"""HubSpot CRM contacts v3, as a local server.

HubSpot's OpenAPI description is not licensed for reuse (``contracts/hubspot/SOURCE.md``), so this fake
is written from the facts listed there and HubSpot's public reference: private-app token as
``Authorization: Bearer``; ``POST /crm/v3/objects/contacts/batch/upsert`` with ``inputs[]`` of
``{id, idProperty?, properties, objectWriteTraceId?}`` (``id`` and ``properties`` required, property
values strings) answering ``200 {status, results[{id, properties, createdAt, updatedAt, archived, new}],
startedAt, completedAt}``; ``POST /crm/v3/objects/contacts/gdpr-delete`` with ``{objectId, idProperty?}``
answering 204 (an unknown e-mail is blocklisted). Errors use HubSpot's shape
``{status: "error", message, correlationId, category, errors?}``.

The portal has HubSpot's default contact properties plus the custom ones Leadflow documents
(created here by hand, as an admin would: a rename on either side makes the tests fail).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.fakes.server import FakeVendor, Recorded, Reply

UPSERT = "/crm/v3/objects/contacts/batch/upsert"
GDPR_DELETE = "/crm/v3/objects/contacts/gdpr-delete"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TOKEN = "pat-na1-test-token"

# name -> (type, options). Defaults a portal ships with, then the Leadflow properties.
PROPERTIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "email": ("string", ()),
    "firstname": ("string", ()),
    "lastname": ("string", ()),
    "phone": ("string", ()),
    "mobilephone": ("string", ()),
    "company": ("string", ()),
    "website": ("string", ()),
    "jobtitle": ("string", ()),
    "message": ("string", ()),
    "city": ("string", ()),
    "state": ("string", ()),
    "country": ("string", ()),
    "zip": ("string", ()),
    "lifecyclestage": (
        "enumeration",
        ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"),
    ),
    "hs_lead_status": ("enumeration", ("NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED")),
    "leadflow_lead_id": ("string", ()),
    "leadflow_lead_source": ("string", ()),
    "leadflow_lead_score": ("number", ()),
    "leadflow_lead_grade": ("enumeration", ("A", "B", "C", "D")),
    "leadflow_campaign_id": ("string", ()),
    "leadflow_service": ("string", ()),
}
READ_ONLY = {"hs_object_id", "createdate", "lastmodifieddate", "hs_analytics_source", "hs_email_domain"}


def error(status: int, category: str, message: str, errors: list[dict[str, Any]] | None = None) -> Reply:
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
    }
    if errors:
        body["errors"] = errors
    return Reply(status, body)


def too_many_requests(retry_after: str | None = "7") -> Reply:
    body = {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": "TEN_SECONDLY_ROLLING",
    }
    return Reply(429, body, headers={"Retry-After": retry_after} if retry_after else {})


def server_error(status: int = 502) -> Reply:
    return error(status, "INTERNAL_ERROR", "internal error")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeHubSpot(FakeVendor):
    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.contacts: dict[str, dict[str, Any]] = {}  # lower-cased e-mail -> contact
        self.blocklist: set[str] = set()
        self._next_id = 1001

    def reset(self) -> None:
        """Forget every request, scripted reply and contact (one server serves a whole test module)."""
        with self._lock:
            self.requests.clear()
            self.scripted.clear()
            self.contacts.clear()
            self.blocklist.clear()

    # -- validation helpers -----------------------------------------------------------------------
    def _invalid_properties(self, properties: dict[str, Any]) -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = []
        for name, value in properties.items():
            if name in READ_ONLY:
                problems.append({"error": "READ_ONLY_VALUE", "name": name, "message": f"{name} is read-only"})
                continue
            if name not in PROPERTIES:
                problems.append(
                    {
                        "error": "PROPERTY_DOESNT_EXIST",
                        "name": name,
                        "message": f'Property "{name}" does not exist',
                    }
                )
                continue
            if not isinstance(value, str):
                problems.append(
                    {"error": "INVALID_TYPE", "name": name, "message": f"{name} must be a string"}
                )
                continue
            kind, options = PROPERTIES[name]
            if kind == "number" and value != "":
                try:
                    float(value)
                except ValueError:
                    problems.append(
                        {"error": "INVALID_INTEGER", "name": name, "message": f"{value!r} is not a number"}
                    )
            if kind == "enumeration" and value != "" and value not in options:
                problems.append(
                    {"error": "INVALID_OPTION", "name": name, "message": f"{value!r} is not a valid option"}
                )
            if name == "email" and value and not EMAIL.match(value):
                problems.append(
                    {"error": "INVALID_EMAIL", "name": name, "message": "Email address is invalid"}
                )
        return problems

    # -- endpoints --------------------------------------------------------------------------------
    def handle(self, request: Recorded) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
                "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        if request.method != "POST" or request.path not in (UPSERT, GDPR_DELETE):
            return error(404, "OBJECT_NOT_FOUND", f"No route for {request.method} {request.path}")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return error(415, "VALIDATION_ERROR", "Content-Type must be application/json")
        try:
            body = request.json()
        except ValueError:
            return error(400, "VALIDATION_ERROR", "Invalid input JSON on line 1")
        if not isinstance(body, dict):
            return error(400, "VALIDATION_ERROR", "Invalid input JSON: expected an object")
        if request.path == UPSERT:
            return self._upsert(body)
        return self._gdpr_delete(body)

    def _upsert(self, body: dict[str, Any]) -> Reply:
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 100:
            return error(400, "VALIDATION_ERROR", "inputs must be an array of 1 to 100 items")
        prepared: list[tuple[str, dict[str, str]]] = []
        for item in inputs:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                return error(400, "VALIDATION_ERROR", "every input needs a string id")
            if not isinstance(item.get("properties"), dict):
                return error(400, "VALIDATION_ERROR", "every input needs a properties object")
            unknown = set(item) - {"id", "idProperty", "properties", "objectWriteTraceId"}
            if unknown:
                return error(400, "VALIDATION_ERROR", f"Unrecognized field(s): {sorted(unknown)}")
            if item.get("idProperty") != "email":
                # contacts have one unique property usable here without a custom unique property
                return error(400, "VALIDATION_ERROR", "idProperty must be a unique property: email")
            if not EMAIL.match(item["id"]):
                return error(400, "VALIDATION_ERROR", "Email address is invalid")
            problems = self._invalid_properties(item["properties"])
            if problems:
                return error(400, "VALIDATION_ERROR", "Property values were not valid", problems)
            prepared.append((item["id"].lower(), dict(item["properties"])))
        started = _now()
        results = []
        with self._lock:
            for key, properties in prepared:
                existing = self.contacts.get(key)
                now = _now()
                if existing is None:
                    contact: dict[str, Any] = {
                        "id": str(self._next_id),
                        "properties": {"email": key},
                        "createdAt": now,
                        "archived": False,
                    }
                    self._next_id += 1
                    self.contacts[key] = contact
                else:
                    contact = existing
                contact["properties"].update(properties)
                contact["properties"]["email"] = key
                contact["updatedAt"] = now
                results.append(
                    {**contact, "properties": dict(contact["properties"]), "new": existing is None}
                )
        return Reply(
            200, {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": _now()}
        )

    def _gdpr_delete(self, body: dict[str, Any]) -> Reply:
        object_id = body.get("objectId")
        if not isinstance(object_id, str) or not object_id:
            return error(400, "VALIDATION_ERROR", "objectId is required")
        id_property = body.get("idProperty")
        with self._lock:
            if id_property == "email":
                key = object_id.lower()
                if self.contacts.pop(key, None) is None:
                    self.blocklist.add(key)
            elif id_property is None:
                match = [k for k, c in self.contacts.items() if c["id"] == object_id]
                if not match:
                    return error(404, "OBJECT_NOT_FOUND", "resource not found")
                del self.contacts[match[0]]
            else:
                return error(400, "VALIDATION_ERROR", "idProperty must be email")
        return Reply(204)

"""SendGrid Marketing Campaigns contacts, as a local server.

``PUT /v3/marketing/contacts`` bodies are validated with JSON Schema (draft 2020-12, with format
checking so ``list_ids`` must be UUIDs) against ``contracts/sendgrid/marketing-contacts-v3.subset.json``;
the answer is ``202 {"job_id"}``. Contacts are keyed by lower-cased e-mail (SendGrid's upsert rule).

The erasure endpoints are not in the contract subset; they follow SendGrid's reference:
``POST /v3/marketing/contacts/search/emails`` ``{"emails": [...]}`` → 200
``{"result": {<email>: {"contact": {...}} | {"error": "contact not found"}}}`` when any matches, 404
when none does; ``DELETE /v3/marketing/contacts?ids=<id,...>`` → ``202 {"job_id"}``. Errors are
``{"errors": [{"field", "message"}]}``; a 429 carries ``X-RateLimit-*`` headers.

Global suppressions (not in the subset either; SendGrid's reference "Add recipient addresses to the global
suppression group"): ``POST /v3/asm/suppressions/global`` with a JSON body ``{"recipient_emails": [...]}``
(required, a non-empty list of valid addresses) → ``201 {"recipient_emails": [...]}``; adding an address
twice is accepted.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.fakes.server import FakeVendor, Recorded, Reply

CONTACTS = "/v3/marketing/contacts"
SEARCH = "/v3/marketing/contacts/search/emails"
SUPPRESSIONS = "/v3/asm/suppressions/global"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]{2,}$")
IDENTIFIERS = ("email", "phone_number_id", "external_id", "anonymous_id")


def operation_validator(document: dict[str, Any], path: str, method: str) -> Draft202012Validator:
    """A validator for one operation's JSON request body, ``$ref``s resolved within the document."""
    registry: Registry[Any] = Registry().with_resource(
        "urn:contract", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    pointer = "/".join(
        p.replace("~", "~0").replace("/", "~1")
        for p in ("paths", path, method, "requestBody", "content", "application/json", "schema")
    )
    return Draft202012Validator(
        {"$ref": f"urn:contract#/{pointer}"}, registry=registry, format_checker=FormatChecker()
    )


def errors(status: int, message: str, field: str | None = None) -> Reply:
    return Reply(status, {"errors": [{"field": field, "message": message}]})


def too_many_requests(retry_after: str | None = None, reset_in: int = 4) -> Reply:
    headers = {
        "X-RateLimit-Limit": "600",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(time.time()) + reset_in),
    }
    if retry_after:
        headers["Retry-After"] = retry_after
    return Reply(429, {"errors": [{"field": None, "message": "too many requests"}]}, headers=headers)


def server_error(status: int = 500) -> Reply:
    return Reply(status, {"errors": [{"message": "internal server error"}]})


class FakeSendGridContacts(FakeVendor):
    def __init__(self, contract: Path, api_key: str = "SG.test-key.secret") -> None:
        super().__init__()
        document = json.loads(contract.read_text())
        self.schema = operation_validator(document, CONTACTS, "put")
        self.api_key = api_key
        self.contacts: dict[str, dict[str, Any]] = {}  # lower-cased e-mail -> contact
        self.jobs: list[str] = []
        self.suppressed: set[str] = set()  # global unsubscribes (lower-cased)

    def reset(self) -> None:
        """Forget every request, scripted reply and contact (one server serves a whole test module)."""
        with self._lock:
            self.requests.clear()
            self.scripted.clear()
            self.contacts.clear()
            self.jobs.clear()
            self.suppressed.clear()

    def handle(self, request: Recorded) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return errors(401, "authorization required")
        if request.path == CONTACTS and request.method == "PUT":
            return self._upsert(request)
        if request.path == CONTACTS and request.method == "DELETE":
            return self._delete(request)
        if request.path == SEARCH and request.method == "POST":
            return self._search(request)
        if request.path == SUPPRESSIONS and request.method == "POST":
            return self._suppress(request)
        return errors(404, "not found")

    def _suppress(self, request: Recorded) -> Reply:
        body = self._body(request)
        if isinstance(body, Reply):
            return body
        emails = body.get("recipient_emails") if isinstance(body, dict) else None
        if not isinstance(emails, list) or not emails:
            return errors(400, "recipient_emails is required", "recipient_emails")
        for email in emails:
            if not isinstance(email, str) or not EMAIL.match(email):
                return errors(400, "email address is not valid", "recipient_emails")
        with self._lock:
            self.suppressed.update(e.lower() for e in emails)
        return Reply(201, {"recipient_emails": emails})

    def _body(self, request: Recorded) -> Any:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return errors(415, "Content-Type should be application/json")
        try:
            return request.json()
        except ValueError:
            return errors(400, "invalid JSON")

    def _upsert(self, request: Recorded) -> Reply:
        body = self._body(request)
        if isinstance(body, Reply):
            return body
        problems = sorted(self.schema.iter_errors(body), key=lambda e: list(e.path))
        if problems:
            return Reply(
                400,
                {
                    "errors": [
                        {"field": ".".join(map(str, e.path)) or None, "message": e.message} for e in problems
                    ]
                },
            )
        for index, contact in enumerate(body["contacts"]):
            if not any(contact.get(k) for k in IDENTIFIERS):
                return errors(400, "contact must include at least one identifier", f"contacts[{index}]")
            if "email" in contact and not EMAIL.match(contact["email"]):
                return errors(400, "email address is not valid", f"contacts[{index}].email")
        job = str(uuid.uuid4())
        with self._lock:
            for contact in body["contacts"]:
                key = str(contact["email"]).lower()
                stored = self.contacts.setdefault(key, {"id": str(uuid.uuid4()), "list_ids": []})
                stored.update({k: v for k, v in contact.items() if k != "email"})
                stored["email"] = key
                for list_id in body.get("list_ids", []):
                    if list_id not in stored["list_ids"]:
                        stored["list_ids"].append(list_id)
            self.jobs.append(job)
        return Reply(202, {"job_id": job})

    def _search(self, request: Recorded) -> Reply:
        body = self._body(request)
        if isinstance(body, Reply):
            return body
        emails = body.get("emails") if isinstance(body, dict) else None
        if not isinstance(emails, list) or not emails or len(emails) > 100:
            return errors(400, "emails must be a list of 1 to 100 addresses", "emails")
        result: dict[str, Any] = {}
        found = 0
        for email in emails:
            contact = self.contacts.get(str(email).lower())
            if contact is None:
                result[str(email).lower()] = {"error": "contact not found"}
            else:
                result[str(email).lower()] = {"contact": dict(contact)}
                found += 1
        if not found:
            return errors(404, "No contacts found")
        return Reply(200, {"result": result})

    def _delete(self, request: Recorded) -> Reply:
        ids = request.query.get("ids")
        if not ids or not ids[0]:
            return errors(400, "ids or delete_all_contacts is required", "ids")
        wanted = set(ids[0].split(","))
        with self._lock:
            for key in [k for k, c in self.contacts.items() if c["id"] in wanted]:
                del self.contacts[key]
        return Reply(202, {"job_id": str(uuid.uuid4())})

"""Salesforce REST API (OAuth client credentials + Lead sObject), as a local server.

Routes come from the Postman items in ``contracts/salesforce/postman-rest-sobject-composite.items.json``
(URL template, method, required ``Content-Type`` header); those items are templates, not schemas, so
the Lead fields are checked against a Lead description written here from Salesforce's object reference
(standard field names and lengths, plus the custom fields Leadflow documents). Answers use Salesforce's
shapes: ``{id, success, errors, created}`` for an upsert (201 created / 200 updated), a list of
``{message, errorCode, fields}`` for errors, and ``{error, error_description}`` from the token endpoint.
``DELETE`` on the external-id resource (listed among that item's methods) deletes the record: 204
without a body, 404 ``NOT_FOUND`` when no record has that value; it needs no Content-Type.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

from tests.fakes.server import FakeVendor, Recorded, Reply

TOKEN_PATH = "/services/oauth2/token"
CLIENT_SECRET = "sf-secret"
CREATE_ITEM = "src/collections/salesforce_apis/rest/sobject_create.json"
UPSERT_ITEM = "src/collections/salesforce_apis/rest/sobject_rows_by_external_id.json"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Lead fields: name -> (type, max length or None). Custom fields as the org admin created them.
LEAD_FIELDS: dict[str, tuple[str, int | None]] = {
    "FirstName": ("string", 40),
    "LastName": ("string", 80),
    "Email": ("email", 80),
    "Phone": ("string", 40),
    "MobilePhone": ("string", 40),
    "Company": ("string", 255),
    "Title": ("string", 128),
    "Website": ("string", 255),
    "Description": ("string", 32000),
    "LeadSource": ("picklist", 255),
    "Rating": ("picklist", 255),
    "Status": ("picklist", 255),
    "Industry": ("picklist", 255),
    "City": ("string", 40),
    "State": ("string", 80),
    "Country": ("string", 80),
    "Leadflow_Id__c": ("external_id", 17),
    "Leadflow_Score__c": ("number", None),
    "Leadflow_Grade__c": ("string", 1),
    "Leadflow_Campaign__c": ("string", 100),
    "Leadflow_Source__c": ("string", 100),
}
EXTERNAL_IDS = {"Leadflow_Id__c"}
REQUIRED_ON_CREATE = ("LastName", "Company")
RESTRICTED_PICKLISTS = {"Rating": {"Hot", "Warm", "Cold"}}


def sf_error(status: int, code: str, message: str, fields: list[str] | None = None) -> Reply:
    return Reply(status, [{"message": message, "errorCode": code, "fields": fields or []}])


def too_many_requests(retry_after: str | None = "5") -> Reply:
    return Reply(
        429,
        [{"message": "Too many requests", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        headers={"Retry-After": retry_after} if retry_after else {},
    )


def server_error(status: int = 503) -> Reply:
    return sf_error(status, "SERVER_UNAVAILABLE", "Server temporarily unavailable")


def _route(template: str) -> re.Pattern[str]:
    """A regex for a Postman URL template: ``{{var}}`` matches within a segment, ``<NAME>`` a segment."""
    path = template.replace("{{_endpoint}}", "").replace("{{url}}", "")
    pattern = re.escape(path)
    pattern = re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", pattern)  # first: its output holds <...> too
    pattern = re.sub(r"\\\{\\\{(\w+)\\\}\\\}", r"(?P<\1>[^/]+?)", pattern)
    return re.compile(f"^{pattern}/?$")


class FakeSalesforce(FakeVendor):
    def __init__(
        self, contract: Path, client_id: str = "3MVG9-test-client", client_secret: str = CLIENT_SECRET
    ) -> None:
        super().__init__()
        items = json.loads(contract.read_text())["items"]
        self.client_id = client_id
        self.client_secret = client_secret
        self.routes: dict[str, tuple[str, re.Pattern[str], set[str]]] = {}
        for key, kind in ((CREATE_ITEM, "create"), (UPSERT_ITEM, "upsert")):
            item = items[key]
            headers = {h["key"].lower() for h in item.get("headerData", [])}
            self.routes[kind] = (item["method"], _route(item["url"]), headers)
        self.tokens: set[str] = set()
        self.tokens_issued = 0
        self.leads: dict[str, dict[str, Any]] = {}  # record id -> fields
        self.deleted: list[str] = []  # record ids deleted
        self._next = 1

    def reset(self) -> None:
        """Forget every request, scripted reply, token and Lead (one server serves a test module)."""
        with self._lock:
            self.requests.clear()
            self.scripted.clear()
            self.tokens.clear()
            self.tokens_issued = 0
            self.leads.clear()
            self.deleted.clear()

    def expire_tokens(self) -> None:
        """Every issued token stops working (a session timeout or revocation)."""
        with self._lock:
            self.tokens.clear()

    def by_external_id(self, value: str) -> dict[str, Any] | None:
        return next((r for r in self.leads.values() if r.get("Leadflow_Id__c") == value), None)

    # -- endpoints --------------------------------------------------------------------------------
    def handle(self, request: Recorded) -> Reply:
        if request.path == TOKEN_PATH:
            return self._token(request)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        for kind, (_, pattern, required_headers) in self.routes.items():
            match = pattern.match(request.path)
            if match is None:
                continue
            if (
                request.method != "DELETE"
                and "content-type" in required_headers
                and not request.headers.get("content-type", "").startswith("application/json")
            ):
                return sf_error(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json")
            version = match.group("version")
            if not re.fullmatch(r"\d+\.\d", version) or float(version) < 46:
                return sf_error(404, "NOT_FOUND", f"API version v{version} is not supported here")
            if match.group("SOBJECT_API_NAME") != "Lead":
                return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
            if kind == "upsert" and request.method == "DELETE":
                return self._delete_by(match.group("FIELD_NAME"), match.group("FIELD_VALUE"))
            try:
                body = request.json()
            except ValueError:
                return sf_error(400, "JSON_PARSER_ERROR", "The request body is not valid JSON")
            if not isinstance(body, dict):
                return sf_error(400, "JSON_PARSER_ERROR", "Expected a JSON object")
            if kind == "create" and request.method == "POST":
                return self._save(None, body)
            if kind == "upsert" and request.method == "PATCH":
                return self._upsert(match.group("FIELD_NAME"), match.group("FIELD_VALUE"), body)
            return sf_error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed")
        return sf_error(404, "NOT_FOUND", "The requested resource does not exist")

    def _token(self, request: Recorded) -> Reply:
        if request.method != "POST":
            return Reply(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return Reply(400, {"error": "invalid_request", "error_description": "invalid content type"})
        form = {k: v[0] for k, v in request.form().items()}
        if form.get("grant_type") != "client_credentials":
            return Reply(
                400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
            )
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        token = f"00D5e000000TEST!{secrets.token_urlsafe(24)}"
        with self._lock:
            self.tokens.add(token)
            self.tokens_issued += 1
        return Reply(
            200,
            {
                "access_token": token,
                "instance_url": self.base_url,
                "id": f"{self.base_url}/id/00D5e000000TEST/0055e000001TEST",
                "token_type": "Bearer",
                "issued_at": "1700000000000",
                "signature": "c2lnbmF0dXJl",
            },
        )

    def _invalid(self, body: dict[str, Any], creating: bool) -> Reply | None:
        for name, value in body.items():
            if name not in LEAD_FIELDS:
                return sf_error(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type Lead")
            kind, limit = LEAD_FIELDS[name]
            if value is None:
                continue
            if kind == "number":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    return sf_error(400, "JSON_PARSER_ERROR", f"Cannot deserialize {name} from {value!r}")
                continue
            if not isinstance(value, str):
                return sf_error(400, "JSON_PARSER_ERROR", f"Cannot deserialize {name}: expected a string")
            if limit is not None and len(value) > limit:
                return sf_error(400, "STRING_TOO_LONG", f"{name}: data value too large", [name])
            if kind == "email" and not EMAIL.match(value):
                return sf_error(
                    400, "INVALID_EMAIL_ADDRESS", f"Email: invalid email address: {value}", [name]
                )
            allowed = RESTRICTED_PICKLISTS.get(name)
            if allowed is not None and value not in allowed:
                return sf_error(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{name}: bad value for restricted picklist",
                )
        if creating:
            missing = [f for f in REQUIRED_ON_CREATE if not body.get(f)]
            if missing:
                return sf_error(
                    400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: {missing}", missing
                )
        return None

    def _save(self, record_id: str | None, body: dict[str, Any]) -> Reply:
        problem = self._invalid(body, creating=record_id is None)
        if problem is not None:
            return problem
        with self._lock:
            if record_id is None:
                record_id = f"00Q5e{self._next:013d}"
                self._next += 1
                self.leads[record_id] = {}
                created = True
            else:
                created = False
            self.leads[record_id].update(body)
        return Reply(
            201 if created else 200, {"id": record_id, "success": True, "errors": [], "created": created}
        )

    def _upsert(self, field: str, value: str, body: dict[str, Any]) -> Reply:
        if field not in EXTERNAL_IDS:
            return sf_error(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field}"
            )
        if field in body and body[field] != value:
            return sf_error(400, "INVALID_FIELD", f"{field} in the body does not match the URL")
        existing = self.by_external_id(value)
        if existing is None:
            return self._save(None, {**body, field: value})
        record_id = next(k for k, v in self.leads.items() if v is existing)
        return self._save(record_id, body)

    def _delete_by(self, field: str, value: str) -> Reply:
        if field not in EXTERNAL_IDS:
            return sf_error(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {field}"
            )
        with self._lock:
            matches = [k for k, v in self.leads.items() if v.get(field) == value]
            if not matches:
                return sf_error(404, "NOT_FOUND", "The requested resource does not exist")
            if len(matches) > 1:
                return Reply(300, [f"/services/data/v60.0/sobjects/Lead/{k}" for k in matches])
            del self.leads[matches[0]]
            self.deleted.append(matches[0])
        return Reply(204)

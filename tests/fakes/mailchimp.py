"""Mailchimp Marketing API v3 list members, as a local server.

Request bodies are validated with JSON Schema (draft 2020-12, the dialect of the OpenAPI 3.1 document)
against ``contracts/mailchimp/marketing-v3-list-members.subset.json``, strictly — including the
top-level ``oneOf`` that refuses a member body holding both ``status_if_new`` and ``status`` (see the
quirk in that folder's SOURCE.md): Leadflow sends ``status_if_new`` only, on purpose.

Behaviour beyond the schema, from Mailchimp's documentation: ``subscriber_hash`` must be the MD5 of the
lower-cased address (or the address itself); ``status_if_new`` is needed to create a member and
``status`` alone changes an existing one; a permanently deleted address cannot be added again
("Forgotten Email Not Subscribed"); tags need an existing member and answer 204. Errors are RFC 9457
problem documents (``application/problem+json``). Auth: HTTP Basic ``anystring:<key>`` or Bearer key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.fakes.server import FakeVendor, Recorded, Reply

MEMBER = re.compile(r"^/3\.0/lists/(?P<list>[^/]+)/members/(?P<hash>[^/]+)$")
TAGS = re.compile(r"^/3\.0/lists/(?P<list>[^/]+)/members/(?P<hash>[^/]+)/tags$")
DELETE = re.compile(r"^/3\.0/lists/(?P<list>[^/]+)/members/(?P<hash>[^/]+)/actions/delete-permanent$")
MEMBER_PATH = "/3.0/lists/{list_id}/members/{subscriber_hash}"
TAGS_PATH = "/3.0/lists/{list_id}/members/{subscriber_hash}/tags"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]{2,}$")


def operation_validator(document: dict[str, Any], path: str, method: str) -> Draft202012Validator:
    """A validator for one operation's JSON request body, ``$ref``s resolved within the document."""
    registry: Registry[Any] = Registry().with_resource(
        "urn:contract", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    pointer = "/".join(
        p.replace("~", "~0").replace("/", "~1")
        for p in ("paths", path, method, "requestBody", "content", "application/json", "schema")
    )
    return Draft202012Validator({"$ref": f"urn:contract#/{pointer}"}, registry=registry)


def problem(status: int, title: str, detail: str) -> Reply:
    return Reply(
        status,
        {
            "type": "https://mailchimp.com/developer/marketing/docs/errors/",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": str(uuid.uuid4()),
        },
        content_type="application/problem+json",
    )


def too_many_requests(retry_after: str | None = "3") -> Reply:
    reply = problem(429, "Too Many Requests", "You have exceeded the limit of 10 simultaneous connections.")
    if retry_after:
        reply.headers["Retry-After"] = retry_after
    return reply


def server_error(status: int = 500) -> Reply:
    return problem(status, "Internal Server Error", "An unexpected internal error has occurred.")


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


class FakeMailchimp(FakeVendor):
    def __init__(self, contract: Path, api_key: str = "0123456789abcdef0123456789abcdef-us21") -> None:
        super().__init__()
        document = json.loads(contract.read_text())
        self.member_schema = operation_validator(document, MEMBER_PATH, "put")
        self.tags_schema = operation_validator(document, TAGS_PATH, "post")
        self.api_key = api_key
        self.lists: dict[str, dict[str, dict[str, Any]]] = {"list-main": {}, "list-campaign": {}}
        self.forgotten: set[tuple[str, str]] = set()

    def reset(self) -> None:
        """Forget every request, scripted reply, member and erasure (one server serves a test module)."""
        with self._lock:
            self.requests.clear()
            self.scripted.clear()
            for members in self.lists.values():
                members.clear()
            self.forgotten.clear()

    def member(self, list_id: str, email: str) -> dict[str, Any] | None:
        return self.lists.get(list_id, {}).get(md5(email))

    def _authorised(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value == self.api_key
        if scheme.lower() == "basic":
            try:
                _user, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return password == self.api_key
        return False

    def _json(self, request: Recorded, validator: Draft202012Validator) -> dict[str, Any] | Reply:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return problem(400, "Invalid Resource", "The request body must be JSON.")
        try:
            body = request.json()
        except ValueError:
            return problem(400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.")
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        if errors:
            detail = "; ".join(f"{'/'.join(map(str, e.path)) or '(body)'}: {e.message}" for e in errors)
            return problem(
                400, "Invalid Resource", f"The resource submitted could not be validated. {detail}"
            )
        assert isinstance(body, dict)
        return body

    def handle(self, request: Recorded) -> Reply:
        if not self._authorised(request.headers.get("authorization", "")):
            return problem(
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )
        for pattern, method, action in (
            (MEMBER, "PUT", self._put_member),
            (TAGS, "POST", self._tags),
            (DELETE, "POST", self._delete),
        ):
            match = pattern.match(request.path)
            if match is None:
                continue
            if request.method != method:
                return problem(405, "Method Not Allowed", f"{request.method} is not allowed here.")
            if match.group("list") not in self.lists:
                return problem(404, "Resource Not Found", "The requested resource could not be found.")
            return action(request, match.group("list"), match.group("hash"))
        return problem(404, "Resource Not Found", "The requested resource could not be found.")

    def _put_member(self, request: Recorded, list_id: str, key: str) -> Reply:
        body = self._json(request, self.member_schema)
        if isinstance(body, Reply):
            return body
        email = str(body["email_address"])
        if not EMAIL.match(email):
            return problem(
                400, "Invalid Resource", f"{email} looks fake or invalid, please enter a real email."
            )
        if key not in (md5(email), email.lower()):
            return problem(400, "Invalid Resource", "The subscriber hash does not match the email address.")
        if (list_id, md5(email)) in self.forgotten:
            return problem(
                400,
                "Forgotten Email Not Subscribed",
                f"{email} was permanently deleted and cannot be re-imported.",
            )
        members = self.lists[list_id]
        with self._lock:
            existing = members.get(md5(email))
            if existing is None:
                if "status_if_new" not in body:
                    return problem(400, "Invalid Resource", "status_if_new is required for a new member.")
                existing = {
                    "id": md5(email),
                    "email_address": email.lower(),
                    "unique_email_id": uuid.uuid4().hex[:10],
                    "contact_id": uuid.uuid4().hex,
                    "status": body["status_if_new"],
                    "merge_fields": {},
                    "tags": {},
                    "list_id": list_id,
                }
                members[md5(email)] = existing
            elif "status" in body:
                existing["status"] = body["status"]
            existing["merge_fields"].update(body.get("merge_fields") or {})
            if "timestamp_signup" in body:
                existing["timestamp_signup"] = body["timestamp_signup"]
            answer = {**existing, "tags": [{"name": n} for n, on in existing["tags"].items() if on]}
        return Reply(200, answer)

    def _tags(self, request: Recorded, list_id: str, key: str) -> Reply:
        body = self._json(request, self.tags_schema)
        if isinstance(body, Reply):
            return body
        member = self.lists[list_id].get(key)
        if member is None:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        with self._lock:
            for tag in body["tags"]:
                member["tags"][tag["name"]] = tag["status"] == "active"
        return Reply(204)

    def _delete(self, request: Recorded, list_id: str, key: str) -> Reply:
        with self._lock:
            member = self.lists[list_id].pop(key, None)
            if member is None:
                return problem(404, "Resource Not Found", "The requested resource could not be found.")
            self.forgotten.add((list_id, key))
        return Reply(204)

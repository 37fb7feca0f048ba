"""Twilio Messages API, per ``shared/contracts/twilio/api-v2010-messages.subset.json``.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP Basic auth (AccountSid:AuthToken)
and an ``application/x-www-form-urlencoded`` body. The path parameter and the form are validated with
the contract's own schemas (OpenAPI 3.0 validator); then Twilio's documented checks that the schema
only describes in prose: ``To`` present (21604) and E.164 (21211), ``From``/``MessagingServiceSid``
present (21603) and owned by the account (21606), a body (21602) of at most 1,600 characters (21617).

Success is ``201`` with the message resource; errors use Twilio's shape
``{"code", "message", "more_info", "status"}`` (401 code 20003, 404 code 20404, 405 code 20004).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs

from openapi_schema_validator import OAS30Validator, oas30_format_checker

from tests.fakes.server import FakeVendor, Recorded, Reply

PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_POINTER = "#/paths/" + PATH.replace("/", "~1")


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply(status, body, headers=headers or {})


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    """Form values are strings; give them the type the schema asks for (as Twilio's parser does)."""
    kind = schema.get("type")
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if kind == "boolean":
        if value.lower() not in ("true", "false"):
            raise ValueError(value)
        return value.lower() == "true"
    return value


class FakeTwilio(FakeVendor):
    def __init__(
        self,
        contract: Path,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        numbers: tuple[str, ...] = ("+15005550006",),
    ) -> None:
        super().__init__()
        self.contract: dict[str, Any] = json.loads(contract.read_text())
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.numbers = set(numbers)
        self.stall_seconds = 0.0
        post = self.contract["paths"][PATH]["post"]
        self.form_schema: dict[str, Any] = post["requestBody"]["content"][
            "application/x-www-form-urlencoded"
        ]["schema"]
        self.form_validator = OAS30Validator(
            {
                **self.contract,
                "$ref": f"{_POINTER}/post/requestBody/content/application~1x-www-form-urlencoded/schema",
            },
            format_checker=oas30_format_checker,
        )
        sid_param = next(p for p in post["parameters"] if p["name"] == "AccountSid")
        self.sid_validator = OAS30Validator(sid_param["schema"])
        self.response_validator = OAS30Validator(
            {**self.contract, "$ref": "#/components/schemas/api.v2010.account.message"},
            format_checker=oas30_format_checker,
        )

    def __enter__(self) -> Self:
        super().__enter__()
        return self

    def _form(self, request: Recorded) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return {}  # Twilio reads parameters from a form only; anything else arrives as "no parameters"
        raw = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
        props: dict[str, Any] = self.form_schema["properties"]
        form: dict[str, Any] = {}
        for key, values in raw.items():
            schema = props.get(key, {})
            if schema.get("type") == "array":
                form[key] = [_coerce(v, schema.get("items", {})) for v in values]
            else:
                form[key] = _coerce(values[-1], schema)
        return form

    def _authenticated(self, request: Recorded) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(
            password, self.auth_token
        )

    def message_resource(self, form: dict[str, Any]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        body = str(form.get("Body", ""))
        now = formatdate(time.time(), usegmt=False).replace("-0000", "+0000")
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(1 if len(body) <= 160 else math.ceil(len(body) / 153)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form.get("To"),
            "uri": f"{uri}.json",
        }

    def handle(self, request: Recorded) -> Reply:
        if self.stall_seconds:
            time.sleep(self.stall_seconds)
        match = _PATH.match(request.path)
        if match is None or not self.sid_validator.is_valid(match["sid"]):
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        if not self._authenticated(request):
            return twilio_error(401, 20003, "Authenticate")
        if match["sid"] != self.account_sid:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        if request.method != "POST":
            return twilio_error(405, 20004, "Method not allowed")
        try:
            form = self._form(request)
        except (ValueError, UnicodeDecodeError) as exc:
            return twilio_error(400, 20001, f"Invalid parameter: {exc}")
        to = form.get("To")
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        errors = list(self.form_validator.iter_errors(form))
        if errors:
            return twilio_error(400, 20001, f"Invalid parameter: {errors[0].message}")
        if not _E164.match(str(to)):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        sender = form.get("From")
        if not sender and not form.get("MessagingServiceSid"):
            return twilio_error(
                400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."
            )
        if sender and sender not in self.numbers:
            return twilio_error(
                400,
                21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone number or "
                "short code for your account.",
            )
        if sender == to:
            return twilio_error(400, 21266, "'To' and 'From' number cannot be the same")
        body = form.get("Body")
        if not body and not form.get("MediaUrl") and not form.get("ContentSid"):
            return twilio_error(400, 21602, "Message body is required.")
        if body and len(str(body)) > 1600:
            return twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        return Reply(201, self.message_resource(form))

"""Google Analytics 4 Measurement Protocol, as a local server (``contracts/ga4/measurement-protocol.md``).

``POST /mp/collect?measurement_id=&api_secret=`` never answers an HTTP error for a bad event (GA drops
it silently), so this fake answers 204 like GA and appends every problem to :attr:`violations`; tests
assert that list is empty. ``/debug/mp/collect`` runs the same checks and answers
``200 {"validationMessages": [{fieldPath, description, validationCode}]}`` without recording events.

Checked: the measurement id and API secret, JSON body under 130 kB, ``client_id``, ``timestamp_micros``
(not in the future, not more than 72 hours old), ``consent`` values, at most 25 events of at most 25
params, event and param names (≤ 40 characters, letters/digits/underscores, starting with a letter, no
reserved names or prefixes), param values ≤ 100 characters, and no personal data (an e-mail address or
a phone number in any value).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from tests.fakes.server import FakeVendor, Recorded, Reply

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
PHONE = re.compile(r"\+?\d[\d\s().-]{7,}\d")
RESERVED_EVENTS = {
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_clear_data",
    "app_exception",
    "app_install",
    "app_remove",
    "app_store_refund",
    "app_update",
    "app_upgrade",
    "error",
    "first_open",
    "first_visit",
    "in_app_purchase",
    "notification_dismiss",
    "notification_foreground",
    "notification_open",
    "notification_receive",
    "os_update",
    "session_start",
    "user_engagement",
}
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
CONSENT = {"GRANTED", "DENIED"}
API_SECRET = "ga4-test-secret"


@dataclass
class Message:
    field_path: str
    description: str
    code: str

    def as_json(self) -> dict[str, str]:
        return {"fieldPath": self.field_path, "description": self.description, "validationCode": self.code}


class FakeGa4(FakeVendor):
    def __init__(self, measurement_id: str = "G-TEST123456", api_secret: str = API_SECRET) -> None:
        super().__init__()
        self.measurement_id = measurement_id
        self.api_secret = api_secret
        self.events: list[dict[str, Any]] = []  # accepted payloads (the whole request body)
        self.violations: list[str] = []

    def reset(self) -> None:
        """Forget every request, scripted reply, event and violation (one server serves a test module)."""
        with self._lock:
            self.requests.clear()
            self.scripted.clear()
            self.events.clear()
            self.violations.clear()

    def _check_name(self, path: str, name: object, out: list[Message], event: bool) -> None:
        if not isinstance(name, str) or not name:
            out.append(Message(path, "Name is required.", "VALUE_REQUIRED"))
            return
        if len(name) > 40:
            out.append(Message(path, f"Name {name!r} is longer than 40 characters.", "NAME_INVALID"))
        if not NAME.match(name):
            out.append(
                Message(
                    path, f"Name {name!r} must start with a letter; letters, digits, _ only.", "NAME_INVALID"
                )
            )
        if name.startswith(RESERVED_PREFIXES) or (event and name in RESERVED_EVENTS):
            out.append(Message(path, f"Name {name!r} is reserved.", "NAME_RESERVED"))

    def validate(self, request: Recorded) -> list[Message]:
        out: list[Message] = []
        if request.query.get("measurement_id") != [self.measurement_id]:
            out.append(Message("measurement_id", "Unknown measurement_id.", "VALUE_INVALID"))
        if request.query.get("api_secret") != [self.api_secret]:
            out.append(Message("api_secret", "Invalid api_secret.", "VALUE_INVALID"))
        if not request.headers.get("content-type", "").startswith("application/json"):
            out.append(Message("", "Content-Type must be application/json.", "VALUE_INVALID"))
        if len(request.body) >= 130 * 1024:
            out.append(Message("", "The POST body must be smaller than 130kB.", "VALUE_OUT_OF_BOUNDS"))
        try:
            body = request.json()
        except ValueError:
            return [*out, Message("", "Unable to parse the JSON body.", "VALUE_INVALID")]
        if not isinstance(body, dict):
            return [*out, Message("", "The body must be a JSON object.", "VALUE_INVALID")]
        if not isinstance(body.get("client_id"), str) or not body["client_id"]:
            out.append(Message("client_id", "client_id is required.", "VALUE_REQUIRED"))
        stamp = body.get("timestamp_micros")
        if stamp is not None:
            now = time.time() * 1_000_000
            if not isinstance(stamp, int) or stamp > now + 60_000_000 or stamp < now - 72 * 3600 * 1_000_000:
                out.append(Message("timestamp_micros", "Timestamp out of bounds.", "VALUE_OUT_OF_BOUNDS"))
        consent = body.get("consent")
        if consent is not None:
            if not isinstance(consent, dict):
                out.append(Message("consent", "consent must be an object.", "VALUE_INVALID"))
            else:
                for key, value in consent.items():
                    if key not in ("ad_user_data", "ad_personalization") or value not in CONSENT:
                        out.append(Message(f"consent.{key}", "Invalid consent value.", "VALUE_INVALID"))
        events = body.get("events")
        if not isinstance(events, list) or not events:
            return [*out, Message("events", "events is required.", "VALUE_REQUIRED")]
        if len(events) > 25:
            out.append(Message("events", "A request can have at most 25 events.", "VALUE_OUT_OF_BOUNDS"))
        for i, event in enumerate(events):
            if not isinstance(event, dict):
                out.append(Message(f"events[{i}]", "An event must be an object.", "VALUE_INVALID"))
                continue
            self._check_name(f"events[{i}].name", event.get("name"), out, event=True)
            params = event.get("params", {})
            if not isinstance(params, dict):
                out.append(Message(f"events[{i}].params", "params must be an object.", "VALUE_INVALID"))
                continue
            if len(params) > 25:
                out.append(Message(f"events[{i}].params", "At most 25 parameters.", "VALUE_OUT_OF_BOUNDS"))
            for name, value in params.items():
                path = f"events[{i}].params.{name}"
                self._check_name(path, name, out, event=False)
                if isinstance(value, str):
                    if len(value) > 100:
                        out.append(Message(path, "Values are at most 100 characters.", "VALUE_OUT_OF_BOUNDS"))
                    if EMAIL.search(value) or PHONE.fullmatch(value.strip()):
                        out.append(Message(path, "Personal data must not be sent.", "VALUE_INVALID"))
                elif not isinstance(value, int | float) or isinstance(value, bool):
                    out.append(Message(path, "Values must be strings or numbers.", "VALUE_INVALID"))
        return out

    def handle(self, request: Recorded) -> Reply:
        if request.path == "/debug/mp/collect":
            if request.method != "POST":
                return Reply(405, "Only POST is supported", content_type="text/plain")
            messages = self.validate(request)
            return Reply(200, {"validationMessages": [m.as_json() for m in messages]})
        if request.path != "/mp/collect" or request.method != "POST":
            with self._lock:
                self.violations.append(f"{request.method} {request.path}: not the collection endpoint")
            return Reply(404, "Not Found", content_type="text/plain")
        messages = self.validate(request)
        with self._lock:
            if messages:
                self.violations.extend(f"{m.field_path}: {m.description} ({m.code})" for m in messages)
            else:
                self.events.append(request.json())
        return Reply(204)

"""A customer's webhook endpoint: checks Leadflow's signature and drops repeated deliveries.

The signature check is written here independently of ``leadflow.integrations.webhook`` (a shared bug
would otherwise pass): ``X-Leadflow-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<raw body>")>``,
timestamp within ``tolerance`` seconds. A bad or missing signature is answered 401, a body that is not
JSON 400; a delivery id seen before is answered 200 without being processed again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from tests.fakes.server import FakeVendor, Recorded, Reply

PATH = "/hooks/leadflow"
SECRET = "whsec-test-secret"


class FakeWebhookReceiver(FakeVendor):
    def __init__(self, secret: str = SECRET, tolerance: float = 300.0, echo: bool = False) -> None:
        super().__init__()
        self.secret = secret
        self.tolerance = tolerance
        self.echo = echo  # answer with the body received (some receivers do)
        self.deliveries: dict[str, dict[str, Any]] = {}  # delivery id -> body, processed once
        self.duplicates = 0

    def reset(self) -> None:
        """Forget every request, scripted reply and delivery (one server serves a whole test module)."""
        with self._lock:
            self.requests.clear()
            self.scripted.clear()
            self.deliveries.clear()
            self.duplicates = 0

    @property
    def url(self) -> str:
        return self.base_url + PATH

    def _signed(self, header: str, body: bytes) -> bool:
        fields: dict[str, list[str]] = {}
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            fields.setdefault(key, []).append(value)
        stamps = fields.get("t", [])
        if len(stamps) != 1 or not stamps[0].isdigit():
            return False
        if abs(time.time() - int(stamps[0])) > self.tolerance:
            return False
        expected = hmac.new(
            self.secret.encode(), stamps[0].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))

    def handle(self, request: Recorded) -> Reply:
        if request.path != PATH or request.method != "POST":
            return Reply(404, {"error": "not found"})
        if not request.headers.get("content-type", "").startswith("application/json"):
            return Reply(415, {"error": "expected application/json"})
        if not self._signed(request.headers.get("x-leadflow-signature", ""), request.body):
            return Reply(401, {"error": "bad signature"})
        delivery = request.headers.get("x-leadflow-delivery")
        if not delivery:
            return Reply(400, {"error": "missing X-Leadflow-Delivery"})
        try:
            body = request.json()
        except ValueError:
            return Reply(400, {"error": "invalid JSON"})
        with self._lock:
            if delivery in self.deliveries:
                self.duplicates += 1
                return Reply(200, {"status": "duplicate"})
            self.deliveries[delivery] = body
        if self.echo:
            return Reply(200, json.dumps(body))
        return Reply(200, {"status": "ok"})

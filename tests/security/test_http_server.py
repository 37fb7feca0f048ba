"""Over a real uvicorn server: errors keep the keep-alive connection usable; request heads are bounded (431)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from leadflow.app import create_app
from leadflow.config import Settings
from leadflow.security import headerlimits
from leadflow.security.headerlimits import apply_header_limits
from leadflow.security.tokens import create_token
from tests.cli import run_cli
from tests.conftest import TEST_KEY, example_lead, run_async
from tests.security.test_tls import _free_port

BIN = Path(sys.executable).parent / "leadflow"
FORGED = base64.b64encode(b"v1:9223372036854775808").decode()  # the attack's cursor: BIGINT overflow


class Conn:
    """A raw HTTP/1.1 client over one socket, so a test knows the connection it uses is the same one."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, head: bytes) -> None:
        self.sock.sendall(head)

    def request(
        self, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, dict[str, str], Any]:
        method = "GET" if body is None else "POST"
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Length"] = str(len(body))
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        return self.response()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def response(self) -> tuple[int, dict[str, str], Any]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, orjson.loads(body) if body else None


class Server:
    def __init__(self, app: FastAPI, settings: Settings) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
        apply_header_limits(config, settings.max_header_bytes, settings.max_header_count)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.05)
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def server(settings_factory: Any) -> Iterator[tuple[int, dict[str, str]]]:
    settings: Settings = settings_factory(max_header_bytes=4096, max_header_count=20)
    app = create_app(settings)

    @app.get("/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("a bug")

    with Server(app, settings) as port:

        async def token() -> str:
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine(settings.database_url)
            try:
                async with engine.begin() as conn:
                    return (await create_token(conn, name="t", role="admin")).token
            finally:
                await engine.dispose()

        yield port, {"Authorization": f"Bearer {run_async(token())}"}


def test_errors_keep_the_connection(server: tuple[int, dict[str, str]]) -> None:
    port, admin = server
    conn = Conn(port)
    try:
        # An unexpected exception: 500 in the error shape, and the same connection goes on working.
        status, headers, body = conn.request("/boom")
        assert status == 500 and body["error"] == "INTERNAL_ERROR"
        assert headers.get("connection") != "close"
        assert conn.request("/healthz")[0] == 200
        # The attack's forged cursors: 400 INVALID_CURSOR on every paged endpoint, connection intact.
        for path in ("/v1/api/leads", "/v1/api/audit", "/v1/api/jobs"):
            status, _, body = conn.request(f"{path}?cursor={FORGED}", admin)
            assert (status, body["error"], body["field"]) == (400, "INVALID_CURSOR", "cursor"), path
            assert conn.request(path, admin)[0] == 200, path
        # Other error paths too.
        assert conn.request("/v1/api/nothing-here")[0] == 404
        assert conn.request("/v1/api/leads")[0] == 401
        assert conn.request("/v1/api/leads?limit=0", admin)[0] == 400
        # Capture's own refusals, including a body too large that the app does not read to the end.
        json_type = {"Content-Type": "application/json"}
        assert conn.request("/v1/api/leads", json_type, b"{not json")[0] == 400
        assert conn.request("/v1/api/leads", {"Content-Type": "text/plain"}, b"x")[0] == 415
        assert conn.request("/v1/api/leads", json_type, b'{"a": "' + b"x" * 200_000 + b'"}')[0] == 413
        assert conn.request("/healthz")[0] == 200
    finally:
        conn.close()


def test_an_unexpected_capture_error_answers_500_and_keeps_the_connection(settings_factory: Any) -> None:
    """Capture is answered before FastAPI's stack (LeadflowApp): a bug there still gets the handlers' 500
    in the error shape, a request id, and a connection that goes on working."""
    from leadflow.kit.state import state_of

    settings: Settings = settings_factory()
    env = {"DATABASE_URL": settings.database_url, "ENCRYPTION_KEY": TEST_KEY, "LEADFLOW_ENV": "test"}
    run_cli(["campaigns", "create", "--id", "boom", "--name", "Boom", "--type", "service"], extra_env=env)
    app = create_app(settings)

    async def broken_submit(*_: Any) -> Any:
        raise RuntimeError("a bug in the writer")  # fault injection: the writer is the last step

    with Server(app, settings) as port:
        state_of(app).writer.submit = broken_submit  # type: ignore[method-assign]
        conn = Conn(port)
        try:
            body = orjson.dumps({**example_lead(), "campaign_id": "boom"})
            status, headers, answer = conn.request(
                "/v1/api/leads", {"Content-Type": "application/json"}, body
            )
            assert (status, answer["error"], answer["code"]) == (500, "INTERNAL_ERROR", 500)
            assert headers.get("x-request-id") and headers.get("connection") != "close"
            assert conn.request("/healthz")[0] == 200
        finally:
            conn.close()


def test_request_heads_over_the_limits_get_431(server: tuple[int, dict[str, str]]) -> None:
    port, _ = server
    # Just under the limits: served.
    conn = Conn(port)
    try:
        assert conn.request("/healthz", {"X-Big": "a" * 3000})[0] == 200
        assert conn.request("/healthz", {f"X-H{i}": "1" for i in range(18)})[0] == 200
    finally:
        conn.close()
    cases: list[dict[str, str]] = [
        {"X-Big": "a" * 5000},  # one header over MAX_HEADER_BYTES
        {f"X-H{i}": "1" for i in range(21)},  # more than MAX_HEADER_COUNT
        {f"X-H{i}": "b" * 300 for i in range(15)},  # the sum over MAX_HEADER_BYTES
    ]
    for headers in cases:
        conn = Conn(port)
        try:
            status, answer_headers, body = conn.request("/healthz", headers)
            assert status == 431, headers.keys()
            assert body == {
                "success": False,
                "error": "REQUEST_HEADER_FIELDS_TOO_LARGE",
                "message": "Request headers are too large or too many",
                "field": None,
                "code": 431,
            }
            assert answer_headers["connection"] == "close"
        finally:
            conn.close()


def test_a_huge_header_is_not_read(server: tuple[int, dict[str, str]]) -> None:
    """The attack: one 8 MB header. The server answers 431 long before the header ends."""
    port, _ = server
    conn = Conn(port)
    sent = 0
    try:
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        chunk = b"a" * 65536
        try:
            while sent < 8 * 1024 * 1024:
                conn.send(chunk)
                sent += len(chunk)
            conn.send(b"\r\n\r\n")
        except OSError:
            pass  # the server stopped reading and closed: expected
        status, _, body = conn.response()
        assert status == 431 and body["code"] == 431
    finally:
        conn.close()


def test_url_over_the_limit_gets_431(server: tuple[int, dict[str, str]]) -> None:
    port, _ = server
    conn = Conn(port)
    try:
        assert conn.request("/healthz?q=" + "x" * 5000)[0] == 431
    finally:
        conn.close()


def test_leadflow_serve_applies_the_configured_limits(tmp_path: Path) -> None:
    """The entry point: `leadflow serve` reads MAX_HEADER_BYTES / MAX_HEADER_COUNT."""
    port = _free_port()
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite",
        RUN_WORKER="false",
        MAX_HEADER_BYTES="2048",
        MAX_HEADER_COUNT="12",
        ENCRYPTION_KEY_FILE=str(tmp_path / "key"),
    )
    run_cli(["migrate"], env, tmp_path)  # in-process: only `serve` needs to be the real entry point
    server = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = Conn(port)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "server did not start"
                time.sleep(0.2)
        try:
            assert conn.request("/healthz", {"X-Big": "a" * 1500})[0] == 200
            assert conn.request("/healthz", {"X-Big": "a" * 2500})[0] == 431
        finally:
            conn.close()
        conn = Conn(port)
        try:
            assert conn.request("/healthz", {f"X-H{i}": "1" for i in range(13)})[0] == 431
        finally:
            conn.close()
    finally:
        server.terminate()
        server.wait(15)


def test_limits_also_hold_inside_the_app(settings_factory: Any) -> None:
    """Mounted in another ASGI server, the app itself answers 431 (request-context middleware)."""
    import httpx

    settings: Settings = settings_factory(max_header_bytes=2048, max_header_count=10)
    app = create_app(settings)

    async def run() -> tuple[int, int, int, Any]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                ok = await client.get("/healthz")
                big = await client.get("/healthz", headers={"X-Big": "a" * 3000})
                many = await client.get("/healthz", headers={f"X-H{i}": "1" for i in range(12)})
                return ok.status_code, big.status_code, many.status_code, big.json()

    ok, big, many, body = asyncio.run(run())
    assert (ok, big, many) == (200, 431, 431)
    assert body["error"] == "REQUEST_HEADER_FIELDS_TOO_LARGE"


def test_the_protocol_defaults_are_the_settings_defaults() -> None:
    """Without limits on the uvicorn config, the protocol applies the settings' defaults."""
    fields = Settings.model_fields
    assert fields["max_header_bytes"].default == headerlimits.DEFAULT_MAX_BYTES
    assert fields["max_header_count"].default == headerlimits.DEFAULT_MAX_COUNT

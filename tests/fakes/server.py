"""A real HTTP server on 127.0.0.1 standing in for a vendor API.

Each fake subclasses :class:`FakeVendor` and implements :meth:`handle`, which validates the request the
way the vendor would (method, path, auth, body against the vendor's contract) and answers with the
vendor's success or error shape. Tests can script failures (429 with Retry-After, 5xx) that are served
before normal handling, to exercise retries and dead-lettering for real.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for servers started as separate processes)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    accepted: bool = False  # answered 2xx by normal handling (not a scripted failure)
    received_at: float = field(default_factory=time.monotonic)  # for latency measurements

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def response(self) -> Response:
        if self.body is None:
            content = b""
        elif isinstance(self.body, bytes | str):
            content = self.body.encode() if isinstance(self.body, str) else self.body
        else:
            content = json.dumps(self.body).encode()
        return Response(content, status_code=self.status, headers=self.headers, media_type=self.content_type)


class FakeVendor:
    """Base class: run with ``with FakeX() as fake:``; ``fake.base_url`` is where it listens."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.scripted: deque[Reply] = deque()
        self._stalls: deque[float] = deque()
        self._closing = threading.Event()  # set on exit: stalled requests stop waiting
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.base_url = ""

    # -- to implement -----------------------------------------------------------------------------
    def handle(self, request: Recorded) -> Reply:
        raise NotImplementedError

    # -- test controls ----------------------------------------------------------------------------
    def fail_next(self, *replies: Reply) -> None:
        """Serve these replies, in order, to the next requests (before normal handling)."""
        with self._lock:
            self.scripted.extend(replies)

    def stall(self, seconds: float, count: int = 1) -> None:
        """Hold the next ``count`` requests for ``seconds`` before answering (timeouts, killed clients)."""
        with self._lock:
            self._stalls.extend([seconds] * count)

    @property
    def accepted(self) -> list[Recorded]:
        return [r for r in self.requests if r.accepted]

    # -- plumbing ----------------------------------------------------------------------------------
    async def _endpoint(self, request: Request) -> Response:
        recorded = Recorded(
            method=request.method,
            path=request.url.path,
            query=parse_qs(request.url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        with self._lock:
            self.requests.append(recorded)
            scripted = self.scripted.popleft() if self.scripted else None
            delay = self._stalls.popleft() if self._stalls else 0.0
        if delay and await self._stalled(delay):
            # The fake is closing (its client gave up long ago): answer without handling, so that
            # closing does not wait for the stall and nothing is processed after the test's end.
            return Reply(503, {"fake_error": "closed while stalled"}).response()
        if scripted is not None:
            return scripted.response()
        try:
            reply = self.handle(recorded)
        except Exception as exc:  # a bug in the fake must not look like a vendor answer
            return Reply(599, {"fake_error": f"{type(exc).__name__}: {exc}"}).response()
        recorded.accepted = 200 <= reply.status < 300
        return reply.response()

    async def _stalled(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if the fake closes meanwhile; whether it did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._closing.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(remaining, 0.05))
        return True

    def __enter__(self) -> Self:
        app = Starlette(
            routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)

            async def main() -> None:
                assert self._server is not None
                serve = asyncio.ensure_future(self._server.serve(sockets=[sock]))
                while not self._server.started and not serve.done():
                    await asyncio.sleep(0.01)
                started.set()
                await serve

            loop.run_until_complete(main())
            loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()

"""Request header limits: too large or too many request headers get 431, before the app runs.

The limit covers one request's head: the request target (path and query) plus every header name and
value (``MAX_HEADER_BYTES``, default 16 KiB, counted without the ``: `` and line ends), and the number
of header lines (``MAX_HEADER_COUNT``, default 100). It is enforced twice:

* in the HTTP server (:class:`HeaderLimitedProtocol`, what ``leadflow serve`` runs): uvicorn's
  httptools parser keeps accepting a header's bytes until the header ends, so without a bound a
  single 8 MB header was read, stored and handed to the application. Here the bytes of an unfinished
  head are counted as they arrive; past the limit the server answers ``431`` in the one error shape,
  with ``Connection: close``, and stops reading.
* in the application (:func:`too_large`, called by the request-context middleware), for any other
  ASGI server the app may be mounted in.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STATUS = 431
ERROR = "REQUEST_HEADER_FIELDS_TOO_LARGE"
MESSAGE = "Request headers are too large or too many"
LINGER_SECONDS = 2.0
DEFAULT_MAX_BYTES = 16 * 1024  # the defaults of MAX_HEADER_BYTES / MAX_HEADER_COUNT
DEFAULT_MAX_COUNT = 100
BYTES_ATTR = "leadflow_max_header_bytes"
COUNT_ATTR = "leadflow_max_header_count"


def error_body() -> bytes:
    return orjson.dumps({"success": False, "error": ERROR, "message": MESSAGE, "field": None, "code": STATUS})


def too_large(target_bytes: int, headers: list[tuple[bytes, bytes]], max_bytes: int, max_count: int) -> bool:
    """True when a request's head is over the limits (target length plus header names and values)."""
    if len(headers) > max_count:
        return True
    size = target_bytes
    for name, value in headers:
        size += len(name) + len(value)
    return size > max_bytes


class HeaderLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering 431 to a request head over the limits.

    A module-level class (uvicorn pickles its config for worker processes); the limits travel on the
    config (:func:`apply_header_limits`), else the defaults apply.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_bytes: int = getattr(self.config, BYTES_ATTR, DEFAULT_MAX_BYTES)
        self._max_count: int = getattr(self.config, COUNT_ATTR, DEFAULT_MAX_COUNT)
        self._in_head = True  # waiting for (the rest of) a request line and headers
        self._head_bytes = 0  # bytes received since the current head began
        self._over = False

    def data_received(self, data: bytes) -> None:
        if self._over:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still inside the head after this chunk and already past the limit (with room for the
        # ": " and CRLF of each line): the rest of an oversized header is never read.
        if (
            not self._over
            and self._in_head
            and self._head_bytes > self._max_bytes + 4 * (self._max_count + 1)
        ):
            self._reject()

    def on_headers_complete(self) -> None:
        # One check per request over what uvicorn parsed (not a Python call per header): the
        # target plus every header name and value, and the number of header lines.
        self._in_head = False
        if too_large(len(self.url), self.headers, self._max_bytes, self._max_count):
            self._fail()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def _fail(self) -> None:
        # Raised inside a parser callback: httptools turns it into HttpParserCallbackError, which
        # uvicorn answers with send_400_response (overridden below).
        self._over = True
        raise httptools.HttpParserError(ERROR)

    def send_400_response(self, msg: str) -> None:
        if self._over:
            self._reject()
        else:
            super().send_400_response(msg)

    def _reject(self) -> None:
        self._over = True
        body = error_body()
        head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.logger.warning("Request headers over the limits: 431.")
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(b"".join(head) + body)
        if transport.can_write_eof():
            # Lingering close: send our answer and FIN, keep reading (and dropping) what the client
            # is still sending for a moment, so that closing with unread bytes does not reset the
            # connection before the client has read the 431.
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()


def apply_header_limits(config: uvicorn.Config, max_bytes: int, max_count: int) -> None:
    """Serve ``config`` with :class:`HeaderLimitedProtocol` and these limits (before ``config.load()``)."""
    config.http = HeaderLimitedProtocol
    setattr(config, BYTES_ATTR, max_bytes)
    setattr(config, COUNT_ATTR, max_count)

"""`leadflow serve --ssl-certfile/--ssl-keyfile` speaks TLS 1.3 only."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli import run_cli
from tests.fakes.smtp import self_signed

BIN = Path(sys.executable).parent / "leadflow"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _handshake(port: int, cert: Path, version: ssl.TLSVersion) -> bytes:
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version = version
    context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return tls.recv(4096)


def test_tls13_only(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)  # the SMTP fake's helper: valid for localhost
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite", RUN_WORKER="false")
    run_cli(["migrate"], env, tmp_path)  # in-process: only `serve` needs to be the real entry point
    server = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = _handshake(port, cert, ssl.TLSVersion.TLSv1_3)
                break
            except (ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert answer.startswith(b"HTTP/1.1 200")
        with pytest.raises(ssl.SSLError):
            _handshake(port, cert, ssl.TLSVersion.TLSv1_2)
    finally:
        server.terminate()
        server.wait(10)

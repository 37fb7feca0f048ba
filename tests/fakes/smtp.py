"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it receives.

``with FakeSmtp() as smtp:`` listens on ``smtp.host:smtp.port``. Options: STARTTLS offered or required
(``tls``/``require_starttls``), implicit TLS (``implicit_tls``), AUTH with one user (``login``). Tests
script replies for a stage (``fail_next("RCPT", "550 5.1.1 ...")``) and stall DATA to force client
timeouts. :func:`self_signed` makes a certificate for 127.0.0.1/localhost with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import ipaddress
import logging
import ssl
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    received_at: float = field(default_factory=time.monotonic)  # for latency measurements
    peer: Any = None  # the client's (host, port): one per connection

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Controller(Controller):
    """Listens on port 0 (a free port) and learns which one before the start-up self-check."""

    def _trigger_server(self) -> None:
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class FakeSmtp:
    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.messages: list[ReceivedMail] = []
        self.logins: list[str] = []
        self.stall_seconds = 0.0
        self._tls = tls
        self._require_starttls = require_starttls
        self._implicit_tls = implicit_tls
        self._login = login
        self._idle_timeout = idle_timeout  # close connections idle this long (aiosmtpd's timeout)
        self._scripted: dict[str, deque[str]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._controller: _Controller | None = None
        self._log_level = logging.NOTSET

    # -- test controls ----------------------------------------------------------------------------
    def fail_next(self, stage: str, *replies: str) -> None:
        """Answer the next MAIL/RCPT/DATA commands with these replies (e.g. ``451 4.3.0 Try later``)."""
        with self._lock:
            self._scripted[stage.upper()].extend(replies)

    def _take(self, stage: str) -> str | None:
        with self._lock:
            queue = self._scripted[stage]
            return queue.popleft() if queue else None

    # -- aiosmtpd handler hooks -------------------------------------------------------------------
    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        scripted = self._take("MAIL")
        if scripted is not None:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        scripted = self._take("RCPT")
        if scripted is not None:
            return scripted
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.stall_seconds:
            await asyncio.sleep(self.stall_seconds)
        scripted = self._take("DATA")
        if scripted is not None:
            return scripted
        data = envelope.original_content or b""
        with self._lock:
            self.messages.append(
                ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), data, peer=session.peer)
            )
        return "250 2.0.0 Ok: queued as FAKE1234"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if self._login is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        ok = (user, password) == self._login
        if ok:
            with self._lock:
                self.logins.append(user)
        return AuthResult(success=ok, handled=False)

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> FakeSmtp:
        # aiosmtpd logs every command and the whole DATA at DEBUG: that is the *receiving* server's log
        # (recipients, bodies), not ours; keep it out of the suite's personal-data log check.
        server_log = logging.getLogger("mail.log")
        self._log_level = server_log.level
        server_log.setLevel(logging.WARNING)
        kwargs: dict[str, Any] = {}
        if self._tls is not None:
            kwargs.update(tls_context=self._tls, require_starttls=self._require_starttls)
        if self._idle_timeout is not None:
            kwargs["timeout"] = self._idle_timeout
        if self._login is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
            kwargs["auth_require_tls"] = self._tls is not None or self._implicit_tls is not None
        controller = _Controller(
            self,
            hostname=self.host,
            port=0,
            ssl_context=self._implicit_tls,
            server_hostname="localhost",
            **kwargs,
        )
        controller.start()
        self._controller = controller
        self.port = controller.port
        return self

    def __exit__(self, *exc: object) -> None:
        if self._controller is not None:
            self._controller.stop()
        logging.getLogger("mail.log").setLevel(self._log_level)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate (and key) valid for ``localhost`` and ``127.0.0.1``; trust it via SSL_CERT_FILE."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context

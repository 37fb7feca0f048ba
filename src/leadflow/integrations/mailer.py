"""Outgoing e-mail: Jinja2 rendering and one transport chosen by ``EMAIL_TRANSPORT``.

``smtp`` sends with aiosmtplib (implicit TLS with ``SMTP_USE_TLS``, otherwise STARTTLS is *required*
when ``SMTP_STARTTLS`` is on, so a server that stops offering it cannot downgrade us to plain text;
login when ``SMTP_USER``/``SMTP_PASSWORD`` are set). ``sendgrid`` posts to SendGrid's v3 mail send.

Failures follow the connector contract: refused connections, timeouts and 4xx SMTP replies are
retriable, 5xx SMTP replies (and a server lacking a required extension) are permanent; HTTP answers go
through :func:`leadflow.integrations.http.check`. SMTP replies often quote the recipient's address, so
e-mail addresses are redacted from every message and excerpt we keep.

Every message carries ``Message-ID`` and ``X-Leadflow-Dedup`` derived from the delivery's dedup key:
a retry of the same delivery sends the same ids, so mail systems (and people) can recognise it.
"""

from __future__ import annotations

import asyncio
import base64
import email.charset
import email.encoders
import email.policy
import email.utils
import hashlib
import re
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from functools import lru_cache
from typing import Any, Literal

import aiosmtplib
import httpx
import jinja2
from pydantic import BaseModel, ConfigDict, SecretStr

from leadflow.config import Settings, secret_text, text
from leadflow.integrations.base import DeliveryError, Outcome, PermanentError, RetriableError
from leadflow.integrations.http import check, excerpt, send

DEDUP_HEADER = "X-Leadflow-Dedup"
_EMAIL = re.compile(r"[^\s<>\"'(),;:@]+@[^\s<>\"'(),;:@]+\.[A-Za-z0-9-]+")
_LINE_BREAKS = re.compile(r"[\r\n\t]+")


def redact_emails(text: str) -> str:
    return _EMAIL.sub("<email>", text)


_SMTP_POLICY = email.policy.compat32.clone(linesep="\r\n")
_UTF8_QP = email.charset.Charset("utf-8")
_UTF8_QP.body_encoding = email.charset.QP
_ADDRESS = re.compile(r"[^\s<>\"'(),;:@\\\[\]]+@[^\s<>\"'(),;:@\\\[\]]+")


def _address(name: str, addr: str) -> str:
    """``Name <addr>`` with the name RFC 2047 encoded when it is not ASCII; a malformed address is
    refused (it could not be delivered, and must not smuggle header syntax)."""
    # ASCII only: we do not use SMTPUTF8, so a non-ASCII address cannot be sent and no retry changes that.
    if not addr.isascii() or not _ADDRESS.fullmatch(addr):
        raise PermanentError("invalid e-mail address")
    return email.utils.formataddr((one_line(name), addr), charset="utf-8")


def _header(value: str) -> Any:
    """Non-ASCII text as a :class:`Header` (RFC 2047 encoded words, folded by the generator)."""
    return value if value.isascii() else Header(value, "utf-8")


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype, policy=_SMTP_POLICY)
    part.set_payload(text, _UTF8_QP)
    return part


def _filename(name: str) -> str:
    """An attachment's file name: ASCII letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "attachment"


def _attachment_part(attachment: Attachment) -> MIMEBase:
    maintype, _, subtype = attachment.mime_type.partition("/")
    part = MIMEBase(maintype, subtype or "octet-stream", policy=_SMTP_POLICY)
    if maintype == "text":
        part.set_param("charset", "utf-8")
    part.set_payload(attachment.content)
    email.encoders.encode_base64(part)
    part["Content-Disposition"] = f'attachment; filename="{_filename(attachment.filename)}"'
    return part


def one_line(text: str) -> str:
    """Header-safe text: no line breaks (no header injection), whitespace collapsed."""
    return " ".join(_LINE_BREAKS.sub(" ", text).split())


# --- templates ----------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def template_environment(package: str = "leadflow.integrations") -> jinja2.Environment:
    """Templates shipped in ``leadflow/<package>/templates`` (then ``leadflow/integrations/templates``,
    for the shared layout): HTML autoescaped, ``.txt`` verbatim."""
    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader(package, "templates")]
    if package != "leadflow.integrations":
        loaders.append(jinja2.PackageLoader("leadflow.integrations", "templates"))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "xml"), disabled_extensions=("txt",), default=True
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(name: str, *, package: str = "leadflow.integrations", **context: Any) -> Rendered:
    """``{name}.subject.txt``, ``{name}.txt`` and ``{name}.html`` rendered with ``context``."""
    env = template_environment(package)
    return Rendered(
        subject=one_line(env.get_template(f"{name}.subject.txt").render(**context)),
        text=env.get_template(f"{name}.txt").render(**context),
        html=env.get_template(f"{name}.html").render(**context),
    )


# --- the message --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str  # ASCII, no path
    content: bytes
    mime_type: str = "text/csv"


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    html: str
    dedup_key: str  # the delivery's dedup key (plus the step for sequences)
    to_name: str | None = None
    reply_to: str | None = None
    category: str = "leadflow"
    headers: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()


def dedup_token(dedup_key: str) -> str:
    """Opaque and stable: the same delivery always yields the same token; no ids leak into mail."""
    return hashlib.sha256(dedup_key.encode()).hexdigest()[:40]


def message_id(dedup_key: str, sender: str) -> str:
    domain = sender.rpartition("@")[2] or "leadflow.invalid"
    return f"<{dedup_token(dedup_key)}@{domain}>"


class SmtpConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    port: int
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = True
    use_tls: bool = False
    timeout: float = 10.0


class SendGridMailConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    api_key: SecretStr
    base_url: str = "https://api.sendgrid.com"
    timeout: float = 10.0


class MailConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    transport: Literal["smtp", "sendgrid"]
    sender: str
    sender_name: str | None = None
    smtp: SmtpConfig | None = None
    sendgrid: SendGridMailConfig | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MailConfig:
        group = settings.smtp
        sender_name, sender = email.utils.parseaddr(group.sender)
        smtp = None
        host = text(group.host)
        if host is not None:
            password = group.password
            smtp = SmtpConfig(
                host=host,
                port=group.port,
                username=group.user or None,
                password=password if password is not None and password.get_secret_value() else None,
                starttls=group.starttls,
                use_tls=group.use_tls,
                timeout=settings.http_timeout_seconds,
            )
        sendgrid = None
        key = settings.sendgrid.api_key
        if secret_text(key) is not None and key is not None:
            sendgrid = SendGridMailConfig(
                api_key=key, base_url=settings.sendgrid.base_url, timeout=settings.http_timeout_seconds
            )
        return cls(
            transport=settings.email.transport,
            sender=sender,
            sender_name=sender_name or None,
            smtp=smtp,
            sendgrid=sendgrid,
        )

    @property
    def usable(self) -> bool:
        if "@" not in self.sender:
            return False
        if self.transport == "sendgrid":
            return self.sendgrid is not None
        if self.smtp is None:
            return False
        # A user without a password (or the reverse) is a half-done configuration, not anonymous relay.
        return (self.smtp.username is None) == (self.smtp.password is None)


class SmtpPool:
    """Reuses SMTP connections: up to ``size`` open at once, one message at a time on each.

    A new connection costs a TCP handshake, EHLO, STARTTLS and AUTH before the first MAIL FROM; a
    busy worker sends its notifications over a few long-lived ones instead. A connection is only
    reused after a successful send and for ``idle_seconds`` after its last one; if a server has closed
    an idle connection meanwhile, the message goes once more over a fresh one.
    """

    def __init__(self, config: SmtpConfig, size: int = 4, idle_seconds: float = 20.0) -> None:
        self.config = config
        self.idle_seconds = idle_seconds
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._slots = asyncio.Semaphore(size)

    def _connection(self) -> aiosmtplib.SMTP:
        smtp = self.config
        return aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password else None,
            use_tls=smtp.use_tls,
            start_tls=False if smtp.use_tls else smtp.starttls,
            timeout=smtp.timeout,
        )

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and time.monotonic() - since < self.idle_seconds:
                return client
            client.close()
        return None

    async def send(self, sender: str, recipients: list[str], message: bytes) -> str:
        async with self._slots:
            client = self._take_idle()
            reused = client is not None
            if client is None:
                client = self._connection()
                await client.connect()
            try:
                try:
                    _, reply = await client.sendmail(sender, recipients, message)
                except aiosmtplib.SMTPServerDisconnected:
                    if not reused:
                        raise
                    client.close()
                    client = self._connection()
                    await client.connect()
                    _, reply = await client.sendmail(sender, recipients, message)
            except BaseException:
                client.close()
                raise
            self._idle.append((client, time.monotonic()))
            return reply

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[0].close()


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[SmtpConfig, SmtpPool]] = (
    weakref.WeakKeyDictionary()
)


def smtp_pool(config: SmtpConfig) -> SmtpPool:
    """The pool for this server and login, in the running event loop (connections belong to a loop)."""
    pools = _POOLS.setdefault(asyncio.get_running_loop(), {})
    pool = pools.get(config)
    if pool is None:
        pool = pools[config] = SmtpPool(config)
    return pool


def close_smtp_pools() -> None:
    """Close the running loop's pooled connections (a worker calls this when it stops)."""
    for pool in _POOLS.pop(asyncio.get_running_loop(), {}).values():
        pool.close()


class Mailer:
    """Sends one :class:`OutgoingEmail` through the configured transport."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.http = http
        self.config = MailConfig.from_settings(settings)

    def configured(self) -> bool:
        return self.config.usable

    async def send(self, msg: OutgoingEmail) -> Outcome:
        if not self.configured():
            raise PermanentError(f"e-mail transport {self.config.transport!r} is not configured")
        if self.config.transport == "sendgrid":
            return await self._send_sendgrid(msg)
        return await self._send_smtp(msg)

    # -- SMTP ------------------------------------------------------------------------------------------
    def build_mime(self, msg: OutgoingEmail) -> MIMEMultipart:
        """multipart/alternative (text, then HTML), UTF-8 quoted-printable, RFC 2047 encoded headers;
        with attachments, that inside a multipart/mixed followed by one base64 part per attachment.

        Built with the email package's compat32 classes: the same message as ``EmailMessage`` would
        make, at under a third of the CPU (it showed up as the worker's largest cost per lead).
        """
        body = MIMEMultipart("alternative", policy=_SMTP_POLICY)
        body.attach(_text_part(msg.text, "plain"))
        body.attach(_text_part(msg.html, "html"))
        mime = body
        if msg.attachments:
            mime = MIMEMultipart("mixed", policy=_SMTP_POLICY)
            mime.attach(body)
            for attachment in msg.attachments:
                mime.attach(_attachment_part(attachment))
        mime["From"] = _address(self.config.sender_name or "", self.config.sender)
        mime["To"] = _address(msg.to_name or "", msg.to)
        if msg.reply_to:
            mime["Reply-To"] = _address("", msg.reply_to)
        mime["Subject"] = _header(one_line(msg.subject))
        mime["Date"] = email.utils.formatdate(usegmt=True)
        mime["Message-ID"] = message_id(msg.dedup_key, self.config.sender)
        mime[DEDUP_HEADER] = dedup_token(msg.dedup_key)
        for name, value in msg.headers.items():
            mime[name] = _header(one_line(value))
        return mime

    async def _send_smtp(self, msg: OutgoingEmail) -> Outcome:
        smtp = self.config.smtp
        assert smtp is not None
        mime = self.build_mime(msg)
        try:
            reply = await smtp_pool(smtp).send(self.config.sender, [msg.to], mime.as_bytes())
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise smtp_failure(exc, smtp.host) from None
        return Outcome(
            response_excerpt=excerpt(redact_emails(reply)),
            external_id=str(mime["Message-ID"]),
            detail="e-mail sent via smtp",
        )

    # -- SendGrid --------------------------------------------------------------------------------------
    def sendgrid_body(self, msg: OutgoingEmail) -> dict[str, Any]:
        to: dict[str, str] = {"email": msg.to}
        if msg.to_name:
            to["name"] = one_line(msg.to_name)
        sender: dict[str, str] = {"email": self.config.sender}
        if self.config.sender_name:
            sender["name"] = self.config.sender_name
        token = dedup_token(msg.dedup_key)
        body: dict[str, Any] = {
            "personalizations": [{"to": [to], "custom_args": {"leadflow_dedup": token}}],
            "from": sender,
            "subject": one_line(msg.subject),
            # SendGrid requires text/plain before text/html.
            "content": [{"type": "text/plain", "value": msg.text}, {"type": "text/html", "value": msg.html}],
            "headers": {
                "Message-ID": message_id(msg.dedup_key, self.config.sender),
                DEDUP_HEADER: token,
                **{name: one_line(value) for name, value in msg.headers.items()},
            },
            "categories": [msg.category],
        }
        if msg.reply_to:
            body["reply_to"] = {"email": msg.reply_to}
        if msg.attachments:
            body["attachments"] = [
                {
                    "content": base64.b64encode(a.content).decode(),
                    "type": a.mime_type,
                    "filename": _filename(a.filename),
                    "disposition": "attachment",
                }
                for a in msg.attachments
            ]
        return body

    async def _send_sendgrid(self, msg: OutgoingEmail) -> Outcome:
        config = self.config.sendgrid
        assert config is not None
        url = f"{config.base_url.rstrip('/')}/v3/mail/send"
        kwargs: dict[str, Any] = {
            "json": self.sendgrid_body(msg),
            "headers": {"Authorization": f"Bearer {config.api_key.get_secret_value()}"},
        }
        if self.http is not None:
            response = await send(self.http, "POST", url, **kwargs)
        else:
            async with httpx.AsyncClient(timeout=config.timeout) as client:
                response = await send(client, "POST", url, **kwargs)
        try:
            outcome = check(response, external_id=response.headers.get("x-message-id"))
        except DeliveryError as exc:
            if exc.response_excerpt:
                exc.response_excerpt = redact_emails(exc.response_excerpt)
            raise
        return Outcome(
            status_code=outcome.status_code,
            response_excerpt=outcome.response_excerpt,
            external_id=outcome.external_id,
            detail="e-mail sent via sendgrid",
        )


def smtp_failure(exc: BaseException, host: str) -> DeliveryError:
    """Map an aiosmtplib/OS error to the connector contract (no addresses in what we keep)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = redact_emails("; ".join(f"{r.code} {r.message}" for r in exc.recipients))
        code = max(codes) if codes else None
        if code is not None and code >= 500:
            return PermanentError(
                f"{host} refused the recipient: {text}", status_code=code, response_excerpt=text
            )
        return RetriableError(
            f"{host} deferred the recipient: {text}", status_code=code, response_excerpt=text
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = excerpt(redact_emails(f"{exc.code} {exc.message}")) or ""
        if exc.code >= 500:
            return PermanentError(f"{host} answered {text}", status_code=exc.code, response_excerpt=text)
        return RetriableError(f"{host} answered {text}", status_code=exc.code, response_excerpt=text)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return RetriableError(f"timeout talking to {host}")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected | OSError):
        return RetriableError(f"cannot talk to {host}: {type(exc).__name__}")
    # SMTPNotSupported, "STARTTLS/AUTH extension not supported": configuration, not luck.
    return PermanentError(f"{host}: {redact_emails(str(exc))}")

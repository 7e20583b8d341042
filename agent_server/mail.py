"""Outgoing mail: SMTP through aiosmtplib, or the outbox table in development.

``send_mail`` delivers to the server named by ``AGENT_SERVER_SMTP_URL``
(``smtp://[user:password@]host[:port]``, or ``smtps://`` for implicit TLS; plain ``smtp``
upgrades with STARTTLS when the server offers it). Without an SMTP URL the message is written
to the ``mail_outbox`` table for a developer to read, and only the event, never the body, is
logged: bodies carry one-time codes.

Mail about a change (a booking made or cancelled) is instead queued with ``queue_mail`` in the
change's own transaction and delivered by ``agent_server.events.mail_delivery`` after the
commit: never lost with a committed change, never sent for a rolled-back one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import Index, Integer, String, Text, bindparam, func, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from agent_server.kernel.config import Settings
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database, Direct, UnitOfWork, column_binds, direct_execute
from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime

log = get_logger(__name__)

SMTP_TIMEOUT_SECONDS = 15


class OutboxMail(Base):
    """Mail kept in the database: written instead of sent when no SMTP server is configured
    (``status`` NULL, for a developer to read), or queued in the transaction of the change it
    is about (``status`` queued, then sent or failed) for the sender to deliver by SMTP."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40))
    to_addr: Mapped[str] = mapped_column(String(255), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When a queued mail is next due; a claimed one is not due again before its lease ends.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class OutgoingMail:
    """One plain-text message; ``kind`` names it in logs (e.g. ``verification_code``)."""

    to: str
    subject: str
    body: str
    kind: str


class MailDeliveryFailed(Exception):
    """The SMTP server refused the message or could not be reached."""


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    use_tls: bool
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://host:port`` or ``smtps://user:pass@host`` as connection parameters."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("AGENT_SERVER_SMTP_URL must look like smtp://host:port or smtps://host")
    use_tls = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if use_tls else 25),
        use_tls=use_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def masked(address: str) -> str:
    """An address fit for a log line: ``a***@example.com``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def build_message(
    settings: Settings, mail: OutgoingMail, message_id: str | None = None
) -> EmailMessage:
    """The message; ``message_id`` when a retry must carry the first try's id."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id or make_msgid(domain="agent-server.local")
    message.set_content(mail.body)
    return message


async def deliver_smtp(
    settings: Settings, mail: OutgoingMail, message_id: str | None = None
) -> None:
    """Hand ``mail`` to the SMTP server of ``settings``; ``MailDeliveryFailed`` if it cannot."""
    if not settings.smtp_url:
        raise MailDeliveryFailed("no SMTP server is configured (AGENT_SERVER_SMTP_URL)")
    target = parse_smtp_url(settings.smtp_url)
    import aiosmtplib  # loaded on first use: a server whose mail waits in the outbox does without

    try:
        await aiosmtplib.send(
            build_message(settings, mail, message_id),
            hostname=target.host,
            port=target.port,
            use_tls=target.use_tls,
            username=target.username,
            password=target.password,
            timeout=SMTP_TIMEOUT_SECONDS,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        log.warning(
            "mail.send_failed", kind=mail.kind, to=masked(mail.to), error=type(exc).__name__
        )
        raise MailDeliveryFailed(f"could not deliver {mail.kind} mail") from exc
    log.info("mail.sent", kind=mail.kind, to=masked(mail.to), transport="smtp")


async def send_mail(settings: Settings, db: Database, mail: OutgoingMail) -> None:
    """Deliver ``mail`` by SMTP, or store it in the outbox when no SMTP server is configured.

    Opens its own transaction for the outbox; call it after committing the change the mail is
    about. Raises ``MailDeliveryFailed`` when the SMTP server cannot take it.
    """
    if settings.smtp_url:
        await deliver_smtp(settings, mail)
        return
    async with db.uow() as uow:
        row = OutboxMail(
            kind=mail.kind,
            to_addr=mail.to,
            subject=mail.subject,
            body=mail.body,
            created_at=uow.clock.now(),
        )
        uow.session.add(row)
        await uow.commit()
    log.info("mail.outboxed", kind=mail.kind, to=masked(mail.to), outbox_id=row.id)


QUEUED = "queued"
SENT = "sent"
FAILED = "failed"


_MAILS: Any = OutboxMail.__table__
_QUEUE_MAIL = Direct(
    insert(_MAILS).values(
        {
            **column_binds(_MAILS, ("kind", "to_addr", "subject", "body", "created_at")),
            "status": QUEUED,
            "attempts": 0,
            "next_attempt_at": bindparam("created_at", type_=_MAILS.c.next_attempt_at.type),
        }
    )
)


async def queue_mail(uow: UnitOfWork, mail: OutgoingMail) -> None:
    """Queue ``mail`` in the caller's transaction (not committed): one statement straight to
    the driver.

    The mail exists exactly when the change it is about commits, and the sender
    (``agent_server.events.mail_delivery``) delivers it by SMTP once that happened; without an
    SMTP server it stays in the outbox, where ``agent-server dev mail`` shows it.
    """
    values = {
        "kind": mail.kind,
        "to_addr": mail.to,
        "subject": mail.subject,
        "body": mail.body,
        "created_at": uow.clock.now(),
    }
    await direct_execute(uow, _QUEUE_MAIL, values)


MailLater = Callable[[OutgoingMail], None]
"""Takes a message to send once the answer to the request has gone out: an answer that must
not tell whether an address is registered cannot wait for (or report on) the mail server."""


async def send_quietly(settings: Settings, db: Database, mail: OutgoingMail) -> None:
    """``send_mail`` for a message nobody waits for: a failure is logged and dropped."""
    try:
        await send_mail(settings, db, mail)
    except MailDeliveryFailed:
        pass


async def latest_outbox(db: Database, last: int, to: str | None = None) -> list[OutboxMail]:
    """The newest ``last`` outbox mails (to ``to`` only, when given), oldest first."""
    query = select(OutboxMail).order_by(OutboxMail.id.desc()).limit(last)
    if to:
        query = query.where(func.lower(OutboxMail.to_addr) == to.strip().lower())
    async with db.uow() as uow:
        rows = list((await uow.session.execute(query)).scalars())
        for row in rows:
            uow.session.expunge(row)
    return rows[::-1]

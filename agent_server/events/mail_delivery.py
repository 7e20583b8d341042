"""The mail sender: queued outbox mails (``agent_server.mail.queue_mail``) to SMTP.

One cycle (``MailSender.run_once``):

1. **Claim** due mails in one short transaction: ``UPDATE mail_outbox SET claim_token,
   next_attempt_at = now + lease, attempts = attempts + 1 WHERE id IN (SELECT ... queued and
   due ... LIMIT n)``. On PostgreSQL the inner SELECT takes ``FOR UPDATE SKIP LOCKED``, so
   senders in other processes pass over rows being claimed; on SQLite the transaction holds
   the write lock and the UPDATE's own condition decides. A claimed mail is not due again
   before its lease ends, so no two senders ever hold the same mail.
2. **Send** each claimed mail by SMTP with the Message-ID ``<outbox-{id}@...>``.
3. **Record**: ``sent`` with ``sent_at``, or due again after a back-off, or ``failed`` after
   the last attempt; conditional on the claim token, so a sender whose lease ran out does not
   overwrite a newer claim.

A mail is queued in the transaction of the change it is about, so it is never lost once the
change committed and never sent for a change rolled back; once sent it is never claimed
again. Only a sender killed between the SMTP server's "250" and recording it leaves the mail
to be sent again after the lease; the retry carries the same Message-ID, which mail
clients use to show it once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import select, update

from agent_server.kernel.config import Settings
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database
from agent_server.mail import (
    FAILED,
    QUEUED,
    SENT,
    MailDeliveryFailed,
    OutboxMail,
    OutgoingMail,
    deliver_smtp,
    masked,
)

log = get_logger(__name__)

MESSAGE_ID_DOMAIN = "agent-server.local"


@dataclass(frozen=True)
class SenderConfig:
    """How the sender works through the queue."""

    max_attempts: int = 8
    backoff_seconds: float = 30.0  # doubled for each further attempt, at most an hour
    lease_seconds: float = 120.0  # longer than any SMTP conversation (15 s timeout)
    batch_size: int = 20
    poll_seconds: float = 1.0

    def backoff(self, attempt: int) -> timedelta:
        return timedelta(seconds=min(self.backoff_seconds * 2 ** max(attempt - 1, 0), 3600.0))


@dataclass(frozen=True)
class ClaimedMail:
    row_id: int
    token: str
    attempt: int
    mail: OutgoingMail

    @property
    def message_id(self) -> str:
        return f"<outbox-{self.row_id}@{MESSAGE_ID_DOMAIN}>"


class MailSender:
    """Delivers queued mails by SMTP; run one in every process that serves, they share."""

    def __init__(self, db: Database, settings: Settings, config: SenderConfig | None = None):
        self.db = db
        self.settings = settings
        self.config = config or SenderConfig()

    async def claim(self) -> list[ClaimedMail]:
        """Claim up to a batch of due mails in one committed transaction."""
        async with self.db.uow() as uow:
            now = uow.clock.now()
            token = uuid.uuid4().hex
            due = (
                select(OutboxMail.id)
                .where(OutboxMail.status == QUEUED, OutboxMail.next_attempt_at <= now)
                .order_by(OutboxMail.id)
                .limit(self.config.batch_size)
            )
            if not self.db.is_sqlite:
                due = due.with_for_update(skip_locked=True)
            rows = (
                await uow.session.execute(
                    update(OutboxMail)
                    .where(OutboxMail.id.in_(due.scalar_subquery()), OutboxMail.status == QUEUED)
                    .values(
                        claim_token=token,
                        next_attempt_at=now + timedelta(seconds=self.config.lease_seconds),
                        attempts=OutboxMail.attempts + 1,
                    )
                    .returning(
                        OutboxMail.id,
                        OutboxMail.attempts,
                        OutboxMail.kind,
                        OutboxMail.to_addr,
                        OutboxMail.subject,
                        OutboxMail.body,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).all()
            await uow.commit()
        return sorted(
            (
                ClaimedMail(
                    row_id=int(r.id),
                    token=token,
                    attempt=int(r.attempts),
                    mail=OutgoingMail(to=r.to_addr, subject=r.subject, body=r.body, kind=r.kind),
                )
                for r in rows
            ),
            key=lambda c: c.row_id,
        )

    async def record(self, claim: ClaimedMail, sent: bool) -> None:
        async with self.db.uow() as uow:
            now = uow.clock.now()
            values: dict[str, Any] = {"claim_token": None}
            if sent:
                values.update(status=SENT, sent_at=now)
            elif claim.attempt >= self.config.max_attempts:
                values.update(status=FAILED)
            else:
                values.update(next_attempt_at=now + self.config.backoff(claim.attempt))
            await uow.session.execute(
                update(OutboxMail)
                .where(
                    OutboxMail.id == claim.row_id,
                    OutboxMail.claim_token == claim.token,
                    OutboxMail.status == QUEUED,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await uow.commit()
        if not sent:
            log.warning(
                "mail.queued_retry",
                kind=claim.mail.kind,
                to=masked(claim.mail.to),
                attempt=claim.attempt,
                outcome=values.get("status", "retry"),
            )

    async def send(self, claim: ClaimedMail) -> None:
        try:
            await deliver_smtp(self.settings, claim.mail, claim.message_id)
        except MailDeliveryFailed:
            await self.record(claim, sent=False)
        else:
            await self.record(claim, sent=True)

    async def run_once(self) -> int:
        """Claim one batch and send it; how many mails were claimed."""
        claims = await self.claim()
        for claim in claims:  # one SMTP conversation at a time: the server is not flooded
            await self.send(claim)
        return len(claims)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set; a failing pass (the database away) is retried."""
        while not stop.is_set():
            try:
                claimed = await self.run_once()
            except Exception as exc:
                log.warning("mail.sender_error", error=type(exc).__name__)
                claimed = 0
            if claimed >= self.config.batch_size:
                continue
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_seconds)


class Served(Protocol):
    """What the sender needs of the process's runtime."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...


@asynccontextmanager
async def start_mail_sender(runtime: Served) -> AsyncIterator[MailSender | None]:
    """Send queued mail alongside the server while an SMTP server is configured; without
    one the queue stays in the outbox for ``agent-server dev mail``."""
    if not runtime.settings.smtp_url:
        yield None
        return
    sender = MailSender(runtime.db, runtime.settings)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop), name="mail-sender")
    try:
        yield sender
    finally:
        stop.set()
        # A mail cut short here is claimed again once its lease ends.
        with suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 5.0)

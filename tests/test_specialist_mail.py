"""Specialists' booking mails on both backends: queued in the booking's own transaction,
delivered by the mail sender to a real local SMTP server (aiosmtpd), once, as chosen."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import SecretStr
from smtp_sink import SmtpSink
from sqlalchemy import select, update
from test_bookings import MON_9, book, make_agents, specialist_schedule

from agent_server.accounts.models import Agent
from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import CancelledBy, Specialist
from agent_server.booking.service import book_slot, cancel_booking
from agent_server.events.mail_delivery import MailSender
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.mail import OutboxMail


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


def sender(db: Database, smtp_url: str) -> MailSender:
    settings = Settings(
        database_url="sqlite+aiosqlite://",
        smtp_url=smtp_url,
        secret_pepper=SecretStr("mail-test-pepper"),
        start_watchers=False,
    )
    return MailSender(db, settings)


async def email_of(db: Database, specialist_id: int) -> str:
    async with db.uow() as uow:
        specialist = await uow.session.get(Specialist, specialist_id)
        assert specialist is not None
        return specialist.email


async def test_new_and_cancelled_bookings_reach_the_specialist_once(
    db: Database, smtp: SmtpSink
) -> None:
    specialist, schedule = await specialist_schedule(db, timezone="Europe/London")
    [agent] = await make_agents(db)
    email = await email_of(db, specialist)
    booking = await book(db, agent, make_slot_id(schedule, MON_9), key="k1")
    mail = sender(db, smtp.url)
    assert await mail.run_once() == 1
    assert await mail.run_once() == 0  # sent once: never claimed again
    [new] = smtp.to(email)
    assert new["Subject"].startswith("New booking")
    text = new.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Monday 02 March 2026, 09:00 to 10:00 (Europe/London)" in text
    assert "50.00 USD" in text
    async with db.uow() as uow:  # the booker's and the specialist's names, as stored
        booker = await uow.session.get(Agent, agent)
        person = await uow.session.get(Specialist, specialist)
        assert booker is not None and person is not None
        names = person.name, booker.name
    assert f"Hello {names[0]},\r\n" in text
    assert f"Booked by: {names[1]}\r\n" in text

    async with db.uow() as uow:
        await cancel_booking(uow, booking.id, CancelledBy.AGENT, agent, "no_time", "sorry")
        await uow.commit()
    assert await mail.run_once() == 1
    cancelled = smtp.to(email)[-1]
    assert cancelled["Subject"].startswith("Booking cancelled")
    assert "no_time: sorry" in cancelled.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert len(smtp.to(email)) == 2
    # A retry of the same row would carry the same Message-ID, so clients show it once.
    assert new["Message-ID"] != cancelled["Message-ID"]


async def test_choices_are_respected_and_rolled_back_bookings_mail_nothing(
    db: Database, smtp: SmtpSink
) -> None:
    specialist, schedule = await specialist_schedule(db)
    [agent] = await make_agents(db)
    email = await email_of(db, specialist)
    async with db.uow() as uow:
        await uow.session.execute(
            update(Specialist)
            .where(Specialist.id == specialist)
            .values(notify_new_booking=False, notify_cancelled=True)
        )
        await uow.commit()
    async with db.uow() as uow:  # a booking whose transaction never commits
        await book_slot(
            uow, agent_id=agent, slot_id=make_slot_id(schedule, MON_9), idempotency_key=None
        )
        await uow.rollback()
    booking = await book(db, agent, make_slot_id(schedule, MON_9))
    async with db.uow() as uow:  # the specialist's own cancellation mails them nothing
        await cancel_booking(uow, booking.id, CancelledBy.SPECIALIST, specialist, "no_time")
        await uow.commit()
    mail = sender(db, smtp.url)
    assert await mail.run_once() == 0
    again = await book(db, agent, make_slot_id(schedule, MON_9))
    async with db.uow() as uow:
        await cancel_booking(uow, again.id, CancelledBy.AGENT, agent, "other")
        await uow.commit()
    assert await mail.run_once() == 1
    [only] = smtp.to(email)
    assert only["Subject"].startswith("Booking cancelled")


async def test_an_unreachable_smtp_server_keeps_the_mail_for_a_later_attempt(
    db: Database, smtp: SmtpSink, clock: FakeClock
) -> None:
    specialist, schedule = await specialist_schedule(db)
    [agent] = await make_agents(db)
    email = await email_of(db, specialist)
    await book(db, agent, make_slot_id(schedule, MON_9))
    closed = SmtpSink()  # a port nobody listens on
    assert await sender(db, closed.url).run_once() == 1
    async with db.uow() as uow:
        row = (await uow.session.execute(select(OutboxMail))).scalar_one()
        assert (row.status, row.attempts) == ("queued", 1)
    mail = sender(db, smtp.url)
    assert await mail.run_once() == 0  # backing off
    clock.advance(timedelta(seconds=31))
    assert await mail.run_once() == 1
    assert len(smtp.to(email)) == 1


async def test_two_senders_at_once_send_each_mail_once(db: Database, smtp: SmtpSink) -> None:
    specialist, schedule = await specialist_schedule(db, capacity=5)
    agents = await make_agents(db, 5)
    email = await email_of(db, specialist)
    for agent in agents:
        await book(db, agent, make_slot_id(schedule, MON_9))
    first, second = sender(db, smtp.url), sender(db, smtp.url)
    claimed = await asyncio.gather(first.run_once(), second.run_once())
    assert sum(claimed) == 5
    assert len(smtp.to(email)) == 5
    assert len({m["Message-ID"] for m in smtp.to(email)}) == 5


async def test_a_mail_claimed_by_a_sender_that_died_is_sent_after_its_lease(
    db: Database, smtp: SmtpSink, clock: FakeClock
) -> None:
    specialist, schedule = await specialist_schedule(db)
    [agent] = await make_agents(db)
    email = await email_of(db, specialist)
    await book(db, agent, make_slot_id(schedule, MON_9))
    dead = sender(db, smtp.url)
    [claimed] = await dead.claim()  # ... and the process is killed before it sends
    mail = sender(db, smtp.url)
    assert await mail.run_once() == 0  # the claim holds for its lease
    clock.advance(timedelta(seconds=mail.config.lease_seconds + 1))
    assert await mail.run_once() == 1
    [sent] = smtp.to(email)
    assert sent["Message-ID"] == claimed.message_id
    await dead.record(claimed, sent=True)  # a late word from the old claim changes nothing
    async with db.uow() as uow:
        row = (await uow.session.execute(select(OutboxMail))).scalar_one()
        assert (row.status, row.attempts, row.claim_token) == ("sent", 2, None)
        await uow.commit()

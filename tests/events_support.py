"""Helpers shared by the events tests: agents with a callback URL, events, outbox reads."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from billing_support import make_agent
from sqlalchemy import func, select, update

from agent_server.accounts.models import Agent
from agent_server.booking.models import Specialist
from agent_server.booking.schedules import ScheduleOwner, create_schedule, parse_schedule_input
from agent_server.events import emit
from agent_server.events.models import OutboxEvent
from agent_server.events.worker import WorkerConfig
from agent_server.kernel.store import Database

PEPPER = "test-pepper-events-0123"
HOURS = {d: [["09:00", "12:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


def worker_config(**overrides: Any) -> WorkerConfig:
    values: dict[str, Any] = {"pepper": PEPPER, "allow_private": True}
    values.update(overrides)
    return WorkerConfig(**values)


async def agent_with_callback(db: Database, url: str | None, name: str = "agent") -> int:
    agent_id = await make_agent(db, name=name)
    async with db.uow() as uow:
        await uow.session.execute(
            update(Agent).where(Agent.id == agent_id).values(callback_url=url)
        )
        await uow.commit()
    return agent_id


async def emit_one(
    db: Database, agent_id: int, type: str = "booking.created", data: dict[str, Any] | None = None
) -> str:
    async with db.uow() as uow:
        event_id = await emit(uow, type=type, agent_id=agent_id, data=data or {"n": 1})
        await uow.commit()
    return event_id


async def outbox(db: Database, agent_id: int | None = None) -> list[OutboxEvent]:
    async with db.uow() as uow:
        query = select(OutboxEvent).order_by(OutboxEvent.id)
        if agent_id is not None:
            query = query.where(OutboxEvent.agent_id == agent_id)
        rows = list((await uow.session.execute(query)).scalars())
        await uow.commit()
    return rows


async def event_row(db: Database, event_id: str) -> OutboxEvent:
    async with db.uow() as uow:
        row = (
            await uow.session.execute(select(OutboxEvent).where(OutboxEvent.event_id == event_id))
        ).scalar_one()
        await uow.commit()
    return row


def verify_like_the_readme(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, exactly as README.md's Webhooks section writes it."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


async def specialist(db: Database, name: str = "Ada Lovelace") -> int:
    async with db.uow() as uow:
        count = (await uow.session.execute(select(func.count(Specialist.id)))).scalar_one()
        person = Specialist(
            name=name,
            timezone="UTC",
            email=f"expert{count}@example.com",
            created_at=uow.clock.now(),
            updated_at=uow.clock.now(),
        )
        uow.session.add(person)
        await uow.flush()
        await uow.commit()
        return person.id


async def schedule(db: Database, owner: ScheduleOwner, *, auto_accept: bool) -> int:
    """A weekday 09:00-12:00 UTC schedule of hour-long slots."""
    raw = {
        "timezone": "UTC",
        "weekly_hours": HOURS,
        "price_amount": 50_000_000,
        "start_date": "2026-03-01",
        "auto_accept": auto_accept,
    }
    async with db.uow() as uow:
        created = await create_schedule(uow, owner, parse_schedule_input(raw))
        await uow.commit()
        return created.id

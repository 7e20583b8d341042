"""An agent's public face as a provider: its profile with its public schedules, and the
withdrawal of all its schedules when its account closes (``services.closing``)."""

from __future__ import annotations

from sqlalchemy import select, update

from agent_server.accounts.models import Agent, AgentStatus
from agent_server.booking.models import Schedule
from agent_server.kernel.errors import NotFound
from agent_server.kernel.store import UnitOfWork

PUBLIC_SCHEDULES = 20
"""Public schedules shown on a profile, newest first."""


async def public_profile(uow: UnitOfWork, agent_id: int) -> tuple[Agent, list[Schedule]]:
    """An active agent and up to 20 of its active public schedules; records the access."""
    async with uow:
        agent = (
            await uow.session.execute(
                select(Agent).where(
                    Agent.id == agent_id,
                    Agent.status == AgentStatus.ACTIVE.value,
                    Agent.deleted_at.is_(None),
                )
            )
        ).scalar_one_or_none()
        if agent is None:
            raise NotFound(f"no active agent {agent_id}", {"agent_id": agent_id})
        now = uow.clock.now()
        today = now.date()
        schedules = list(
            (
                await uow.session.execute(
                    select(Schedule)
                    .where(
                        Schedule.agent_id == agent.id,
                        Schedule.private.is_(False),
                        Schedule.deleted_at.is_(None),
                        (Schedule.end_date.is_(None)) | (Schedule.end_date >= today),
                    )
                    .order_by(Schedule.created_at.desc(), Schedule.id.desc())
                    .limit(PUBLIC_SCHEDULES)
                )
            ).scalars()
        )
        agent.last_accessed_at = now
        await uow.commit()
    return agent, schedules


async def withdraw_schedules(uow: UnitOfWork, agent_id: int) -> None:
    """Soft-delete every schedule the agent still offers, in the caller's transaction.

    Bookings already made on them stay, as with ``delete_schedule``."""
    now = uow.clock.now()
    await uow.session.execute(
        update(Schedule)
        .where(Schedule.agent_id == agent_id, Schedule.deleted_at.is_(None))
        .values(deleted_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )

"""Who is signed in, and what they may see: their agents, their specialist profile, operator.

An owner sees every (not deleted) agent whose ``owner_email`` or ``email`` is theirs; a
specialist the profile whose email is theirs; operators are listed in
``AGENT_SERVER_OPERATOR_EMAILS``. Anything else is ``NotFound``, so another person's agent
cannot even be told apart from a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select

from agent_server.accounts.models import Agent
from agent_server.accounts.status import refuse_if_read_only
from agent_server.booking.models import Specialist
from agent_server.dashboard.sessions import operator_emails
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import Forbidden, NotFound
from agent_server.kernel.store import UnitOfWork


@dataclass(frozen=True)
class AgentSummary:
    id: int
    name: str
    status: str


@dataclass(frozen=True)
class Person:
    """The signed-in person and what they may open."""

    email: str
    agents: tuple[AgentSummary, ...]
    specialist_id: int | None
    operator: bool

    def owns_agent(self, agent_id: int) -> bool:
        return any(a.id == agent_id for a in self.agents)


def _owned(email: str) -> list[ColumnElement[bool]]:
    return [Agent.deleted_at.is_(None), or_(Agent.owner_email == email, Agent.email == email)]


async def person_for(uow: UnitOfWork, settings: Settings, email: str) -> Person:
    """What ``email`` may open, read in the caller's transaction."""
    rows = await uow.session.execute(
        select(Agent.id, Agent.name, Agent.status).where(*_owned(email)).order_by(Agent.id)
    )
    agents = tuple(AgentSummary(int(r.id), str(r.name), str(r.status)) for r in rows)
    specialist_id = await uow.session.scalar(
        select(Specialist.id).where(func.lower(Specialist.email) == email).limit(1)
    )
    return Person(
        email=email,
        agents=agents,
        specialist_id=int(specialist_id) if specialist_id is not None else None,
        operator=email in operator_emails(settings),
    )


async def owned_agent(uow: UnitOfWork, person: Person, agent_id: int) -> Agent:
    """The agent ``agent_id`` if ``person`` owns it; ``NotFound`` otherwise."""
    agent = await uow.session.scalar(
        select(Agent).where(Agent.id == agent_id, *_owned(person.email))
    )
    if agent is None:
        raise NotFound(f"no agent {agent_id} of yours", {"agent_id": agent_id})
    return agent


async def changeable_agent(uow: UnitOfWork, person: Person, agent_id: int) -> Agent:
    """``owned_agent`` for a change: ``AccountInactive`` if the agent is banned.

    Read without a lock: a ban that commits while the change is under way changes nothing the
    change read but the status, so the two are as if the change came first. (Locking the row
    would order it before the wallet's rows, against the order deposits take them.)"""
    agent = await owned_agent(uow, person, agent_id)
    refuse_if_read_only(agent)
    return agent


async def own_specialist(uow: UnitOfWork, person: Person) -> Specialist:
    """The signed-in specialist's row; ``Forbidden`` for someone who is not a specialist."""
    if person.specialist_id is None:
        raise Forbidden("these pages are for specialists; your email has no specialist profile")
    specialist = await uow.session.get(Specialist, person.specialist_id)
    if specialist is None:
        raise NotFound("your specialist profile no longer exists")
    return specialist


def require_operator(person: Person) -> None:
    if not person.operator:
        raise Forbidden("these pages are for operators")

"""Agent statuses and who changed them: pending_deposit, active, suspended, banned.

Every change is one conditional ``UPDATE agents ... WHERE status = <expected>`` plus a row in
``agent_status_changes`` (who, when, from, to, why), in the caller's transaction. These
functions never commit: the deposit credit that activates an agent, or the operator command
that suspends one, commits them together with its own writes.

    pending_deposit --activate--> active
    active --its funding deposits left the chain--> pending_deposit
    pending_deposit, active --suspend--> suspended
    pending_deposit, active, suspended --ban--> banned
    suspended, banned --reactivate--> the status held before the suspension or ban
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, or_, select, update

from agent_server.accounts.models import Agent, AgentStatus, AgentStatusChange
from agent_server.kernel.errors import AccountInactive, NotFound, ValidationFailed
from agent_server.kernel.inputs import BIGINT_MAX, check_text, require
from agent_server.kernel.store import UnitOfWork

MAX_REASON_CHARS = 2000
MAX_ACTOR_CHARS = 100


class StatusAction(StrEnum):
    ACTIVATE = "activate"
    SUSPEND = "suspend"
    BAN = "ban"
    REACTIVATE = "reactivate"


_ALLOWED_FROM: dict[StatusAction, frozenset[AgentStatus]] = {
    StatusAction.ACTIVATE: frozenset({AgentStatus.PENDING_DEPOSIT}),
    StatusAction.SUSPEND: frozenset({AgentStatus.PENDING_DEPOSIT, AgentStatus.ACTIVE}),
    StatusAction.BAN: frozenset(
        {AgentStatus.PENDING_DEPOSIT, AgentStatus.ACTIVE, AgentStatus.SUSPENDED}
    ),
    StatusAction.REACTIVATE: frozenset({AgentStatus.SUSPENDED, AgentStatus.BANNED}),
}
_TARGET: dict[StatusAction, AgentStatus] = {
    StatusAction.ACTIVATE: AgentStatus.ACTIVE,
    StatusAction.SUSPEND: AgentStatus.SUSPENDED,
    StatusAction.BAN: AgentStatus.BANNED,
}


@dataclass(frozen=True)
class StatusChange:
    """One recorded change of an agent's status."""

    agent_id: int
    from_status: AgentStatus
    to_status: AgentStatus
    actor: str
    reason: str
    at: datetime


async def activate_if_pending(
    uow: UnitOfWork, agent_id: int, reason: str, *, actor: str = "deposits"
) -> bool:
    """Turn a ``pending_deposit`` agent ``active``; False when it was in any other status.

    One conditional UPDATE, so two deposits confirmed at once activate the agent once and
    record one status change. Runs in the caller's transaction; does not commit.
    """
    return await _move_if(
        uow, agent_id, AgentStatus.PENDING_DEPOSIT, AgentStatus.ACTIVE, reason, actor
    )


async def return_to_pending(
    uow: UnitOfWork, agent_id: int, reason: str, *, actor: str = "deposits"
) -> bool:
    """Turn an ``active`` agent back to ``pending_deposit`` (the deposits that activated it
    left the chain); False when it was in any other status.

    One conditional UPDATE and a status change row, as ``activate_if_pending``. Runs in the
    caller's transaction; does not commit.
    """
    return await _move_if(
        uow, agent_id, AgentStatus.ACTIVE, AgentStatus.PENDING_DEPOSIT, reason, actor
    )


async def lock_agent(uow: UnitOfWork, agent_id: int) -> None:
    """Lock the agent's row until the caller's transaction ends (PostgreSQL; SQLite's writer
    lock serialises writers already): status decisions that read other rows first, such as
    whether deposits still fund an agent, are then taken one at a time per agent."""
    await uow.session.execute(select(Agent.id).where(Agent.id == agent_id).with_for_update())


async def _move_if(
    uow: UnitOfWork,
    agent_id: int,
    current: AgentStatus,
    target: AgentStatus,
    reason: str,
    actor: str,
) -> bool:
    """``current`` -> ``target`` with its status change row, if the agent is ``current``."""
    now = uow.clock.now()
    result = await uow.session.execute(
        update(Agent)
        .where(
            Agent.id == agent_id,
            Agent.status == current.value,
            Agent.deleted_at.is_(None),
        )
        .values(status=target.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    uow.session.add(
        AgentStatusChange(
            agent_id=agent_id,
            from_status=current.value,
            to_status=target.value,
            actor=actor[:MAX_ACTOR_CHARS],
            reason=reason[:MAX_REASON_CHARS],
            at=now,
        )
    )
    await uow.session.flush()
    return True


async def find_agent(uow: UnitOfWork, ref: str | int, *, for_update: bool = False) -> Agent:
    """The (not deleted) agent with id ``ref``, or with email ``ref``; ``NotFound`` otherwise."""
    text = str(ref).strip()
    require("agent", check_text, text)
    query = select(Agent).where(Agent.deleted_at.is_(None))
    if text.isascii() and text.isdigit():
        if len(text) > 19 or int(text) > BIGINT_MAX:
            raise NotFound(f"no agent {text!r}", {"agent": text})
        query = query.where(Agent.id == int(text))
    else:
        query = query.where(Agent.email == text.lower())
    if for_update:
        query = query.with_for_update()
    agent = (await uow.session.execute(query)).scalar_one_or_none()
    if agent is None:
        raise NotFound(f"no agent {text!r}", {"agent": text})
    return agent


async def _status_before(uow: UnitOfWork, agent_id: int, current: str) -> AgentStatus:
    """The status an agent held before it entered ``current`` (pending_deposit if unknown)."""
    previous = (
        await uow.session.execute(
            select(AgentStatusChange.from_status)
            .where(AgentStatusChange.agent_id == agent_id, AgentStatusChange.to_status == current)
            .order_by(AgentStatusChange.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if previous in (AgentStatus.ACTIVE.value, AgentStatus.PENDING_DEPOSIT.value):
        return AgentStatus(previous)
    if previous == AgentStatus.SUSPENDED.value:
        # Banned while suspended: reactivation lifts both, back to what preceded the suspension.
        return await _status_before(uow, agent_id, AgentStatus.SUSPENDED.value)
    return AgentStatus.PENDING_DEPOSIT


async def change_status(
    uow: UnitOfWork, ref: str | int, action: StatusAction, *, actor: str, reason: str
) -> StatusChange:
    """Apply an operator's ``action`` to the agent ``ref`` (id or email) and record it.

    Raises ``NotFound`` for an unknown agent and ``ValidationFailed`` for an empty reason or
    a change the agent's status does not allow. Does not commit.
    """
    reason = reason.strip()
    actor = actor.strip()
    if not reason:
        raise ValidationFailed.field("reason", "say why the status changes")
    if len(reason) > MAX_REASON_CHARS:
        raise ValidationFailed.field("reason", f"must be at most {MAX_REASON_CHARS} characters")
    if not actor or len(actor) > MAX_ACTOR_CHARS:
        raise ValidationFailed.field("actor", f"give 1 to {MAX_ACTOR_CHARS} characters")
    agent = await find_agent(uow, ref, for_update=True)
    current = AgentStatus(agent.status)
    if current not in _ALLOWED_FROM[action]:
        allowed = ", ".join(sorted(_ALLOWED_FROM[action]))
        raise ValidationFailed.field(
            "status", f"agent {agent.id} is {current}; {action} applies to {allowed} agents"
        )
    if action is StatusAction.REACTIVATE:
        target = await _status_before(uow, agent.id, current.value)
    else:
        target = _TARGET[action]
    now = uow.clock.now()
    result = await uow.session.execute(
        update(Agent)
        .where(Agent.id == agent.id, Agent.status == current.value)
        .values(status=target.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ValidationFailed.field("status", "the status changed meanwhile; try again")
    uow.session.add(
        AgentStatusChange(
            agent_id=agent.id,
            from_status=current.value,
            to_status=target.value,
            actor=actor,
            reason=reason,
            at=now,
        )
    )
    await uow.session.flush()
    await uow.session.refresh(agent)
    return StatusChange(agent.id, current, target, actor, reason, now)


async def status_history(uow: UnitOfWork, agent_id: int) -> list[AgentStatusChange]:
    """Every recorded status change of an agent, oldest first."""
    rows = await uow.session.execute(
        select(AgentStatusChange)
        .where(AgentStatusChange.agent_id == agent_id)
        .order_by(AgentStatusChange.id)
    )
    return list(rows.scalars())


async def list_agents(
    uow: UnitOfWork,
    *,
    status: AgentStatus | None = None,
    search: str = "",
    limit: int = 100,
    offset: int = 0,
) -> list[Agent]:
    """Agents (deleted ones excluded), newest first, optionally of one status and whose name,
    email or owner's email contains ``search`` (any case, ``%`` and ``_`` taken literally)."""
    query = select(Agent).where(Agent.deleted_at.is_(None))
    if search:
        wanted = search.lower()
        query = query.where(
            or_(
                *(
                    func.lower(column).contains(wanted, autoescape=True)
                    for column in (Agent.name, Agent.email, Agent.owner_email)
                )
            )
        )
    if status is not None:
        query = query.where(Agent.status == status.value)
    query = query.order_by(Agent.id.desc()).limit(limit).offset(offset)
    return list((await uow.session.execute(query)).scalars())


READ_ONLY_STATUSES = frozenset({AgentStatus.BANNED})
"""Statuses in which the agent's owner may read everything but change nothing (key, profile,
callback URL, caps, addresses, bookings), on every surface. A ban is an operator's final
decision; a suspension is a hold on tool calls while the owner keeps the account in order."""


def refuse_if_read_only(agent: Agent) -> None:
    """``AccountInactive`` if the agent's owner may not change it any more (see above)."""
    refuse_status_if_read_only(agent.id, AgentStatus(agent.status))


def refuse_status_if_read_only(agent_id: int, status: AgentStatus) -> None:
    """``refuse_if_read_only`` for an agent known by its id and status (an API caller)."""
    if status in READ_ONLY_STATUSES:
        raise AccountInactive(
            f"agent {agent_id} is {status.value}: its pages and records can be read, but "
            "nothing of it can be changed; ask an operator if you think this is a mistake",
            {"agent_id": agent_id, "status": status.value},
        )

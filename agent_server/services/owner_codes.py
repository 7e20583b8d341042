"""Codes mailed to an owner to confirm what the API key alone may not do: confirm a new
withdrawal address, loosen limits, give up a balance.

A code is stored only as its hash (peppered, with a context naming what it confirms), next to
a count of tries and an expiry, in three columns ``<prefix>code_hash``,
``<prefix>code_tries`` and ``<prefix>code_expires_at``. ``try_code`` counts each try by a
conditional update before comparing, so concurrent guesses cannot share a try and a wrong code
uses one even though the caller refuses (the caller commits before raising).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Table, update

from agent_server.accounts.keys import hash_secret, new_code
from agent_server.accounts.models import Agent
from agent_server.booking.models import Specialist
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import NotFound, ValidationFailed
from agent_server.kernel.store import UnitOfWork
from agent_server.mail import OutgoingMail, queue_mail

CODE_TRIES = 5


@dataclass(frozen=True)
class Owner:
    """Whose money it is: an agent or a specialist."""

    agent_id: int | None = None
    specialist_id: int | None = None

    def __post_init__(self) -> None:
        if (self.agent_id is None) == (self.specialist_id is None):
            raise ValueError("an owner is exactly one of an agent or a specialist")

    @property
    def key(self) -> str:
        if self.agent_id is not None:
            return f"agent:{self.agent_id}"
        return f"specialist:{self.specialist_id}"

    def columns(self) -> dict[str, int | None]:
        return {"agent_id": self.agent_id, "specialist_id": self.specialist_id}


async def owner_email(uow: UnitOfWork, owner: Owner) -> str:
    """Where the owner's codes go: an agent's owner (or the agent's own verified address),
    or the specialist."""
    if owner.agent_id is not None:
        agent = await uow.session.get(Agent, owner.agent_id)
        if agent is None or agent.deleted_at is not None:
            raise NotFound(f"no agent {owner.agent_id}")
        return agent.owner_email or agent.email
    specialist = await uow.session.get(Specialist, owner.specialist_id)
    if specialist is None:
        raise NotFound(f"no specialist {owner.specialist_id}")
    return specialist.email


def code_minutes(settings: Settings) -> int:
    """How long a mailed code stays live, in whole minutes, as its mail says."""
    return int(settings.withdrawal_code_ttl.total_seconds() // 60)


async def mail_code(uow: UnitOfWork, owner: Owner, *, subject: str, body: str, kind: str) -> None:
    """Queue the mail that carries a code to the owner, in this transaction (it is sent only
    if the transaction commits)."""
    to = await owner_email(uow, owner)
    await queue_mail(uow, OutgoingMail(to=to, subject=subject, body=body, kind=kind))


def code_hash(settings: Settings, context: str, code: str) -> str:
    """The stored form of ``code`` for what ``context`` names (e.g. ``forfeit:<agent id>``)."""
    return hash_secret(settings.secret_pepper.get_secret_value(), code, context=context)


def issue_code(row: object, settings: Settings, *, prefix: str, context: str, now: datetime) -> str:
    """Give ``row`` a new code in its ``<prefix>code_*`` attributes: hashed, all tries left,
    live for ``withdrawal_code_ttl`` from ``now``. The code itself, to mail; not stored."""
    code = new_code()
    setattr(row, f"{prefix}code_hash", code_hash(settings, context, code))
    setattr(row, f"{prefix}code_tries", 0)
    setattr(row, f"{prefix}code_expires_at", now + settings.withdrawal_code_ttl)
    return code


@dataclass(frozen=True)
class Tried:
    """One counted try against a live code."""

    right: bool
    tries_left: int

    def wrong(self, mail: str = "the owner's latest mail") -> ValidationFailed:
        return ValidationFailed.field(
            "code", f"wrong code; {self.tries_left} tries left (check {mail})"
        )


async def try_code(
    uow: UnitOfWork,
    settings: Settings,
    table: Table,
    where: Sequence[ColumnElement[bool]],
    *,
    prefix: str,
    context: str,
    code: str,
) -> Tried | None:
    """Count one try against the code stored in the row ``where`` picks and compare it in
    constant time; None when that row holds no code, or it expired or used its
    ``CODE_TRIES`` tries (nothing is counted then). Does not commit or use the code up."""
    stored_hash = table.c[f"{prefix}code_hash"]
    tries = table.c[f"{prefix}code_tries"]
    expires = table.c[f"{prefix}code_expires_at"]
    counted = await uow.session.execute(
        update(table)
        .where(
            *where,
            stored_hash.is_not(None),
            tries < CODE_TRIES,
            expires > uow.clock.now(),
        )
        .values({tries: tries + 1})
        .returning(stored_hash, tries)
    )
    stored = counted.one_or_none()
    if stored is None:
        return None
    right = secrets.compare_digest(stored[0], code_hash(settings, context, code.strip()))
    return Tried(right=right, tries_left=max(CODE_TRIES - int(stored[1]), 0))

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
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.store import UnitOfWork

CODE_TRIES = 5


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

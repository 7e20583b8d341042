"""The time zone rules behind the schedules' week blocks.

``schedules.start_blocks`` (``availability.start_blocks``) lays a schedule's hours on a week
in UTC at every offset its zone takes from 2020 to 2045, by the rules of the time zone
database the writing process read. A new release of that database can move a zone's
offsets; the stored blocks of its schedules would then miss hours they now open at, and a
search by days or hours would skip them there.

``refresh_start_blocks(db)`` compares the digest of the rules this process reads
(``zone_rules_fingerprint``) with the one stored with the catalogue
(``catalogue_state.zone_rules``). When they differ, or when forced, it computes every
schedule's blocks again, writes those that changed (each change counts as a catalogue
change, so cached searches are not served), and then stores the digest. Every server runs it
once as it starts (``agent_server.maintenance``); ``agent-server db refresh-blocks`` runs it
by hand. A schedule being changed meanwhile is waited for (its row is read locked), so the
blocks written are always those of its stored hours.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import zoneinfo
from dataclasses import dataclass
from functools import cache

from sqlalchemy import Table, bindparam, select, update

from agent_server.booking.availability import start_blocks_changes
from agent_server.booking.models import CATALOGUE_ROW, CatalogueState, Schedule
from agent_server.kernel.store import Database

SCHEDULES: Table = Schedule.__table__  # type: ignore[assignment]
STATE: Table = CatalogueState.__table__  # type: ignore[assignment]
BATCH = 500
"""Schedules read, locked and written in one transaction."""


@cache
def zone_rules_fingerprint() -> str:
    """The SHA-256 (hex) of every zone's rules as ``zoneinfo`` reads them: the system's files
    (``zoneinfo.TZPATH``) first, else the ``tzdata`` package's. Once per process (about 50
    ms), as ``zoneinfo`` itself keeps a zone's rules once read."""
    digest = hashlib.sha256()
    for key in sorted(zoneinfo.available_timezones()):
        digest.update(key.encode() + b"\0")
        digest.update(_rules(key))
    return digest.hexdigest()


def _rules(key: str) -> bytes:
    for root in zoneinfo.TZPATH:
        path = os.path.join(root, key)
        if os.path.isfile(path):
            with open(path, "rb") as file:
                return file.read()
    try:
        return importlib.resources.files("tzdata.zoneinfo").joinpath(key).read_bytes()
    except (ModuleNotFoundError, OSError):
        return b""


@dataclass(frozen=True)
class Refreshed:
    """What ``refresh_start_blocks`` did: schedules checked and changed (0 and 0 when the
    stored blocks were already computed by these rules), and the rules' digest."""

    checked: int
    changed: int
    fingerprint: str


_STORED = select(STATE.c.zone_rules).where(STATE.c.id == CATALOGUE_ROW)
_STORE = update(STATE).where(STATE.c.id == CATALOGUE_ROW).values(zone_rules=bindparam("rules"))
_BLOCKS = (
    update(SCHEDULES)
    .where(SCHEDULES.c.id == bindparam("sid"))
    .values(start_blocks=bindparam("blocks"))
)


async def refresh_start_blocks(db: Database, *, force: bool = False) -> Refreshed:
    """Compute every schedule's ``start_blocks`` again if the stored ones were computed by
    other time zone rules than this process reads (or ``force``), in batches of ``BATCH``
    (see the module docstring)."""
    fingerprint = zone_rules_fingerprint()
    async with db.uow() as uow:
        stored = (await uow.session.execute(_STORED)).scalar_one_or_none()
    if stored == fingerprint and not force:
        return Refreshed(0, 0, fingerprint)
    checked = changed = 0
    last = 0
    while True:
        async with db.uow() as uow:
            rows = (
                await uow.session.execute(
                    select(
                        SCHEDULES.c.id,
                        SCHEDULES.c.timezone,
                        SCHEDULES.c.weekly_hours,
                        SCHEDULES.c.overrides,
                        SCHEDULES.c.slot_minutes,
                        SCHEDULES.c.start_blocks,
                    )
                    .where(SCHEDULES.c.id > last)
                    .order_by(SCHEDULES.c.id)
                    .limit(BATCH)
                    .with_for_update()
                )
            ).all()
            if not rows:
                break
            values = start_blocks_changes(rows)
            if values:
                await uow.session.execute(_BLOCKS, values)
            await uow.commit()
        checked += len(rows)
        changed += len(values)
        last = rows[-1][0]
    async with db.uow() as uow:
        await uow.session.execute(_STORE, {"rules": fingerprint})
        await uow.commit()
    return Refreshed(checked, changed, fingerprint)

"""What booking a seat reads and writes, as plain values straight to the driver.

``bookable_schedule`` reads the schedule a booking is for: who owns it, its price and its
hours and rules (parsed once, ``stored_specs``). ``take_seat`` inserts the booking on the
lowest seat the unique indexes let through, one ``INSERT ... ON CONFLICT DO NOTHING
RETURNING id`` per try, and gives the booking as a ``Booking`` holding exactly the stored
row. That ``Booking`` is not in the unit of work's ORM session: nothing in the transaction
changes a new booking, and a booking call then needs no session at all. Code that changes
a booking reads it with ``lock_booking``, which loads it into the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agent_server.booking.availability import ScheduleSpec
from agent_server.booking.models import Booking, Schedule
from agent_server.booking.stored_specs import SPEC_COLUMNS, parsed_spec
from agent_server.kernel.errors import Forbidden, NotFound
from agent_server.kernel.store import Direct, UnitOfWork, column_binds, direct_rows


@dataclass(frozen=True, slots=True)
class Bookable:
    """A schedule as booking one of its seats needs it."""

    id: int
    specialist_id: int | None
    agent_id: int | None
    label: str
    auto_accept: bool
    price_amount: int
    price_currency: str
    spec: ScheduleSpec

    @property
    def capacity(self) -> int:
        return self.spec.capacity


_SCHEDULES: Any = Schedule.__table__.c
_BOOKABLE_COLUMNS = (
    _SCHEDULES.id,
    _SCHEDULES.specialist_id,
    _SCHEDULES.agent_id,
    _SCHEDULES.private,
    _SCHEDULES.deleted_at,
    _SCHEDULES.label,
    _SCHEDULES.auto_accept,
    _SCHEDULES.price_amount,
    _SCHEDULES.price_currency,
    *SPEC_COLUMNS,
)
_FIRST_SPEC_COLUMN = len(_BOOKABLE_COLUMNS) - len(SPEC_COLUMNS)
_BOOKABLE = Direct(select(*_BOOKABLE_COLUMNS).where(_SCHEDULES.id == bindparam("schedule_id")))


async def bookable_schedule(uow: UnitOfWork, schedule_id: int, agent_id: int) -> Bookable:
    """Schedule ``schedule_id`` as ``agent_id`` may book it: ``NotFound`` if it is deleted,
    or private and not the agent's own; ``Forbidden`` if it is the agent's own."""
    rows = await direct_rows(uow, _BOOKABLE, {"schedule_id": schedule_id})
    row = rows[0] if rows else None
    if row is None or row.deleted_at is not None or (row.private and row.agent_id != agent_id):
        raise NotFound(f"schedule {schedule_id} not found", {"schedule_id": schedule_id})
    if row.agent_id == agent_id:
        raise Forbidden("an agent cannot book its own schedule", {"schedule_id": schedule_id})
    return Bookable(
        id=row.id,
        specialist_id=row.specialist_id,
        agent_id=row.agent_id,
        label=row.label,
        auto_accept=bool(row.auto_accept),
        price_amount=int(row.price_amount),
        price_currency=row.price_currency,
        spec=parsed_spec(row.id, tuple(row[_FIRST_SPEC_COLUMN:])),
    )


_BOOKINGS: Any = Booking.__table__
_UNSET = {  # what a new booking has in the columns booking it does not set
    "notes": "",
    "cancelled_by": None,
    "cancel_reason_code": None,
    "cancel_reason": None,
    "rescheduled_to_id": None,
    "cancelled_at": None,
    "completed_at": None,
    "location": None,
    "dismissed_at": None,
    "reminder_sent_at": None,
    "version": 1,
}
SEAT_FIELDS = frozenset(c.name for c in _BOOKINGS.c) - {"id", "seat", *_UNSET}
"""The columns a caller of ``take_seat`` gives (the rest are the seat and the defaults)."""


@cache
def _seat_insert(sqlite: bool) -> Direct:
    """``INSERT INTO bookings ... ON CONFLICT DO NOTHING RETURNING id``, every column but the
    id bound, built once per dialect."""
    insert = sqlite_insert if sqlite else pg_insert
    names = sorted(c.name for c in _BOOKINGS.c if c.name != "id")
    return Direct(
        insert(_BOOKINGS)
        .values(column_binds(_BOOKINGS, names))
        .on_conflict_do_nothing()
        .returning(_BOOKINGS.c.id)
    )


async def take_seat(
    uow: UnitOfWork, capacity: int, fields: dict[str, Any], held: set[int]
) -> Booking | None:
    """Insert a booking with ``fields`` (``SEAT_FIELDS``) on the lowest seat the unique
    indexes let through, trying first the seats not in ``held`` (those held when the slot
    was checked: only the order of the tries, the index decides).

    Each try is one statement that inserts nothing when a unique index refuses the row: the
    seat's (taken meanwhile) or the idempotency key's (used by a concurrent call; every try
    then inserts nothing and the caller finds that call's booking by its key). Returns
    ``None`` when no try inserted a booking.
    """
    if fields.keys() != SEAT_FIELDS:
        raise ValueError(f"a booking needs exactly {sorted(SEAT_FIELDS)}")
    seats = range(1, capacity + 1)
    order = [s for s in seats if s not in held] + [s for s in seats if s in held]
    stmt = _seat_insert(uow.db.is_sqlite)
    row = {**fields, **_UNSET}
    for seat in order:
        found = await direct_rows(uow, stmt, {**row, "seat": seat})
        if found:
            return Booking(id=int(found[0].id), seat=seat, **row)
    return None

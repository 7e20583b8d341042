"""Schedules: validated input, and the services that create, change, list and read them.

Input arrives as ``ScheduleInput`` (create) or ``ScheduleUpdate`` (partial change); build them
with ``parse_schedule_input`` / ``parse_schedule_update``, which turn every problem into one
``ValidationFailed`` listing each bad field by path (``weekly_hours.mon[0]``,
``overrides.2026-03-10``, ``blackout_dates[2]``) with how to fix it.

Weekly hours are ``{"mon": [["09:00", "12:00"], ["13:00", "17:00"]], ...}`` in the schedule's
IANA time zone; ``"24:00"`` ends a range at midnight. Ranges of a day must not overlap (they may
touch). ``overrides`` replace the weekday's ranges on given dates (``[]`` closes the day) and
``blackout_dates`` close whole dates.

The services take an entered ``UnitOfWork`` and flush, never commit: the caller commits, so
billing and events join the same transaction. A schedule belongs to exactly one owner, a
specialist or an agent (``ScheduleOwner``); changing someone else's schedule is ``Forbidden``,
an unknown or deleted id is ``NotFound``, and a private schedule is ``NotFound`` to anyone but
its owner.

Deleting a schedule is a soft delete (``deleted_at``): it disappears from search, listings and
availability, and can no longer be booked, but bookings already made on it stay valid. They are
commitments the owner made; the owner (or the booker) cancels them one by one if needed, which
refunds them by the cancellation policy.

The package: ``validation`` (the input models and their parsing), ``owners``
(``ScheduleOwner``), ``usd`` (prices compared in USD), ``editing`` (create, update, delete)
and ``reading`` (get, list, seats taken, availability).
"""

from agent_server.booking.schedules.editing import (
    create_schedule,
    delete_schedule,
    update_schedule,
)
from agent_server.booking.schedules.owners import ScheduleOwner, owner_of
from agent_server.booking.schedules.reading import (
    MAX_AVAILABILITY_WINDOW,
    PER_PAGE,
    SchedulePage,
    check_window,
    get_availability,
    get_schedule,
    get_specialist_availability,
    list_schedules,
    schedule_price,
    taken_seats,
)
from agent_server.booking.schedules.usd import (
    CURRENCIES,
    DEFAULT_USD_MICROS_PER_UNIT,
    usd_value,
)
from agent_server.booking.schedules.validation import (
    FIELD_HINTS,
    MAX_BUFFER_MINUTES,
    MAX_CAPACITY,
    MAX_NOTICE_MINUTES,
    MAX_PRICE,
    MAX_SLOT_MINUTES,
    MIN_SLOT_MINUTES,
    Currency,
    DayRanges,
    HourRange,
    ScheduleInput,
    ScheduleUpdate,
    Skills,
    TimeZoneName,
    Weekday,
    field_path,
    parse_model,
    parse_schedule_input,
    parse_schedule_update,
    validation_failed,
)

__all__ = [
    "CURRENCIES",
    "DEFAULT_USD_MICROS_PER_UNIT",
    "FIELD_HINTS",
    "MAX_AVAILABILITY_WINDOW",
    "MAX_BUFFER_MINUTES",
    "MAX_CAPACITY",
    "MAX_NOTICE_MINUTES",
    "MAX_PRICE",
    "MAX_SLOT_MINUTES",
    "MIN_SLOT_MINUTES",
    "PER_PAGE",
    "Currency",
    "DayRanges",
    "HourRange",
    "ScheduleInput",
    "ScheduleOwner",
    "SchedulePage",
    "ScheduleUpdate",
    "Skills",
    "TimeZoneName",
    "Weekday",
    "check_window",
    "create_schedule",
    "delete_schedule",
    "field_path",
    "get_availability",
    "get_schedule",
    "get_specialist_availability",
    "list_schedules",
    "owner_of",
    "parse_model",
    "parse_schedule_input",
    "parse_schedule_update",
    "schedule_price",
    "taken_seats",
    "update_schedule",
    "usd_value",
    "validation_failed",
]

"""A change that lost to a concurrent change of the same row, as the caller's conflict.

Bookings carry a version (``bookings.version``, the ORM's ``version_id_col``): every UPDATE of
a booking names the version it read, and one that matches no row because another transaction
changed the booking meanwhile raises ``StaleDataError``. The services lock a booking before
changing it, so this is the database's last guard rather than an expected path; wherever it
surfaces (a flush, the commit) it is answered as ``BOOKING_CONFLICT`` with reason
``changed_meanwhile``, never as an internal error, and the transaction is rolled back.
"""

from __future__ import annotations

from sqlalchemy.orm.exc import StaleDataError

from agent_server.kernel.errors import BookingConflict

REASON_CHANGED = "changed_meanwhile"


def changed_meanwhile(booking_id: int | None = None) -> BookingConflict:
    """The answer to a booking change the version check refused."""
    which = f"booking {booking_id}" if booking_id is not None else "the booking"
    return BookingConflict(
        f"{which} was changed by another request at the same time; read it again "
        "(list-bookings) and retry if the change still applies",
        {"reason": REASON_CHANGED, "next_available_slot": None},
    )


def lost_update(exc: BaseException) -> BookingConflict | None:
    """``exc`` as the caller's ``BookingConflict`` if it is a lost version check, else None."""
    if isinstance(exc, StaleDataError):
        return changed_meanwhile()
    return None

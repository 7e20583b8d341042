"""Specialist pages: the profile, schedules (create, edit, delete) and bookings.

Schedules go through ``agent_server.booking.schedules`` for ``ScheduleOwner.specialist``; a
schedule of someone else is FORBIDDEN there and NOT_FOUND here. Booking actions go through
``agent_server.services.bookings`` with the escrow settled in the same transaction: a rejected
booking, or one the specialist cancels, is refunded in full; a completed one is paid out once
its dispute window has passed. The specialist may say where a session happens (an address or a
video link) when accepting it or later, while it is pending or accepted.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from agent_server.booking import schedules as schedule_svc
from agent_server.booking import service as booking_svc
from agent_server.booking.availability import WEEKDAYS
from agent_server.booking.models import Booking, BookingStatus, CancelledBy
from agent_server.booking.schedules import CURRENCIES, ScheduleOwner
from agent_server.dashboard.forms import (
    PROFILE_FORM_FIELDS,
    SCHEDULE_FORM_FIELDS,
    WEEKDAY_NAMES,
    field_errors,
    form_values,
    profile_fields,
    profile_form_values,
    schedule_fields,
    schedule_form_values,
    text,
    update_specialist_profile,
)
from agent_server.dashboard.people import own_specialist
from agent_server.dashboard.web import (
    DashboardRoute,
    Viewer,
    posted_form,
    redirect,
    render,
    runtime_of,
    signed_in,
)
from agent_server.kernel.errors import AgentServerError, Forbidden, NotFound, ValidationFailed
from agent_server.services import bookings as booking_steps

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
TIMEZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "Europe/Madrid",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Asia/Kolkata",
    "Australia/Sydney",
)


def _owner(viewer: Viewer) -> ScheduleOwner:
    if viewer.person.specialist_id is None:
        raise Forbidden("these pages are for specialists; your email has no specialist profile")
    return ScheduleOwner.specialist(viewer.person.specialist_id)


def _form_context() -> dict[str, Any]:
    return {
        "weekdays": [(d, WEEKDAY_NAMES[d]) for d in WEEKDAYS],
        "currencies": CURRENCIES,
        "timezones": TIMEZONES,
    }


# --- profile -----------------------------------------------------------------------------------


@router.get("/specialist")
async def profile(request: Request) -> Response:
    viewer = await signed_in(request)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        specialist = await own_specialist(uow, viewer.person)
        await uow.commit()
    return render(
        request,
        "specialist_profile.html",
        {
            "title": "Your profile",
            "specialist": specialist,
            "values": profile_form_values(specialist),
            "errors": {},
            "section": "profile",
            **_form_context(),
        },
        viewer=viewer,
    )


@router.post("/specialist/profile")
async def save_profile(request: Request) -> Response:
    viewer = await signed_in(request)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    try:
        data = profile_fields(form)
        async with runtime.db.uow() as uow:
            specialist = await own_specialist(uow, viewer.person)
            await update_specialist_profile(uow, specialist.id, data)
            await uow.commit()
    except ValidationFailed as exc:
        async with runtime.db.uow() as uow:
            specialist = await own_specialist(uow, viewer.person)
            await uow.commit()
        return render(
            request,
            "specialist_profile.html",
            {
                "title": "Your profile",
                "specialist": specialist,
                "values": form_values(form, PROFILE_FORM_FIELDS),
                "errors": field_errors(exc),
                "section": "profile",
                **_form_context(),
            },
            viewer=viewer,
            status_code=422,
        )
    return redirect("/specialist", "profile")


# --- schedules ---------------------------------------------------------------------------------


@router.get("/specialist/schedules")
async def schedules(request: Request, page: Annotated[int, Query(ge=1, le=10_000)] = 1) -> Response:
    viewer = await signed_in(request)
    owner = _owner(viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        listing = await schedule_svc.list_schedules(uow, owner, page)
        await uow.commit()
    return render(
        request,
        "specialist_schedules.html",
        {"title": "Your schedules", "listing": listing, "section": "schedules"},
        viewer=viewer,
    )


def _schedule_form(
    request: Request,
    viewer: Viewer,
    *,
    schedule_id: int | None,
    values: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "schedule_form.html",
        {
            "title": "New schedule" if schedule_id is None else f"Schedule {schedule_id}",
            "schedule_id": schedule_id,
            "values": values,
            "errors": errors,
            "section": "schedules",
            **_form_context(),
        },
        viewer=viewer,
        status_code=status_code,
    )


@router.get("/specialist/schedules/new")
async def new_schedule(request: Request) -> Response:
    viewer = await signed_in(request)
    _owner(viewer)
    return _schedule_form(
        request, viewer, schedule_id=None, values=schedule_form_values(None), errors={}
    )


@router.post("/specialist/schedules")
async def create_schedule(request: Request) -> Response:
    viewer = await signed_in(request)
    owner = _owner(viewer)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    try:
        data = schedule_svc.parse_schedule_input(schedule_fields(form))
        async with runtime.db.uow() as uow:
            await schedule_svc.create_schedule(uow, owner, data)
            await uow.commit()
    except ValidationFailed as exc:
        return _schedule_form(
            request,
            viewer,
            schedule_id=None,
            values=form_values(form, SCHEDULE_FORM_FIELDS),
            errors=field_errors(exc),
            status_code=422,
        )
    return redirect("/specialist/schedules", "schedule-created")


async def _own_schedule(request: Request, owner: ScheduleOwner, schedule_id: int) -> Any:
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        schedule = await schedule_svc.get_schedule(uow, schedule_id, owner)
        await uow.commit()
    if not owner.owns(schedule):
        raise NotFound(f"schedule {schedule_id} not found", {"schedule_id": schedule_id})
    return schedule


@router.get("/specialist/schedules/{schedule_id}")
async def edit_schedule(request: Request, schedule_id: Id) -> Response:
    viewer = await signed_in(request)
    owner = _owner(viewer)
    schedule = await _own_schedule(request, owner, schedule_id)
    return _schedule_form(
        request, viewer, schedule_id=schedule_id, values=schedule_form_values(schedule), errors={}
    )


@router.post("/specialist/schedules/{schedule_id}")
async def save_schedule(request: Request, schedule_id: Id) -> Response:
    viewer = await signed_in(request)
    owner = _owner(viewer)
    form = await posted_form(request, viewer)
    await _own_schedule(request, owner, schedule_id)
    runtime = runtime_of(request)
    try:
        raw = schedule_fields(form)
        if raw["start_date"] is None:
            del raw["start_date"]  # keep the stored start
        data = schedule_svc.parse_schedule_update(raw)
        async with runtime.db.uow() as uow:
            await schedule_svc.update_schedule(uow, owner, schedule_id, data)
            await uow.commit()
    except ValidationFailed as exc:
        return _schedule_form(
            request,
            viewer,
            schedule_id=schedule_id,
            values=form_values(form, SCHEDULE_FORM_FIELDS),
            errors=field_errors(exc),
            status_code=422,
        )
    return redirect("/specialist/schedules", "schedule-saved")


@router.post("/specialist/schedules/{schedule_id}/delete")
async def delete_schedule(request: Request, schedule_id: Id) -> Response:
    viewer = await signed_in(request)
    owner = _owner(viewer)
    await posted_form(request, viewer)
    await _own_schedule(request, owner, schedule_id)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await schedule_svc.delete_schedule(uow, owner, schedule_id)
        await uow.commit()
    return redirect("/specialist/schedules", "schedule-deleted")


# --- bookings ----------------------------------------------------------------------------------


def _booking_context(booking: Booking, now: Any, error: str | None = None) -> dict[str, Any]:
    ended = now >= booking.slot_end
    return {
        "booking": booking,
        "ended": ended,
        "can_accept": booking.status == BookingStatus.PENDING.value,
        "can_cancel": booking.status in OPEN,
        "can_complete": booking.status == BookingStatus.ACCEPTED.value and ended,
        "can_note": ended
        and booking.status in (BookingStatus.ACCEPTED.value, BookingStatus.COMPLETED.value),
        "error": error,
    }


@router.get("/specialist/bookings")
async def bookings(
    request: Request,
    status: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    viewer = await signed_in(request)
    owner = _owner(viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        page = await booking_svc.list_bookings(
            uow, specialist_id=owner.specialist_id, status=status or None, cursor=cursor, limit=25
        )
        await uow.commit()
    now = runtime.clock.now()
    return render(
        request,
        "specialist_bookings.html",
        {
            "title": "Your bookings",
            "rows": [_booking_context(b, now) for b in page.items],
            "page": page,
            "status": status or "",
            "statuses": [s.value for s in BookingStatus],
            "section": "bookings",
        },
        viewer=viewer,
    )


ACTIONS = ("accept", "reject", "complete", "note", "cancel", "location")
OPEN = (BookingStatus.PENDING.value, BookingStatus.ACCEPTED.value)


@router.post("/specialist/bookings/{booking_id}/{action}")
async def booking_action(request: Request, booking_id: Id, action: str) -> Response:
    viewer = await signed_in(request)
    owner = _owner(viewer)
    form = await posted_form(request, viewer)
    if action not in ACTIONS:
        raise NotFound(f"no booking action {action!r}")
    runtime = runtime_of(request)
    policy = runtime.billing.prices.booking
    specialist_id = owner.specialist_id
    htmx = request.headers.get("hx-request") == "true"
    error: str | None = None
    try:
        async with runtime.db.uow() as uow:
            await booking_svc.get_booking(uow, booking_id, specialist_id=specialist_id)
            if action == "accept":
                place = text(form, "location") or None
                booking = await booking_steps.accept_booking(uow, owner, booking_id, place)
            elif action == "location":
                booking = await booking_svc.set_location(
                    uow, owner, booking_id, text(form, "location")
                )
            elif action == "cancel":
                cancelled = await booking_steps.cancel_booking(
                    uow,
                    booking_id,
                    CancelledBy.SPECIALIST,
                    specialist_id,
                    text(form, "reason_code") or "other",
                    text(form, "reason"),
                    policy=policy,
                )
                booking = cancelled.booking
            elif action == "reject":
                rejected = await booking_steps.reject_booking(
                    uow, owner, booking_id, text(form, "reason"), policy=policy
                )
                booking = rejected.booking
            elif action == "complete":
                completed = await booking_steps.complete_booking(
                    uow, booking_id, CancelledBy.SPECIALIST, specialist_id, policy=policy
                )
                booking = completed.booking
            else:
                booking = await booking_svc.add_note(
                    uow, booking_id, CancelledBy.SPECIALIST, specialist_id, text(form, "note")
                )
            await uow.commit()
    except AgentServerError as exc:
        if not htmx or isinstance(exc, Forbidden | NotFound):
            raise
        error = exc.message
        async with runtime.db.uow() as uow:
            booking = await booking_svc.get_booking(uow, booking_id, specialist_id=specialist_id)
            await uow.commit()
    if not htmx:
        return redirect("/specialist/bookings")
    return render(
        request,
        "_specialist_booking_row.html",
        _booking_context(booking, runtime.clock.now(), error),
        viewer=viewer,
    )

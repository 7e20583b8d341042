"""A specialist's earnings, booking mails and calendar feed.

- ``/specialist/earnings``: per currency, what was paid out (after the commission) and what
  is still held in escrow for their bookings (``agent_server.services.earnings``);
- ``/specialist/notifications``: which booking mails they receive (new, cancelled, reminder),
  and their iCal feed: a new feed URL is shown once, with a button that copies it; making
  one retires the previous URL (``agent_server.booking.calendar``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from agent_server.booking.calendar import feed_path, rotate_specialist_calendar_token
from agent_server.dashboard.forms import NOTIFICATIONS, update_notifications
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
from agent_server.services.earnings import earnings

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


@router.get("/specialist/earnings")
async def earnings_page(request: Request) -> Response:
    viewer = await signed_in(request)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        specialist = await own_specialist(uow, viewer.person)
        rows = await earnings(uow, specialist_id=specialist.id)
        await uow.commit()
    return render(
        request,
        "specialist_earnings.html",
        {"title": "Your earnings", "earnings": rows, "section": "earnings"},
        viewer=viewer,
    )


async def _notifications_page(
    request: Request, viewer: Viewer, feed_url: str | None = None
) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        specialist = await own_specialist(uow, viewer.person)
        await uow.commit()
    choices: list[dict[str, Any]] = [
        {"name": name, "label": label, "checked": bool(getattr(specialist, name))}
        for name, label in NOTIFICATIONS.items()
    ]
    return render(
        request,
        "specialist_notifications.html",
        {
            "title": "Mails and calendar",
            "choices": choices,
            "email": specialist.email,
            "feed_url": feed_url,
            "section": "notifications",
        },
        viewer=viewer,
    )


@router.get("/specialist/notifications")
async def notifications(request: Request) -> Response:
    return await _notifications_page(request, await signed_in(request))


@router.post("/specialist/notifications")
async def save_notifications(request: Request) -> Response:
    viewer = await signed_in(request)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        specialist = await own_specialist(uow, viewer.person)
        await update_notifications(uow, specialist.id, form)
        await uow.commit()
    return redirect("/specialist/notifications", "notifications")


@router.post("/specialist/calendar")
async def new_feed_url(request: Request) -> Response:
    """A new iCal feed URL, shown on this answer only (its token is stored hashed)."""
    viewer = await signed_in(request)
    await posted_form(request, viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        specialist = await own_specialist(uow, viewer.person)
        token = await rotate_specialist_calendar_token(
            uow, specialist.id, pepper=runtime.settings.secret_pepper.get_secret_value()
        )
        await uow.commit()
    base = runtime.settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    return await _notifications_page(request, viewer, feed_url=base + feed_path(token))

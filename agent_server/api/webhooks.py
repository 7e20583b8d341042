"""Webhooks and calendar over REST, for the authenticated agent.

- ``POST /api/agent/webhook-secret``: a new signing secret, shown once (the old one stops
  signing at once);
- ``GET /api/agent/webhooks/deliveries``: the delivery log, newest events first, paged by
  cursor (``cursor`` and ``limit`` in, ``next_cursor`` out) like every list;
- ``POST /api/agent/calendar-token``: a new iCal feed URL, shown once.

The two rotations refuse a banned agent (ACCOUNT_INACTIVE) and change nothing then.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from agent_server.api.auth import ChangingAgent, CurrentAgent, RuntimeDep
from agent_server.api.errors import error_responses
from agent_server.booking.calendar import feed_path, rotate_agent_calendar_token
from agent_server.events.deliveries import MAX_PER_PAGE, list_deliveries_after
from agent_server.events.signing import SIGNATURE_HEADER, rotate_webhook_secret
from agent_server.runtime import Runtime

router = APIRouter(tags=["webhooks"], responses=error_responses(401, 422))


def _pepper(runtime: Runtime) -> str:
    return runtime.settings.secret_pepper.get_secret_value()


def _public_url(runtime: Runtime, request: Request) -> str:
    """The server's public URL, or else the one the caller reached it by."""
    if runtime.settings.public_url:
        return runtime.settings.public_url.rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}"


class WebhookSecretResponse(BaseModel):
    webhook_secret: str = Field(
        description="Sign-check key for deliveries; shown once.", examples=["whsec_..."]
    )
    signature_header: str = Field(examples=[SIGNATURE_HEADER])
    message: str


class CalendarTokenResponse(BaseModel):
    feed_url: str = Field(
        description="Your bookings as an iCal feed; shown once.",
        examples=["https://agent-server.example/calendar/feed/cal_....ics"],
    )
    message: str


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    status_code: int | None = Field(description="The HTTP status your endpoint answered.")
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    event_id: str = Field(examples=["evt_4f1c2b..."])
    event: str = Field(examples=["booking.created"])
    created_at: datetime
    status: str = Field(
        description="pending, delivered, failed (every attempt failed) or skipped (no "
        "callback_url was set when it was due)."
    )
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    data: dict[str, Any]
    log: list[AttemptOut]


class DeliveriesResponse(BaseModel):
    deliveries: list[DeliveryOut]
    total: int = Field(description="All your events (with the status asked for, if any).")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


@router.post(
    "/agent/webhook-secret",
    response_model=WebhookSecretResponse,
    responses=error_responses(403),
    summary="Rotate the webhook signing secret",
)
async def webhook_secret(caller: ChangingAgent, runtime: RuntimeDep) -> WebhookSecretResponse:
    """A new secret for checking the `X-Agent-Server-Signature` of deliveries, returned
    **once**; deliveries sent from now on are signed with it."""
    async with runtime.db.uow() as uow:
        secret = await rotate_webhook_secret(uow, _pepper(runtime), caller.agent_id)
        await uow.commit()
    return WebhookSecretResponse(
        webhook_secret=secret,
        signature_header=SIGNATURE_HEADER,
        message="Save this secret: it will not be shown again. Check each delivery's "
        f"{SIGNATURE_HEADER} header with it (see the README's Webhooks section).",
    )


@router.get(
    "/agent/webhooks/deliveries",
    response_model=DeliveriesResponse,
    summary="Webhook delivery log",
)
async def deliveries(
    caller: CurrentAgent,
    runtime: RuntimeDep,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="The `next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = 20,
    status: Annotated[Literal["pending", "delivered", "failed", "skipped"] | None, Query()] = None,
) -> DeliveriesResponse:
    """Your events, newest first, each with its delivery status and every attempt; `limit` a
    page (20 unless asked). A page starts below the last event shown, so events written
    meanwhile neither shift nor repeat it.

    Events that were delivered, failed or skipped more than 30 days ago are deleted; pending
    ones stay until they settle."""
    async with runtime.db.uow() as uow:
        found = await list_deliveries_after(
            uow, caller.agent_id, cursor=cursor, limit=limit, status=status
        )
    return DeliveriesResponse(
        deliveries=[
            DeliveryOut(
                event_id=item.event_id,
                event=item.type,
                created_at=item.created_at,
                status=item.status,
                attempts=item.attempts,
                next_attempt_at=item.next_attempt_at,
                last_status_code=item.last_status_code,
                last_error=item.last_error,
                delivered_at=item.delivered_at,
                data=item.payload,
                log=[
                    AttemptOut(
                        attempt=a.attempt,
                        started_at=a.started_at,
                        status_code=a.status_code,
                        error=a.error,
                        duration_ms=a.duration_ms,
                    )
                    for a in item.log
                ],
            )
            for item in found.items
        ],
        total=found.total,
        next_cursor=found.next_cursor,
    )


@router.post(
    "/agent/calendar-token",
    response_model=CalendarTokenResponse,
    responses=error_responses(403),
    summary="Issue a new iCal feed URL",
)
async def calendar_token(
    caller: ChangingAgent, runtime: RuntimeDep, request: Request
) -> CalendarTokenResponse:
    """A new secret URL of your bookings as an iCal feed, returned **once**; the previous URL
    stops working."""
    async with runtime.db.uow() as uow:
        token = await rotate_agent_calendar_token(uow, caller.agent_id, pepper=_pepper(runtime))
        await uow.commit()
    return CalendarTokenResponse(
        feed_url=_public_url(runtime, request) + feed_path(token),
        message="Subscribe to this URL in your calendar app. Keep it private: anyone with it "
        "can read your bookings. It will not be shown again.",
    )

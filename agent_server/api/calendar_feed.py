"""``/calendar``: the iCal feeds over HTTP (``GET /calendar/feed/{token}.ics``).

Mounted by ``agent_server.app`` ahead of the MCP app. An unknown, rotated or malformed token
is NOT_FOUND, with SPEC's error body; the feed itself is ``text/calendar``.

Both are rate limited (``calendar_feed_per_hour`` fetches of one feed, and
``calendar_misses_per_ip_per_hour`` fetches from one address of URLs that open no feed): a
feed is built from the owner's bookings on every fetch, and a runaway client or a scan should
not cost more than a polling calendar does. Over a limit the answer is 429 RATE_LIMITED with
``Retry-After``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agent_server.accounts.ratelimit import hit
from agent_server.accounts.service import limit_ip
from agent_server.api.auth import client_ip
from agent_server.api.errors import CatchAll, error_response
from agent_server.booking.calendar import FeedOwner, feed_for, owner_of
from agent_server.kernel.errors import NotFound, RateLimited
from agent_server.runtime import Runtime

FEED_WINDOW_SECONDS = 3600


def _limit_key(owner: FeedOwner) -> str:
    if owner.agent_id is not None:
        return f"calendar-feed:agent:{owner.agent_id}"
    return f"calendar-feed:specialist:{owner.specialist_id}"


def calendar_app(runtime: Runtime) -> Starlette:
    """The ASGI app serving the feeds of ``runtime``'s database."""
    settings = runtime.settings
    pepper = settings.secret_pepper.get_secret_value()

    async def feed(request: Request) -> Response:
        token = str(request.path_params["token"])
        async with runtime.db.uow() as uow:
            owner = await owner_of(uow, token, pepper=pepper)
            if owner is not None and settings.calendar_feed_per_hour > 0:
                limit = settings.calendar_feed_per_hour
                decision = await hit(
                    uow, _limit_key(owner), limit=limit, window_seconds=FEED_WINDOW_SECONDS
                )
                if not decision.allowed:
                    await uow.commit()  # the refused fetch counts too
                    return error_response(
                        RateLimited(
                            f"This feed answers {limit} fetches an hour; retry in "
                            f"{decision.retry_after} seconds.",
                            {
                                "retry_after": decision.retry_after,
                                "limit": limit,
                                "window_seconds": FEED_WINDOW_SECONDS,
                            },
                        )
                    )
            document = None if owner is None else await feed_for(uow, owner)
            await uow.commit()
        if document is None:
            try:
                await limit_ip(
                    runtime.db,
                    "calendar feed",
                    client_ip(request),
                    settings.calendar_misses_per_ip_per_hour,
                    FEED_WINDOW_SECONDS,
                )
            except RateLimited as exc:
                return error_response(exc)
            return error_response(
                NotFound(
                    "no calendar feed has this token; issue a new one with "
                    "POST /api/agent/calendar-token",
                    {},
                )
            )
        return Response(
            document,
            media_type="text/calendar; charset=utf-8",
            headers={"Cache-Control": "private, max-age=60"},
        )

    return Starlette(
        routes=[Route("/feed/{token}.ics", feed, methods=["GET", "HEAD"])],
        middleware=[Middleware(CatchAll)],
    )

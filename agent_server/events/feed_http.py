"""``/calendar``: the iCal feeds over HTTP (``GET /calendar/feed/{token}.ics``).

Mounted by ``agent_server.app`` ahead of the MCP app. An unknown, rotated or malformed token
is NOT_FOUND, with SPEC's error body; the feed itself is ``text/calendar``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent_server.errors import NotFound
from agent_server.events.calendar import feed_for, owner_of
from agent_server.runtime import Runtime


def calendar_app(runtime: Runtime) -> Starlette:
    """The ASGI app serving the feeds of ``runtime``'s database."""
    pepper = runtime.settings.secret_pepper.get_secret_value()

    async def feed(request: Request) -> Response:
        token = str(request.path_params["token"])
        async with runtime.db.uow() as uow:
            owner = await owner_of(uow, token, pepper=pepper)
            if owner is None:
                error = NotFound(
                    "no calendar feed has this token; issue a new one with "
                    "POST /api/agent/calendar-token",
                    {},
                )
                return JSONResponse(error.to_body(), status_code=error.status)
            document = await feed_for(uow, owner)
        return Response(
            document,
            media_type="text/calendar; charset=utf-8",
            headers={"Cache-Control": "private, max-age=60"},
        )

    return Starlette(routes=[Route("/feed/{token}.ics", feed, methods=["GET", "HEAD"])])

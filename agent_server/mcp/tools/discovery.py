"""Tools for finding specialists: search with free slots, and full profiles."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agent_server.booking import cache
from agent_server.booking.search import ProfileView, SearchPage, SearchQuery
from agent_server.inputs import TimeZone
from agent_server.mcp.pipeline import ToolContext
from agent_server.mcp.results import JsonOutput
from agent_server.mcp.tools.common import MAX_ID, Input, Paid
from agent_server.mcp.tools.registry import REGISTRY


class SearchResult(SearchPage, Paid):
    """One page of specialists, each with its next free slots."""


@REGISTRY.tool(
    "search-specialists",
    title="Search specialists with free slots",
    toolset="discovery",
    input_model=SearchQuery,
    output_model=SearchResult,
    read_only=True,
    idempotent=True,
)
async def search_specialists(ctx: ToolContext, args: SearchQuery) -> SearchResult | JsonOutput:
    """Find human specialists who have free slots in a date window: filter by free text,
    skills, languages, city, country, price range, slot length, weekdays and hours (in your
    time zone); sort by rating, price or next_available; page with next_cursor. Each result
    lists its next free slots as {slot_id: local date and time}; book-slot accepts the slot_id
    directly, so you can find and book in two calls. Contact details are only in view-profile.
    Charged per call."""
    answer = await cache.search_specialists(ctx.uow, args, now=ctx.uow.clock.now())
    return JsonOutput(*answer.as_json())


class ViewProfileIn(Input):
    specialist_id: Annotated[int, Field(ge=1, le=MAX_ID, description="Id from search-specialists.")]
    timezone: Annotated[
        TimeZone,
        Field(
            max_length=64,
            description="Your IANA time zone for local slot times, e.g. Europe/Paris.",
        ),
    ] = "UTC"
    window_days: Annotated[
        int, Field(ge=1, le=62, description="How many days ahead to list free slots.")
    ] = 14


class ProfileResult(Paid):
    profile: ProfileView


@REGISTRY.tool(
    "view-profile",
    title="A specialist's full profile",
    toolset="discovery",
    input_model=ViewProfileIn,
    output_model=ProfileResult,
    read_only=True,
    idempotent=True,
)
async def view_profile(ctx: ToolContext, args: ViewProfileIn) -> ProfileResult | JsonOutput:
    """A specialist's full profile: contact email and phone, skills, languages, education,
    rates, rating, public schedules and their next free slots ({slot_id: local date and time},
    the slot_id for book-slot; get-availability has seats left and exact times). The first
    100 views each calendar month (UTC) are free, then charged per view."""
    answer = await cache.view_profile(
        ctx.uow,
        args.specialist_id,
        now=ctx.uow.clock.now(),
        window_days=args.window_days,
        timezone=args.timezone,
    )
    return JsonOutput(*answer.as_json()).nested("profile")

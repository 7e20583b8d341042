"""Tools for finding specialists: search with free slots, and full profiles."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from agent_server.booking import cache
from agent_server.booking.search.answer import SearchPage
from agent_server.booking.search.profile import ProfileView
from agent_server.booking.search.query import SearchQuery
from agent_server.kernel.inputs import Text, TimeZone
from agent_server.mcp.pipeline import ToolContext
from agent_server.mcp.results import JsonOutput
from agent_server.mcp.text import render
from agent_server.mcp.tools.catalog import REGISTRY
from agent_server.mcp.tools.common import MAX_ID, Input, Paid


class SearchResult(SearchPage, Paid):
    """One page of specialists, each with its next free slots."""


@REGISTRY.tool(
    "search-specialists",
    title="Search specialists",
    toolset="discovery",
    input_model=SearchQuery,
    output_model=SearchResult,
    read_only=True,
    idempotent=True,
)
async def search_specialists(ctx: ToolContext, args: SearchQuery) -> SearchResult | JsonOutput:
    """Find human specialists with free slots in a date window; page with next_cursor. Each
    result lists free slots by slot_id, for book-slot. Contacts: view-profile."""
    answer = await cache.search_specialists(ctx.uow, args, now=ctx.uow.clock.now())
    return JsonOutput(answer.as_json()[0], answer.text(_search_text))


class ViewProfileIn(Input):
    specialist_id: Annotated[int, Field(ge=1, le=MAX_ID, description="Id from search-specialists.")]
    timezone: Annotated[
        TimeZone,
        Field(max_length=64, description="Yours (IANA, e.g. Europe/Paris), for local times."),
    ] = "UTC"
    window_days: Annotated[
        int, Field(ge=1, le=62, description="Days ahead to list free slots.")
    ] = 14
    reviews_cursor: Annotated[
        Text | None, Field(max_length=200, description="next_reviews_cursor: older reviews.")
    ] = None


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
    """A specialist's contact email and phone, skills, languages, education, rates, rating,
    newest reviews, and public schedules with their next free slots (slot_id for book-slot)."""
    answer = await cache.view_profile(
        ctx.uow,
        args.specialist_id,
        now=ctx.uow.clock.now(),
        window_days=args.window_days,
        timezone=args.timezone,
        reviews_cursor=args.reviews_cursor,
    )
    return JsonOutput({"profile": answer.as_json()[0]}, answer.text(_profile_text))


def _search_text(page: dict[str, Any]) -> str:
    return render("search-specialists", page)


def _profile_text(profile: dict[str, Any]) -> str:
    return render("view-profile", {"profile": profile})

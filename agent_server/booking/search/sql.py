"""SQL of a search: the statements a plan needs, built and never run here.

For a ``Plan``: ``conditions`` (every filter SQL can apply, for schedules joined to their
specialists), split into ``schedule_conditions`` and ``specialist_conditions``;
``position_columns`` (the walk's sort columns); ``matching`` (the walk itself:
``(sid, *position)`` rows in sort order, through an index); ``rows_after`` and ``rows_upto``
(keyset bounds around a ``Position``); ``slice_end_query`` (the index entry a number of rows
further on, before any filter). ``opaque`` hides a column from SQLite's index choice.
Each is a function of the plan alone: no session, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, tuple_
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from agent_server.booking.models import Schedule, Specialist, SpecialistLanguage, SpecialistSkill
from agent_server.booking.search.cursor import Position
from agent_server.booking.search.plan import Plan
from agent_server.booking.search.query import SortBy


def _has_skill(skill: str) -> ColumnElement[bool]:
    """The specialist lists ``skill``: one look-up in ``specialist_skills``' key."""
    return exists().where(
        SpecialistSkill.skill == skill, SpecialistSkill.specialist_id == Specialist.id
    )


def _speaks_any(languages: Sequence[str]) -> ColumnElement[bool]:
    """The specialist speaks one of ``languages``: look-ups in ``specialist_languages``' key."""
    return exists().where(
        SpecialistLanguage.language.in_(list(languages)),
        SpecialistLanguage.specialist_id == Specialist.id,
    )


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def opaque(column: Any) -> Any:
    """``+column``: the same value, which SQLite will not look up through an index."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def same(column: Any) -> Any:
    """``column`` itself: where the index may drive (PostgreSQL plans by statistics)."""
    return column


def conditions(plan: Plan) -> list[ColumnElement[bool]]:
    """Every filter SQL can apply, for schedules joined to their specialists."""
    return schedule_conditions(plan) + specialist_conditions(plan)


def schedule_conditions(plan: Plan) -> list[ColumnElement[bool]]:
    """The filters on a schedule's own columns."""
    q = plan.query
    first_day = (plan.window_start - timedelta(days=1)).date()
    last_day = (plan.window_end + timedelta(days=1)).date()
    # Nearly every schedule passes these, so they must not drive an index (SQLite would
    # walk it and sort everything instead of walking the sort order and stopping early).
    hidden = opaque if plan.sqlite else same
    next_free = hidden(Schedule.next_free_at)
    end_date = hidden(Schedule.end_date)
    conds: list[ColumnElement[bool]] = [
        hidden(Schedule.private).is_(False),
        hidden(Schedule.deleted_at).is_(None),
        hidden(Schedule.start_date) <= last_day,
        or_(end_date.is_(None), end_date >= first_day),
        or_(next_free.is_(None), next_free < plan.window_end),
    ]
    if plan.usd_min is not None:
        conds.append(Schedule.price_usd_micros >= plan.usd_min)
    if plan.usd_max is not None:
        conds.append(Schedule.price_usd_micros <= plan.usd_max)
    if q.duration is not None:
        conds.append(Schedule.slot_minutes == q.duration)
    return conds


def specialist_conditions(plan: Plan) -> list[ColumnElement[bool]]:
    """The filters on the specialist's profile."""
    q = plan.query
    conds: list[ColumnElement[bool]] = []
    if q.country is not None:
        conds.append(Specialist.country == q.country)
    if q.city is not None:
        conds.append(func.lower(Specialist.city) == q.city.lower())
    for word in plan.words:
        conds.append(Specialist.search_text.like(f"%{_like_escape(word)}%", escape="\\"))
    for skill in q.skills:
        conds.append(_has_skill(skill))
    if q.languages:
        conds.append(_speaks_any(q.languages))
    if q.min_rating is not None:
        conds.append(Specialist.rating >= q.min_rating)
    return conds


def position_columns(plan: Plan) -> tuple[Any, Any, Any]:
    """The columns of a walk ``Position``: sort value, specialist id, schedule id; for the
    rating sort: rating, review count (the tie-break), specialist id."""
    if plan.sort is SortBy.PRICE:
        return Schedule.price_usd_micros, Schedule.specialist_id, Schedule.id
    if plan.sort is SortBy.RATING:
        return Specialist.rating, Specialist.review_count, Specialist.id
    return Schedule.next_free_at, Schedule.specialist_id, Schedule.id


def rows_after(plan: Plan, pos: Position) -> ColumnElement[bool]:
    """Rows strictly after ``pos`` in the walk; the leading pair is an index range."""
    a, b, c = position_columns(plan)
    lead, lead_value = tuple_(a, b), tuple_(pos[0], pos[1])
    if plan.sort is SortBy.RATING:  # one row per specialist
        whole, value = tuple_(a, b, c), tuple_(pos[0], pos[1], pos[2])
        return whole < value if plan.desc else whole > value
    if plan.desc:
        return and_(lead <= lead_value, or_(lead < lead_value, c < pos[2]))
    return and_(lead >= lead_value, or_(lead > lead_value, c > pos[2]))


def matching(plan: Plan) -> Select[Any]:
    """The walk: ``(specialist id, *position)`` rows in sort order, through an index.

    Sorting by rating walks specialists (one row each, by rating, review count and id); the
    other sorts walk schedules.
    """
    cols = position_columns(plan)
    if plan.sort is SortBy.RATING:
        # A scalar subquery, not EXISTS: PostgreSQL may turn EXISTS into a hash join over
        # every schedule, while this stays an index look-up per specialist walked.
        has_schedule = (
            select(Schedule.id)
            .where(Schedule.specialist_id == Specialist.id, *schedule_conditions(plan))
            .limit(1)
            .scalar_subquery()
            .is_not(None)
        )
        stmt = select(Specialist.id.label("sid"), *cols).where(
            *specialist_conditions(plan), has_schedule
        )
        order: tuple[Any, ...] = cols
    else:
        stmt = (
            select(Schedule.specialist_id.label("sid"), *cols)
            .join(Specialist, Specialist.id == Schedule.specialist_id)
            .where(*conditions(plan))
        )
        order = cols
        if plan.sort is SortBy.NEXT_AVAILABLE:
            stmt = stmt.where(Schedule.next_free_at.is_not(None))
    return stmt.order_by(*(c.desc() if plan.desc else c.asc() for c in order))


def rows_upto(plan: Plan, pos: Position) -> ColumnElement[bool]:
    """Rows at or before ``pos`` in the walk."""
    a, b, c = position_columns(plan)
    lead, value = tuple_(a, b, c), tuple_(pos[0], pos[1], pos[2])
    return lead >= value if plan.desc else lead <= value


def slice_end_query(plan: Plan, after: Position | None, rows: int) -> Select[Any]:
    """The position ``rows`` entries of the walk's index after ``after`` (before any filter):
    one row, or none when fewer are left."""
    cols = position_columns(plan)
    stmt = select(*cols)
    order: tuple[Any, ...] = cols
    if plan.sort is SortBy.NEXT_AVAILABLE:
        stmt = stmt.where(Schedule.next_free_at.is_not(None))
    if after is not None:
        stmt = stmt.where(rows_after(plan, after))
    stmt = stmt.order_by(*(c.desc() if plan.desc else c.asc() for c in order))
    return stmt.offset(rows - 1).limit(1)

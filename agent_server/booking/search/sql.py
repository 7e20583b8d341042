"""SQL of a search: the statements a plan needs, built once per shape with bind parameters.

A plan's statements differ only in which filters are present (``Shape``: the sort, the order,
the backend, which bounds are given, how many words, skills and languages), never in their
values: those travel as bind parameters (``params``). So each statement is built and compiled
once per shape (``statement``: a bounded table of ``Direct`` statements, run straight on the
driver, see ``kernel.store.direct``) and the database sees the same text every time.

For a ``Shape``: ``conditions`` (every filter SQL can apply, for schedules joined to their
specialists), split into ``schedule_conditions`` and ``specialist_conditions``;
``position_columns`` (the walk's sort columns); ``matching`` (the walk itself:
``(sid, *position)`` rows in sort order, through an index); ``rows_after`` and ``rows_upto``
(keyset bounds around the positions bound as ``a0..a2`` and ``e0..e2``);
``slice_end_query`` (the index entry ``off`` rows further on, before any filter);
``any_of`` (a list bound as a fixed number of parameters). ``opaque`` hides a column from
SQLite's index choice. Each is a function of the shape alone: no session, no I/O.
"""

# Long by design: every statement of a search is built from one shape and shared conditions.

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    cast,
    exists,
    func,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import BindParameter, UnaryExpression
from sqlalchemy.sql.operators import custom_op

from agent_server.booking.models import Schedule, Specialist, SpecialistLanguage, SpecialistSkill
from agent_server.booking.search.cursor import Position
from agent_server.booking.search.plan import Plan
from agent_server.booking.search.query import SortBy
from agent_server.kernel.store import Direct

STATEMENTS = 1024
"""Statements kept built and compiled (by shape); the least recently used leave first."""

# Columns of the tables, not of the mapped classes: a statement over plain columns compiles
# in about half the time (no ORM compile state).
SCHEDULES: Any = Schedule.__table__.c
SPECIALISTS: Any = Specialist.__table__.c
SKILLS: Any = SpecialistSkill.__table__.c
LANGUAGES: Any = SpecialistLanguage.__table__.c


@dataclass(frozen=True, slots=True)
class Shape:
    """What a plan's statements look like: the sort, the order, the backend and how many
    words, skills and languages (``list_size``) there are; never the values, and not which
    of the other filters are given (an absent one is bound to a value every row passes)."""

    sort: SortBy
    desc: bool
    sqlite: bool
    words: int
    skills: int
    languages: int
    blocks: bool = False
    """The walk leaves out schedules whose ``start_blocks`` miss the blocks asked
    (``Plan.asked_blocks``, bound as ``blocks``)."""

    @property
    def filters(self) -> Shape:
        """The shape without the sort and the blocks: all that the filters' SQL depends on
        (the blocks only spare the walk schedules that cutting would find no slot in)."""
        return Shape(SortBy.RATING, False, self.sqlite, self.words, self.skills, self.languages)


def shape_of(plan: Plan) -> Shape:
    q = plan.query
    return Shape(
        sort=plan.sort,
        desc=plan.desc,
        sqlite=plan.sqlite,
        words=word_slots(len(plan.words)),
        skills=len(q.skills),
        languages=list_size(len(q.languages)) if q.languages else 0,
        blocks=plan.asked_blocks is not None,
    )


LOWEST_PRICE = -1
HIGHEST = 2**63 - 1
"""Bounds no stored price, id or count reaches."""
LOWEST_RATING = -1.0
"""Below every rating: ``min_rating`` when none is given."""
LONGEST_SLOT = 2**31 - 1
"""Above every slot length (a 32-bit column): ``longest`` when no hours are asked."""
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""Bounds no ``next_free_at`` reaches."""


def params(plan: Plan) -> dict[str, Any]:
    """The values of the filters' bind parameters (an absent filter: one every row passes,
    or NULL, which the statement reads as "no filter")."""
    q = plan.query
    out: dict[str, Any] = {
        "first_day": (plan.window_start - timedelta(days=1)).date(),
        "last_day": (plan.window_end + timedelta(days=1)).date(),
        "window_end": plan.window_end,
        "usd_min": LOWEST_PRICE if plan.usd_min is None else plan.usd_min,
        "usd_max": HIGHEST if plan.usd_max is None else plan.usd_max,
        "duration": q.duration,
        "longest": LONGEST_SLOT if plan.longest_slot is None else plan.longest_slot,
        "country": q.country,
        "city": None if q.city is None else q.city.lower(),
        "min_rating": LOWEST_RATING if q.min_rating is None else q.min_rating,
    }
    for i in range(word_slots(len(plan.words))):
        out[f"w{i}"] = f"%{_like_escape(plan.words[i])}%" if i < len(plan.words) else "%"
    for i, skill in enumerate(q.skills):
        out[f"s{i}"] = skill
    if q.languages:
        out.update(list_params("l", q.languages))
    if plan.asked_blocks is not None:
        out["blocks"] = plan.asked_blocks
    return out


def first_position(shape: Shape) -> Position:
    """A position before every row of the walk: where it starts without a cursor."""
    return last_position(replace(shape, desc=not shape.desc))


def last_position(shape: Shape) -> Position:
    """A position after every row of the walk."""
    if shape.sort is SortBy.NEXT_AVAILABLE:
        return (EARLIEST, -1, -1) if shape.desc else (LATEST, HIGHEST, HIGHEST)
    if shape.sort is SortBy.RATING:  # rating, review count (a 32-bit column), id
        return (LOWEST_RATING, -1, -1) if shape.desc else (float(HIGHEST), 2**31 - 1, HIGHEST)
    return (LOWEST_PRICE, -1, -1) if shape.desc else (HIGHEST, HIGHEST, HIGHEST)


def position_params(prefix: str, pos: Position) -> dict[str, Any]:
    """``pos`` as the bind parameters ``<prefix>0..2``."""
    return {f"{prefix}0": pos[0], f"{prefix}1": pos[1], f"{prefix}2": pos[2]}


_TABLE: OrderedDict[Hashable, Direct] = OrderedDict()


def statement(key: Hashable, build: Callable[[], Executable]) -> Direct:
    """The statement ``build`` makes, built once per ``key`` (bounded, least recently used
    leave first)."""
    found = _TABLE.get(key)
    if found is not None:
        _TABLE.move_to_end(key)
        return found
    made = _TABLE[key] = Direct(build(), rebuild=build)
    while len(_TABLE) > STATEMENTS:
        _TABLE.popitem(last=False)
    return made


WORD_SLOTS = 2
"""A search's words are bound as at least this many patterns, the ones past its words ``%``
(which every text matches): one statement serves a search of one word and of two, so a
server keeps and warms fewer statements."""


def word_slots(n: int) -> int:
    """How many patterns a search of ``n`` words is bound as."""
    return 0 if n == 0 else max(n, WORD_SLOTS)


def list_size(n: int) -> int:
    """Parameters a list of ``n`` values is bound as: 16 or a larger power of two, so one
    statement serves nearly every length (the list is padded with its first value, which
    changes nothing in ``IN``)."""
    size = 16
    while size < n:
        size *= 2
    return size


def list_params(prefix: str, values: Sequence[Any]) -> dict[str, Any]:
    """``values`` padded to ``list_size`` as the bind parameters ``<prefix>0..``."""
    size = list_size(len(values))
    return {f"{prefix}{i}": values[i] if i < len(values) else values[0] for i in range(size)}


def any_of(column: Any, prefix: str, size: int) -> ColumnElement[bool]:
    """``column IN (<prefix>0, ..., <prefix>size-1)``."""
    return column.in_([bindparam(f"{prefix}{i}", type_=column.type) for i in range(size)])  # type: ignore[no-any-return]


def moment(value: Any) -> datetime:
    """A timestamp as the driver gives it (SQLite: naive UTC text) as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    return value.astimezone(UTC)  # type: ignore[no-any-return]


def _has_skill(i: int) -> ColumnElement[bool]:
    """The specialist lists skill ``s<i>``: one look-up in ``specialist_skills``' key."""
    return exists().where(
        SKILLS.skill == bindparam(f"s{i}", type_=SKILLS.skill.type),
        SKILLS.specialist_id == SPECIALISTS.id,
    )


def _speaks_any(n: int) -> ColumnElement[bool]:
    """The specialist speaks one of ``l0..l<n-1>``: look-ups in ``specialist_languages``' key."""
    column = LANGUAGES.language
    return exists().where(
        column.in_([bindparam(f"l{i}", type_=column.type) for i in range(n)]),
        LANGUAGES.specialist_id == SPECIALISTS.id,
    )


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def opaque(column: Any) -> Any:
    """``+column``: the same value, which SQLite will not look up through an index."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def same(column: Any) -> Any:
    """``column`` itself: where the index may drive (PostgreSQL plans by statistics)."""
    return column


def _bind(name: str, column: Any) -> BindParameter[Any]:
    return bindparam(name, type_=column.type)


def conditions(shape: Shape) -> list[ColumnElement[bool]]:
    """Every filter SQL can apply, for schedules joined to their specialists."""
    return schedule_conditions(shape) + specialist_conditions(shape)


def schedule_conditions(shape: Shape) -> list[ColumnElement[bool]]:
    """The filters on a schedule's own columns."""
    # Nearly every schedule passes these, so they must not drive an index (SQLite would
    # walk it and sort everything instead of walking the sort order and stopping early).
    hidden = opaque if shape.sqlite else same
    next_free = hidden(SCHEDULES.next_free_at)
    end_date = hidden(SCHEDULES.end_date)
    conds: list[ColumnElement[bool]] = [
        hidden(SCHEDULES.private).is_(False),
        hidden(SCHEDULES.deleted_at).is_(None),
        hidden(SCHEDULES.start_date) <= _bind("last_day", SCHEDULES.start_date),
        or_(end_date.is_(None), end_date >= _bind("first_day", SCHEDULES.end_date)),
        or_(next_free.is_(None), next_free < _bind("window_end", SCHEDULES.next_free_at)),
    ]
    price = SCHEDULES.price_usd_micros
    if shape.sort is SortBy.PRICE:
        # The walk's own bounds (``walk.walk_bounds``) carry the price range as an index
        # range on the sort order; as a second range SQLite would pick this one and read
        # past the slice's end, row by row, to the end of the range.
        price = hidden(price)
    duration = _bind("duration", SCHEDULES.slot_minutes)
    conds += [
        price >= _bind("usd_min", price),
        price <= _bind("usd_max", price),
        or_(duration.is_(None), SCHEDULES.slot_minutes == duration),
        # Slots longer than the hours asked never fit them (``Plan.longest_slot``).
        SCHEDULES.slot_minutes <= _bind("longest", SCHEDULES.slot_minutes),
    ]
    return conds


def specialist_conditions(shape: Shape, *, indexed: bool = True) -> list[ColumnElement[bool]]:
    """The filters on the specialist's profile; without ``indexed``, only those the profile
    index does not answer (rating and words: ``booking.search.profiles``)."""
    country = _bind("country", SPECIALISTS.country)
    city = _bind("city", SPECIALISTS.city)
    rating = SPECIALISTS.rating
    if shape.sort is SortBy.RATING and shape.sqlite:
        rating = opaque(rating)  # the walk's bounds carry it, as the price above
    conds: list[ColumnElement[bool]] = [rating >= _bind("min_rating", SPECIALISTS.rating)]
    if indexed:
        conds += [
            or_(country.is_(None), SPECIALISTS.country == country),
            or_(city.is_(None), func.lower(SPECIALISTS.city) == city),
        ]
    for i in range(shape.words):
        conds.append(SPECIALISTS.search_text.like(_bind(f"w{i}", SPECIALISTS.search_text), "\\"))
    if indexed:
        for i in range(shape.skills):
            conds.append(_has_skill(i))
        if shape.languages:
            conds.append(_speaks_any(shape.languages))
    return conds


def meets_blocks() -> ColumnElement[bool]:
    """The schedule may have a slot starting in the blocks asked (``blocks``): its
    ``start_blocks`` share one. Checked in the walked indexes, which carry the column."""
    asked = bindparam("blocks", type_=SCHEDULES.start_blocks.type)
    return SCHEDULES.start_blocks.op("&")(asked) != 0  # type: ignore[no-any-return]


def position_columns(shape: Shape) -> tuple[Any, Any, Any]:
    """The columns of a walk ``Position``: sort value, specialist id, schedule id; for the
    rating sort: rating, review count (the tie-break), specialist id."""
    if shape.sort is SortBy.PRICE:
        return SCHEDULES.price_usd_micros, SCHEDULES.specialist_id, SCHEDULES.id
    if shape.sort is SortBy.RATING:
        return SPECIALISTS.rating, SPECIALISTS.review_count, SPECIALISTS.id
    return SCHEDULES.next_free_at, SCHEDULES.specialist_id, SCHEDULES.id


def _position(shape: Shape, prefix: str) -> tuple[Any, Any, Any]:
    a, b, c = position_columns(shape)
    return _bind(f"{prefix}0", a), _bind(f"{prefix}1", b), _bind(f"{prefix}2", c)


def rows_after(shape: Shape) -> ColumnElement[bool]:
    """Rows strictly after the position ``a0..a2``; the leading pair is an index range."""
    a, b, c = position_columns(shape)
    p0, p1, p2 = _position(shape, "a")
    lead, lead_value = tuple_(a, b), tuple_(p0, p1)
    if shape.sort is SortBy.RATING:  # one row per specialist
        whole, value = tuple_(a, b, c), tuple_(p0, p1, p2)
        after = whole < value if shape.desc else whole > value
    elif shape.desc:
        after = and_(lead <= lead_value, or_(lead < lead_value, c < p2))
    else:
        after = and_(lead >= lead_value, or_(lead > lead_value, c > p2))
    return and_(_estimated(shape, a, p0, at_most=shape.desc), after)


def rows_upto(shape: Shape) -> ColumnElement[bool]:
    """Rows at or before the position ``e0..e2`` in the walk."""
    a, b, c = position_columns(shape)
    e0, e1, e2 = _position(shape, "e")
    lead, value = tuple_(a, b, c), tuple_(e0, e1, e2)
    upto = lead >= value if shape.desc else lead <= value
    return and_(_estimated(shape, a, e0, at_most=not shape.desc), upto)


def _estimated(shape: Shape, column: Any, bound: Any, *, at_most: bool) -> ColumnElement[bool]:
    """On PostgreSQL, the leading column's own bound beside a position's row comparison.

    PostgreSQL estimates a row comparison with a fixed guess, not from the column's
    statistics, so it takes a slice of a few thousand entries for a third of the index; with
    a rare filter it then prefers reading every specialist to find them (a sequential scan
    per slice). The plain bound it estimates from the histogram: the slice is small, and
    walking it through the index is the plan. SQLite takes one range per index and would
    take this one instead of the row comparison's (see ``schedule_conditions``): not there.
    """
    if shape.sqlite:
        return true()
    return column <= bound if at_most else column >= bound  # type: ignore[no-any-return]


def _ordered(shape: Shape, stmt: Select[Any], cols: Sequence[Any]) -> Select[Any]:
    return stmt.order_by(*(c.desc() if shape.desc else c.asc() for c in cols))


def matching(shape: Shape, *, blocks: bool = False, indexed: bool = True) -> Select[Any]:
    """The walk: ``(specialist id, *position)`` rows in sort order, through an index.

    Sorting by rating walks specialists (one row each, by rating, review count and id); the
    other sorts walk schedules. With ``blocks`` (the walk itself, not the facets: a schedule
    whose hours never meet those asked still counts there), schedules that cannot start a
    slot in the blocks asked are left out (``meets_blocks``). Without ``indexed``, the
    profile filters the profile index answers are left to the caller (``specialist_conditions``).
    """
    cols = position_columns(shape)
    wanted = schedule_conditions(shape)
    if blocks and shape.blocks:
        wanted.append(meets_blocks())
    if shape.sort is SortBy.RATING:
        # A scalar subquery, not EXISTS: PostgreSQL may turn EXISTS into a hash join over
        # every schedule, while this stays an index look-up per specialist walked.
        has_schedule = (
            select(SCHEDULES.id)
            .where(SCHEDULES.specialist_id == SPECIALISTS.id, *wanted)
            .limit(1)
            .scalar_subquery()
            .is_not(None)
        )
        stmt = select(SPECIALISTS.id.label("sid"), *cols).where(
            *specialist_conditions(shape, indexed=indexed), has_schedule
        )
    else:
        stmt = (
            select(SCHEDULES.specialist_id.label("sid"), *cols)
            .join(Specialist.__table__, SPECIALISTS.id == SCHEDULES.specialist_id)
            .where(*wanted, *specialist_conditions(shape, indexed=indexed))
        )
        if shape.sort is SortBy.NEXT_AVAILABLE:
            stmt = stmt.where(SCHEDULES.next_free_at.is_not(None))
    return _ordered(shape, stmt, cols)


def walk_query(shape: Shape) -> Direct:
    """The walk's next ``lim`` rows after ``a0..a2``, up to ``e0..e2`` (``first_position``
    and ``last_position`` when the walk has no such bound)."""

    def build() -> Select[Any]:
        stmt = matching(shape, blocks=True).where(rows_after(shape), rows_upto(shape))
        return stmt.limit(bindparam("lim", type_=Integer()))

    return statement(("walk", shape), build)


def driven_walk_query(shape: Shape, *, by_ids: bool = False) -> Direct:
    """The walk's next ``lim`` rows after ``a0..a2`` among the specialists with the skill
    ``rare``, found through ``specialist_skills``' key and sorted, not by walking the sort
    index: for a skill few specialists list (``skill_count_query``). With ``by_ids``, among
    the specialists whose ids the JSON array ``ids`` lists instead: those the profile index
    matched (``booking.search.profiles``), so the filters it answers are not checked again.
    The matches are gathered apart (a materialized CTE), so no planner walks the sort index
    for them."""

    def build() -> Select[Any]:
        sid = SPECIALISTS.id if shape.sort is SortBy.RATING else SCHEDULES.specialist_id
        listed: Select[Any]
        if by_ids:
            ids = bindparam("ids", type_=String())
            if shape.sqlite:
                each = func.json_each(ids).table_valued("value")
                listed = select(each.c.value)
            else:
                each = func.json_array_elements_text(cast(ids, JSON)).table_valued("value")
                listed = select(cast(each.c.value, BigInteger))
        else:
            listed = select(SKILLS.specialist_id).where(
                SKILLS.skill == bindparam("rare", type_=SKILLS.skill.type)
            )
        found = (
            matching(shape, blocks=True, indexed=not by_ids)
            .order_by(None)
            .where(sid.in_(listed), rows_after(shape))
            .cte("driven")
            .prefix_with("MATERIALIZED")
        )
        cols = list(found.c)
        stmt = _ordered(shape, select(*cols), cols[1:])
        return stmt.limit(bindparam("lim", type_=Integer()))

    return statement(("driven", shape, by_ids), build)


def skill_count_query() -> Direct:
    """How many specialists list the skill ``skill``, counted up to ``cap`` (one look-up
    range in ``specialist_skills``' key)."""

    def build() -> Select[Any]:
        listed = (
            select(SKILLS.specialist_id)
            .where(SKILLS.skill == bindparam("skill", type_=SKILLS.skill.type))
            .limit(bindparam("cap", type_=Integer()))
            .subquery()
        )
        return select(func.count()).select_from(listed)

    return statement(("skill_count",), build)


def slice_end_query(shape: Shape) -> Direct:
    """The position ``off + 1`` entries of the walk's index after ``a0..a2`` (before any
    filter): one row, or none when fewer are left."""

    def build() -> Select[Any]:
        cols = position_columns(shape)
        stmt = select(*cols).where(rows_after(shape))
        if shape.sort is SortBy.NEXT_AVAILABLE:
            stmt = stmt.where(SCHEDULES.next_free_at.is_not(None))
        stmt = _ordered(shape, stmt, cols)
        return stmt.offset(bindparam("off", type_=Integer())).limit(1)

    # Only the sort and the order matter: the statement reads the index alone.
    return statement(("slice_end", shape.sort, shape.desc, shape.sqlite), build)

"""Specialist search and profile view: what search-specialists and view-profile answer.

``search_specialists(uow, query, now=...)`` finds specialists with public schedules that match
every filter of a ``SearchQuery`` and have a free slot in the date window (on the requested
days and hours, in the requester's time zone). Each result carries the matched schedules and
up to three next free slots; the page carries facet counts and an opaque cursor.
``view_profile(uow, specialist_id, now=...)`` returns the whole profile, contact included.

How it stays fast on a large catalogue
--------------------------------------
Cutting slots is the expensive part, so it is done only for the specialists a page needs:

1. SQL filters schedules (public, not deleted, dates, price, length, skills, languages, place,
   text) and walks them in the sort order through an index (keyset pagination), in small
   batches. ``schedules.next_free_at`` (see ``next_free``) prunes schedules with nothing free
   before the window ends and is the index order for ``sort=next_available``. The walked
   indexes carry the columns the filters check (migration 0015), so most entries are checked
   without reading their rows.
2. For each new specialist met, its matching schedules are cut into slots for the window, and
   its sort key is the best one among schedules that have a fitting free slot. A schedule
   whose weekly hours never meet the days and hours asked (laid on a week in UTC,
   ``availability.may_start_in``) is known to have none without cutting. Coarser, the same
   holds in SQL: each schedule stores the three-hour blocks of a week in UTC where its slots
   may start (``schedules.start_blocks``, kept by every write of its hours and computed
   again when the time zone rules change: ``schedules.zone_rules``), the walked indexes
   carry them, and a walk with days or hours leaves out schedules whose blocks miss
   the ones asked (``Plan.asked_blocks``) before any is read. The profile filters (skills,
   languages, place) are answered in memory first (``profiles``: bit masks per value, valid
   while ``catalogue_state.profiles`` stays): when no specialist passes them the walk reads
   nothing, and when few do it reads their schedules, sorted, instead of the index.
3. A specialist is emitted once the walk has passed its key (nothing unseen can sort before
   it), so the order is exact even though keys are only known after slots are cut. The walk
   reads the index a slice at a time (the filters apply within the slice, so no query plan
   can turn into a scan of the catalogue) and stops when the page is full (plus one, to know
   there is more), or after ``MAX_EXAMINED`` specialists or ``MAX_SCANNED`` entries; then the
   page may be short (even empty, when matches are rare) and the cursor resumes the walk.

``sort=next_available`` orders by each result's ``next_available``: the soonest free slot
from now among its matched schedules (the slots shown are those fitting the days and hours).

Facets count specialists matching every filter except the free-slot check (a schedule whose
slots are longer than the hours asked is no match: ``Plan.longest_slot``), among the first
``FACET_ROWS`` entries of the walk (``facets.complete`` says whether that was all of them).
The cursor and the page size play no part in them, so every page of a search has the same
facets: the caller may pass those it already has (``agent_server.booking.cache`` does), and
the page is then found in about half the time.

Pages stay compact (10 results within 7,600 characters of compact JSON, so the tool result
with its receipt stays within 8,000): texts are shortened
(view_profile has them whole); slots are a ``{slot_id: local date and times}`` mapping under
the schedule whose price and currency they have (the slot_id holds the UTC start, so nothing
repeats it); facets are ``{value: count}`` mappings; a page still too long drops detail step
by step (``DETAIL_LEVELS``: shorter about, fewer skills and languages, then fewer slots).
Each JSON value costs a client that checks results against the output schema (the SDK's does)
a few microseconds, so the shape counts values as well as characters.

The cursor is the walk's position, tied to the query's filters; a cursor from another query
is refused. The service flushes, never commits (it refreshes stale ``next_free_at`` values;
the caller commits with the rest of the call).

The package, one concept per module, each step's interface in its docstring::

    text         normalize_skill, specialist_search_text: text as stored and matched
    query        SearchQuery: the filters, sort and page as given
    answer       SearchPage, SpecialistHit, Facets, FreeSlots: the answer's shape
    cursor       Position, encode_cursor, decode_cursor: the walk position as opaque text
    plan         Plan, make_plan: the query resolved against the clock (no database)
    sql          the statements a plan needs, built once per shape with bind parameters
    evaluation   evaluate: matching schedules cut into slots, each specialist's sort key
    walk         walk_page: the index read in order until the page is exact
    profiles     ProfileIndex, profile_index: who lists each skill, language and place
    facets       count_facets: the facet counts of a plan
    compact      DETAIL_LEVELS, compact_json: a page within its character budget
    specialists  search_specialists: the steps above, in order
    warm         warm_statements: the common shapes' statements compiled before serving
    profile      view_profile, ProfileView: a whole profile
"""

from agent_server.booking.search.answer import (
    Facets,
    FreeSlots,
    ScheduleHit,
    SearchPage,
    SpecialistHit,
    local_time_range,
)
from agent_server.booking.search.compact import DETAIL_LEVELS, PAGE_BUDGET_PER_RESULT, compact_json
from agent_server.booking.search.profile import ProfileSchedule, ProfileView, view_profile
from agent_server.booking.search.query import (
    DEFAULT_WINDOW_DAYS,
    MAX_DAYS_AHEAD,
    MAX_PRICE_BOUND,
    MAX_WINDOW_DAYS,
    CurrencyCode,
    Order,
    SearchQuery,
    SortBy,
)
from agent_server.booking.search.specialists import search_specialists
from agent_server.booking.search.text import normalize_skill, specialist_search_text

__all__ = [
    "DEFAULT_WINDOW_DAYS",
    "DETAIL_LEVELS",
    "MAX_DAYS_AHEAD",
    "MAX_PRICE_BOUND",
    "MAX_WINDOW_DAYS",
    "PAGE_BUDGET_PER_RESULT",
    "CurrencyCode",
    "Facets",
    "FreeSlots",
    "Order",
    "ProfileSchedule",
    "ProfileView",
    "ScheduleHit",
    "SearchPage",
    "SearchQuery",
    "SortBy",
    "SpecialistHit",
    "compact_json",
    "local_time_range",
    "normalize_skill",
    "search_specialists",
    "specialist_search_text",
    "view_profile",
]

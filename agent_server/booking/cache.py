"""Search pages and profiles kept in the process while the catalogue stays the same.

Both answers depend only on their arguments, the catalogue (specialists, schedules, bookings)
and the time. The database counts catalogue changes: triggers on those three tables add one
to ``catalogue_state.version`` in every transaction that changes them (migration 0007; on
PostgreSQL at commit, as deferred constraint triggers, so the counter row is locked last and
for a moment). Keeping ``schedules.next_free_at`` fresh is not a change: it is an index hint.

An answer is reused only for the same arguments, the same version (read in the caller's
transaction, so a change committed before the call is always seen) and the same minute: it is
computed as of the end of the minute it was asked in, so no slot it lists starts before the
minute is over. Every process keeps its own bounded cache per database (least recently used
entries leave first); the version check keeps them all exact.

A search's facets are kept the same way, by the search's ``fingerprint`` (its filters and
sort, not its cursor or page size): the next page of a search, or the same search with
another page size, counts no facets when an earlier page did in the same minute.
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from pydantic import BaseModel
from sqlalchemy import select

from agent_server.booking.models import CATALOGUE_ROW, CatalogueState
from agent_server.booking.search.answer import Facets, SearchPage
from agent_server.booking.search.compact import compact_json
from agent_server.booking.search.profile import ProfileView
from agent_server.booking.search.profile import view_profile as view_now
from agent_server.booking.search.query import SearchQuery
from agent_server.booking.search.specialists import search_specialists as search_now
from agent_server.kernel.store import Database, Direct, UnitOfWork, direct_rows

ENTRIES = 512
"""Answers one process keeps per database, at most."""
BUDGET = 2 * 1024 * 1024
"""The bytes of text those answers hold, at most (a 10-result page is about 10 KB of JSON
and 6 KB of text for a reader: ``Answer``); least recently used answers leave first."""
OTHER_BYTES = 1024
"""What an entry other than an ``Answer`` (a search's facets) counts against ``BUDGET``."""

M = TypeVar("M", bound=BaseModel)


class Answer(Generic[M]):
    """A cached answer, kept as text: its compact JSON, and what ``text`` renders for a
    reader, each made the first time it is asked for.

    The model itself is let go once it is serialised: the strings are a fifth of what the
    model and its JSON form take (a 10-result page: about 17 KB against about 100 KB), and
    a process keeps up to ``BUDGET`` bytes of them. Each ``as_json`` after the first parses the text
    again (tens of microseconds), so every caller gets a body of its own to change."""

    __slots__ = ("_compact", "_model", "_text", "_value")

    def __init__(self, value: M) -> None:
        self._value: M | None = value
        self._model: type[M] = type(value)
        self._compact: str | None = None
        self._text: str | None = None

    @property
    def value(self) -> M:
        """The answer as its model (read again from its JSON once it was let go)."""
        if self._value is not None:
            return self._value
        assert self._compact is not None
        return self._model.model_validate_json(self._compact)

    def text(self, render: Callable[[dict[str, Any]], str]) -> str:
        """The JSON form as ``render`` writes it for a reader, made the first time it is asked
        for (every caller of one answer renders it the same way)."""
        if self._text is None:
            self._text = render(self.as_json()[0])
        return self._text

    @property
    def nbytes(self) -> int:
        """The bytes its texts take now (none before it is first serialised)."""
        return sum(sys.getsizeof(t) for t in (self._compact, self._text) if t is not None)

    def as_json(self) -> tuple[dict[str, Any], str]:
        """``value.model_dump(mode="json")``, and that as compact JSON text."""
        if self._compact is not None:
            return json.loads(self._compact), self._compact
        assert self._value is not None
        body = self._value.model_dump(mode="json")
        self._compact = compact_json(body)
        self._value = None
        return body, self._compact


_VERSION = Direct(select(CatalogueState.version).where(CatalogueState.id == CATALOGUE_ROW))


class AnswerCache:
    """Answers by key, each valid for one catalogue version; least recently used leave first
    once there are more than ``entries`` or their texts take more than ``budget`` bytes.

    An answer's texts are made after it is stored (by its first caller, right away), so
    each is counted when the next one is stored, and weighed again if it is stored anew."""

    def __init__(self, entries: int = ENTRIES, budget: int = BUDGET) -> None:
        self.entries = entries
        self.budget = budget
        # Each entry: its catalogue version, the answer, and the bytes counted for it.
        self._answers: OrderedDict[Hashable, tuple[int, object, int]] = OrderedDict()
        self._uncounted: Hashable | None = None
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, version: int) -> object | None:
        found = self._answers.get(key)
        if found is None or found[0] != version:
            self.misses += 1
            return None
        self._answers.move_to_end(key)
        self.hits += 1
        return found[1]

    def put(self, key: Hashable, version: int, answer: object) -> None:
        self._count_last()
        replaced = self._answers.pop(key, None)
        if replaced is not None:
            self.bytes -= replaced[2]
        self._answers[key] = (version, answer, 0)
        self._uncounted = key
        while len(self._answers) > self.entries or (
            self.bytes > self.budget and len(self._answers) > 1
        ):
            self.bytes -= self._answers.popitem(last=False)[1][2]

    def _count_last(self) -> None:
        key, self._uncounted = self._uncounted, None
        found = self._answers.get(key) if key is not None else None
        if found is not None:
            version, kept, _ = found
            size = kept.nbytes if isinstance(kept, Answer) else OTHER_BYTES
            self._answers[key] = (version, kept, size)  # in place: its order stays
            self.bytes += size


_CACHES: WeakKeyDictionary[Database, AnswerCache] = WeakKeyDictionary()


def answer_cache(db: Database) -> AnswerCache:
    """This process's cache for ``db``."""
    cache = _CACHES.get(db)
    if cache is None:
        cache = _CACHES[db] = AnswerCache()
    return cache


async def catalogue_version(uow: UnitOfWork) -> int | None:
    """The catalogue's change count as this transaction sees it (None: no counter row)."""
    rows = await direct_rows(uow, _VERSION, {})
    return None if not rows or rows[0].version is None else int(rows[0].version)


def minute_end(now: datetime) -> datetime:
    """The end of the minute ``now`` is in (``now`` itself on a whole minute)."""
    start = now.replace(second=0, microsecond=0)
    return start if start == now else start + timedelta(minutes=1)


class _Kept:
    """What is kept for one catalogue version and one minute: looks up and stores values by
    key. Without a counter it keeps nothing."""

    def __init__(self, cache: AnswerCache | None, version: int, as_of: datetime) -> None:
        self._cache = cache
        self._version = version
        self.as_of = as_of

    def get(self, key: tuple[Hashable, ...]) -> object | None:
        if self._cache is None:
            return None
        return self._cache.get((*key, self.as_of), self._version)

    def put(self, key: tuple[Hashable, ...], value: object) -> None:
        if self._cache is not None:
            self._cache.put((*key, self.as_of), self._version, value)


async def _cached(
    uow: UnitOfWork,
    key: tuple[Hashable, ...],
    now: datetime,
    compute: Callable[[_Kept], Awaitable[M]],
) -> Answer[M]:
    as_of = minute_end(now)
    version = await catalogue_version(uow)
    if version is None:  # no counter: nothing tells when an answer goes stale
        return Answer(await compute(_Kept(None, 0, as_of)))
    kept = _Kept(answer_cache(uow.db), version, as_of)
    found = kept.get(key)
    if found is not None:
        return found  # type: ignore[return-value]
    answer = Answer(await compute(kept))
    kept.put(key, answer)
    return answer


async def search_specialists(
    uow: UnitOfWork, query: SearchQuery, *, now: datetime
) -> Answer[SearchPage]:
    """``search.search_specialists`` as of the end of ``now``'s minute, cached (see above).

    A page not asked for before still reuses its search's facets when another page of it
    (another cursor or page size) was found in the same minute on the same catalogue."""
    key = ("search", query.model_dump_json())

    async def compute(kept: _Kept) -> SearchPage:
        facets_key = ("facets", query.fingerprint())  # not needed when the page is kept
        known = kept.get(facets_key)
        page = await search_now(
            uow,
            query,
            now=kept.as_of,
            facets=known if isinstance(known, Facets) else None,
        )
        if known is None:
            kept.put(facets_key, page.facets)
        return page

    return await _cached(uow, key, now, compute)


async def view_profile(
    uow: UnitOfWork,
    specialist_id: int,
    *,
    now: datetime,
    window_days: int = 14,
    timezone: str = "UTC",
    reviews_cursor: str | None = None,
) -> Answer[ProfileView]:
    """``search.view_profile`` as of the end of ``now``'s minute, cached (see above)."""
    key = ("profile", specialist_id, window_days, timezone, reviews_cursor)
    return await _cached(
        uow,
        key,
        now,
        lambda kept: view_now(
            uow,
            specialist_id,
            now=kept.as_of,
            window_days=window_days,
            timezone=timezone,
            reviews_cursor=reviews_cursor,
        ),
    )

"""The profile index: which specialists list each skill, language, country and city, in memory.

A filter on a profile (skills, languages, place) is checked in SQL for every index entry the
walk reads, and a combination few specialists pass (two common skills and a language, say)
has the walk read thousands of entries to find a page, or none. The profile index answers
the combination at once: per value, a bit mask over the specialists (bit ``i`` is
``ids[i]``; a value few list keeps their ranks instead: ``Listing``), so the specialists
passing a plan's profile filters are a few ``&`` and ``|`` of masks
(``ProfileIndex.matching``). The walk then knows when nothing can match, and starts from the
matching specialists when they are few (``drives``), as it does for a rare skill. Facets
count skills from each specialist's list (``SkillLists``).

The index equals the database: it is built from ``specialist_skills``,
``specialist_languages`` and the specialists' ``country`` and ``lower(city)`` (folded by the
database, as the SQL filter folds it), and is used only while ``catalogue_state.profiles``
(migration 0018: every transaction that adds or removes a specialist or changes these columns
adds one) still reads the version it was built at. Bookings and schedules do not change it.
A process builds it on the first search that needs it after a change, at most once per
``REBUILD_SECONDS``; in between, searches take the walk without it (exact, only slower).
On 100,000 specialists it takes about 5 MiB and under a second to build.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from math import isqrt
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import String, cast, func, literal_column, select

from agent_server.booking.models import CATALOGUE_ROW, CatalogueState
from agent_server.booking.search.query import SearchQuery
from agent_server.booking.search.sql import LANGUAGES, SKILLS, SPECIALISTS
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database, Direct, UnitOfWork, direct_rows

log = get_logger(__name__)

REBUILD_SECONDS = 30.0
"""How often one process builds the index again at most, while profiles keep changing."""
MIN_DRIVE = 400
"""A walk starts from the matching specialists when they are at most this many, or at most
``sqrt(DRIVE_FACTOR * specialists)`` on a larger catalogue: where reading them all costs
about what walking the sort index to a page's matches would."""
DRIVE_FACTOR = 16

_VERSION = Direct(select(CatalogueState.profiles).where(CatalogueState.id == CATALOGUE_ROW))


def _grouped(value: Any, sid: Any, sqlite: bool) -> Direct:
    """``(value, "id,id,...")`` rows: the specialists of each value, as one text (one row
    per value reads far faster than one per pair)."""
    if sqlite:
        listed = func.group_concat(sid)  # "," between
    else:
        listed = func.string_agg(cast(sid, String()), literal_column("','"))
    return Direct(select(value, listed).group_by(value))


def _statements(sqlite: bool) -> tuple[Direct, Direct, Direct, Direct]:
    """The index's reads: countries, cities, skills, languages."""
    return (
        _grouped(SPECIALISTS.country, SPECIALISTS.id, sqlite),
        _grouped(func.lower(SPECIALISTS.city), SPECIALISTS.id, sqlite),
        _grouped(SKILLS.skill, SKILLS.specialist_id, sqlite),
        _grouped(LANGUAGES.language, LANGUAGES.specialist_id, sqlite),
    )


_READS = {sqlite: _statements(sqlite) for sqlite in (True, False)}


def profile_statements(sqlite: bool) -> tuple[Direct, ...]:
    """The statements the index runs (compiled ahead by ``warm``)."""
    return (_VERSION, *_READS[sqlite])


def has_profile_filters(query: SearchQuery) -> bool:
    """Whether ``query`` filters on what the index holds."""
    return bool(query.skills or query.languages or query.country or query.city)


@dataclass(frozen=True, slots=True)
class ProfileIndex:
    """The specialists listing each value (``Listing``), by their rank in ``ids`` (sorted),
    and each specialist's skills (``SkillLists``)."""

    version: int
    ids: array[int]
    skills: Listing
    languages: Listing
    countries: Listing
    cities: Listing
    skill_lists: SkillLists

    def skill_counts(self, specialist_ids: Iterable[int]) -> list[tuple[str, int]]:
        """How many of these specialists list each skill (those none lists left out), as
        ``GROUP BY skill`` over their ``specialist_skills`` rows counts."""
        lists, held = self.skill_lists, self.ids
        starts, codes = lists.starts, lists.codes
        size = len(held)
        base = held[0] if size else 0
        if size and held[-1] - base + 1 == size:  # dense: the rank of id base + i is i
            ranks = [sid - base for sid in specialist_ids if 0 <= sid - base < size]
        else:
            ranks = []
            for sid in specialist_ids:
                i = bisect_left(held, sid)
                if i < size and held[i] == sid:
                    ranks.append(i)
        counted = Counter(chain.from_iterable(codes[starts[i] : starts[i + 1]] for i in ranks))
        return [(lists.names[code], count) for code, count in counted.items()]

    @property
    def drives(self) -> int:
        """The most matching specialists a walk starts from (see ``MIN_DRIVE``)."""
        return max(MIN_DRIVE, isqrt(DRIVE_FACTOR * len(self.ids)))

    def matching(self, query: SearchQuery) -> int:
        """The mask of the specialists passing ``query``'s profile filters, as SQL checks
        them: every skill, any of the languages, the country, the city (case folded)."""
        size = len(self.ids)
        mask = -1  # every specialist: -1 & m is m
        for skill in query.skills:
            mask &= _mask(self.skills, skill, size)
        if query.languages:
            spoken = 0
            for language in query.languages:
                spoken |= _mask(self.languages, language, size)
            mask &= spoken
        if query.country is not None:
            mask &= _mask(self.countries, query.country, size)
        if query.city is not None:
            mask &= _mask(self.cities, query.city.lower(), size)
        return mask

    def ids_of(self, mask: int) -> list[int]:
        """The specialist ids in ``mask``, ascending."""
        if mask <= 0:
            return [] if mask == 0 else list(self.ids)
        bits = bin(mask)[:1:-1]  # bit i at index i
        out: list[int] = []
        i = bits.find("1")
        while i >= 0:
            out.append(self.ids[i])
            i = bits.find("1", i + 1)
        return out


def _ids(listed: str) -> list[int]:
    return [int(i) for i in listed.split(",")]


def _rank_table(ids: array[int]) -> dict[int, int] | None:
    """Each id's rank in ``ids``; None when the ids run without gaps (the rank of id
    ``ids[0] + i`` is ``i``)."""
    if not ids or ids[-1] - ids[0] + 1 == len(ids):
        return None
    return {sid: i for i, sid in enumerate(ids)}


def _ranked(
    groups: Iterable[Sequence[Any]], ids: array[int], rank: dict[int, int] | None
) -> list[tuple[str, array[int]]]:
    """``(value, "id,id,...")`` rows as ``(value, ranks)``: where in ``ids`` each id is
    (``rank``: ``_rank_table(ids)``)."""
    base = ids[0] if ids else 0
    out: list[tuple[str, array[int]]] = []
    for value, listed in groups:
        if value is None or not listed:
            continue
        found = (sid - base if rank is None else rank.get(sid, -1) for sid in _ids(listed))
        # An id not among those read cannot occur at one version; it is left out.
        out.append((value, array("i", (i for i in found if 0 <= i < len(ids)))))
    return out


Listing = dict[str, "int | array[int]"]
"""The specialists listing each value: a bit mask over the ranks, or for a value few list
(under one in ``SPARSE``) their ranks, made a mask when a search asks for it. So a
catalogue with thousands of rare values (skills typed freely) keeps about four bytes per
specialist and value, not a mask each."""
SPARSE = 64


def _listing(ranked: list[tuple[str, array[int]]], size: int) -> Listing:
    """Each value's specialists, as a mask or (few of them) as their ranks."""
    return {
        value: ranks if len(ranks) * SPARSE < size else _as_mask(ranks, size)
        for value, ranks in ranked
    }


def _as_mask(ranks: Iterable[int], size: int) -> int:
    bits = bytearray((size + 7) // 8)
    for i in ranks:
        bits[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(bits, "little")


def _mask(listing: Listing, value: str, size: int) -> int:
    found = listing.get(value, 0)
    return found if isinstance(found, int) else _as_mask(found, size)


@dataclass(frozen=True, slots=True)
class SkillLists:
    """Each specialist's skills, by rank: ``names[c]`` for ``c`` in
    ``codes[starts[i]:starts[i + 1]]``; for counting the skills of a few hundred of them."""

    names: tuple[str, ...]
    starts: array[int]
    codes: array[int]


def _skill_lists(ranked: list[tuple[str, array[int]]], size: int) -> SkillLists:
    counts = [0] * (size + 1)
    for _, ranks in ranked:
        for i in ranks:
            counts[i + 1] += 1
    for i in range(size):
        counts[i + 1] += counts[i]
    starts = array("I", counts)
    codes = array("H" if len(ranked) < 2**16 else "I")
    codes.frombytes(bytes(codes.itemsize * counts[size]))
    fill = counts[:size]
    for code, (_, ranks) in enumerate(ranked):
        for i in ranks:
            codes[fill[i]] = code
            fill[i] += 1
    return SkillLists(tuple(value for value, _ in ranked), starts, codes)


async def _profiles_version(uow: UnitOfWork) -> int | None:
    rows = await direct_rows(uow, _VERSION, {})
    return None if not rows or rows[0][0] is None else int(rows[0][0])


async def build_index(uow: UnitOfWork) -> ProfileIndex | None:
    """The index as ``uow`` reads the catalogue; None when profiles changed while it was read
    (on PostgreSQL each statement may see later commits) or there is no counter."""
    version = await _profiles_version(uow)
    if version is None:
        return None
    by_countries, by_cities, by_skills, by_languages = _READS[uow.db.is_sqlite]
    countries = await direct_rows(uow, by_countries, {})
    ids = array("q", sorted(sid for _, listed in countries if listed for sid in _ids(listed)))
    size = len(ids)
    rank = _rank_table(ids)  # built once for the four reads
    by_country = _listing(_ranked(countries, ids, rank), size)
    del countries
    cities = _listing(_ranked(await direct_rows(uow, by_cities, {}), ids, rank), size)
    ranked_skills = _ranked(await direct_rows(uow, by_skills, {}), ids, rank)
    skills, lists = _listing(ranked_skills, size), _skill_lists(ranked_skills, size)
    del ranked_skills
    languages = _listing(_ranked(await direct_rows(uow, by_languages, {}), ids, rank), size)
    del rank
    if await _profiles_version(uow) != version:
        return None
    return ProfileIndex(version, ids, skills, languages, by_country, cities, lists)


@dataclass
class _Kept:
    index: ProfileIndex | None = None
    built_at: float = float("-inf")
    building: asyncio.Task[None] | None = None


_KEPT: WeakKeyDictionary[Database, _Kept] = WeakKeyDictionary()


async def profile_index(uow: UnitOfWork) -> ProfileIndex | None:
    """The index at the profiles version ``uow`` reads; None when this process has none for
    it (search without it).

    A process that never built one builds it now. One whose index is out of date builds the
    new one in the background (a search does not wait for it), at most once per
    ``REBUILD_SECONDS``; the old one is let go at once, since it is no longer exact."""
    kept = _KEPT.get(uow.db)
    if kept is None:
        kept = _KEPT[uow.db] = _Kept()
    version = await _profiles_version(uow)
    if kept.index is not None and kept.index.version == version:
        return kept.index
    now = time.monotonic()
    if version is None or kept.building is not None or now - kept.built_at < REBUILD_SECONDS:
        return None
    first = kept.built_at == float("-inf")
    kept.built_at = now
    kept.index = None
    if first:
        kept.index = await build_index(uow)
        return kept.index
    kept.building = asyncio.get_running_loop().create_task(
        _rebuild(uow.db, kept), name="search.profile_index"
    )
    return None


async def _rebuild(db: Database, kept: _Kept) -> None:
    try:
        async with db.uow() as uow:
            kept.index = await build_index(uow)
    except Exception as exc:  # the next search after REBUILD_SECONDS tries again
        log.warning("search.profile_index_not_built", error=type(exc).__name__)
    finally:
        kept.building = None


async def index_settled(db: Database) -> None:
    """Wait for a background build of ``db``'s index, if one is under way."""
    kept = _KEPT.get(db)
    if kept is not None and kept.building is not None:
        await asyncio.shield(kept.building)


async def warm_profile_index(db: Database) -> None:
    """Build the index before serving, so no agent's search waits for it. A failure (the
    database not answering yet) is logged: the first search that needs it builds it."""
    try:
        async with db.uow() as uow:
            await profile_index(uow)
    except Exception as exc:
        log.warning("search.profile_index_not_built", error=type(exc).__name__)

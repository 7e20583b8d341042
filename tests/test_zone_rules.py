"""The schedules' week blocks follow the time zone rules the server reads: blocks computed
by other rules (a tzdata release that moved a zone's offsets) are computed again as a server
starts, or by ``agent-server db refresh-blocks``, and search finds the hours again."""

from __future__ import annotations

import asyncio
import shutil
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import select, update
from test_schedules import GOOD, make_specialist, publish, stored
from typer.testing import CliRunner

from agent_server.booking.availability import ScheduleSpec, blocks_of, start_blocks
from agent_server.booking.models import CATALOGUE_ROW, CatalogueState, Schedule
from agent_server.booking.schedules import ScheduleOwner, parse_schedule_update, update_schedule
from agent_server.booking.schedules.zone_rules import refresh_start_blocks, zone_rules_fingerprint
from agent_server.booking.search import SearchQuery, search_specialists
from agent_server.cli import app
from agent_server.kernel.config import Settings, get_settings
from agent_server.kernel.store import Database, make_engine
from agent_server.maintenance import check_zone_rules
from agent_server.runtime import Runtime

EVENING = {"days_of_week": ["mon"], "hours_from": "18:00", "hours_to": "19:00"}


async def _found(db: Database, specialist: int, **asked: Any) -> bool:
    query = {"timezone": "Europe/Berlin", "date_from": "2026-03-07", **asked}
    async with db.uow() as uow:
        page = await search_specialists(uow, SearchQuery.parse(query), now=db.clock.now())
        await uow.commit()
    return [item.id for item in page.items] == [specialist]


async def _as_if_other_rules(db: Database, schedule_id: int, blocks: int) -> None:
    """The blocks another release of the rules gave, and that release's digest."""
    async with db.uow() as uow:
        await uow.session.execute(
            update(Schedule).where(Schedule.id == schedule_id).values(start_blocks=blocks)
        )
        await uow.session.execute(
            update(CatalogueState)
            .where(CatalogueState.id == CATALOGUE_ROW)
            .values(zone_rules="the rules of another tzdata release")
        )
        await uow.commit()


async def _stored_rules(db: Database) -> str | None:
    async with db.uow() as uow:
        return await uow.session.scalar(
            select(CatalogueState.zone_rules).where(CatalogueState.id == CATALOGUE_ROW)
        )


async def _evening_schedule(db: Database) -> tuple[int, Schedule]:
    specialist = await make_specialist(db)
    weekly = {"mon": [["18:00", "19:00"]]}
    schedule = await publish(
        db, ScheduleOwner.specialist(specialist), {**GOOD, "weekly_hours": weekly}
    )
    return specialist, schedule


async def test_blocks_of_other_zone_rules_are_computed_again_and_search_finds_the_hours(
    db: Database,
) -> None:
    specialist, schedule = await _evening_schedule(db)
    assert await _found(db, specialist, **EVENING)
    # Other rules put the zone's evening elsewhere in the week: search skips the schedule.
    morning_utc = blocks_of([(3 * 60, 4 * 60)])  # Monday 03:00-04:00 UTC
    await _as_if_other_rules(db, schedule.id, morning_utc)
    assert not await _found(db, specialist, **EVENING)

    refreshed = await refresh_start_blocks(db)

    assert (refreshed.checked, refreshed.changed) == (1, 1)
    row = await stored(db, schedule.id)
    assert row.start_blocks == start_blocks(ScheduleSpec.from_row(row)) != morning_utc
    assert await _stored_rules(db) == zone_rules_fingerprint() == refreshed.fingerprint
    assert await _found(db, specialist, **EVENING)  # the cached page was not served
    again = await refresh_start_blocks(db)
    assert (again.checked, again.changed) == (0, 0)  # the same rules: nothing to check
    forced = await refresh_start_blocks(db, force=True)
    assert (forced.checked, forced.changed) == (1, 0)


async def test_a_server_starting_checks_the_blocks_against_its_zone_rules(
    db: Database, database_url: str
) -> None:
    specialist, schedule = await _evening_schedule(db)
    await _as_if_other_rules(db, schedule.id, blocks_of([(3 * 60, 4 * 60)]))
    runtime = Runtime(settings=Settings(database_url=database_url), db=db)

    await check_zone_rules(runtime)

    assert await _stored_rules(db) == zone_rules_fingerprint()
    assert await _found(db, specialist, **EVENING)


async def _cli(database_url: str, *args: str) -> Result:
    env = {"AGENT_SERVER_DATABASE_URL": database_url, "AGENT_SERVER_LOG_LEVEL": "WARNING"}

    def invoke() -> Result:
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, list(args), env=env)
        finally:
            get_settings.cache_clear()

    return await asyncio.to_thread(invoke)


async def test_the_refresh_blocks_command_computes_them_again_once(
    db: Database, database_url: str
) -> None:
    specialist, schedule = await _evening_schedule(db)
    await _as_if_other_rules(db, schedule.id, blocks_of([(3 * 60, 4 * 60)]))

    first = await _cli(database_url, "db", "refresh-blocks")
    second = await _cli(database_url, "db", "refresh-blocks")

    assert (first.exit_code, second.exit_code) == (0, 0), first.output + second.output
    assert first.output.splitlines()[-1] == "checked 1 schedules; changed the week blocks of 1"
    assert second.output.splitlines()[-1] == (
        "week blocks already follow this machine's time zone rules"
    )
    assert await _found(db, specialist, **EVENING)


@pytest.fixture
def zone_files(tmp_path: Path) -> Iterator[Path]:
    """The rules read from a folder of this test's own (Europe/Berlin only; the other zones
    from the tzdata package)."""
    (tmp_path / "Europe").mkdir()
    shutil.copy(Path(zoneinfo.TZPATH[0]) / "Europe" / "Berlin", tmp_path / "Europe" / "Berlin")
    zoneinfo.reset_tzpath([str(tmp_path)])
    zone_rules_fingerprint.cache_clear()
    try:
        yield tmp_path
    finally:
        zoneinfo.reset_tzpath()
        zone_rules_fingerprint.cache_clear()


def test_the_digest_of_the_rules_changes_with_any_zones_rules(zone_files: Path) -> None:
    berlin = zone_files / "Europe" / "Berlin"
    before = zone_rules_fingerprint()
    assert zone_rules_fingerprint() == before
    berlin.write_bytes(berlin.read_bytes() + b"\n")
    zone_rules_fingerprint.cache_clear()  # a process reads the rules once
    assert zone_rules_fingerprint() != before


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_schedule_changed_during_a_refresh_keeps_the_blocks_of_its_new_hours(
    db: Database, database_url: str
) -> None:
    """A refresh meets a schedule another server is changing: it waits for the change and
    computes the blocks of the new hours, never writing those of the old ones over them."""
    specialist, schedule = await _evening_schedule(db)
    # Stale blocks, so the refresh has something to write.
    await _as_if_other_rules(db, schedule.id, blocks_of([(3 * 60, 4 * 60)]))
    owner = ScheduleOwner.specialist(specialist)
    other = Database(make_engine(database_url), db.clock)
    try:
        async with db.uow() as changing:
            await update_schedule(
                changing,
                owner,
                schedule.id,
                parse_schedule_update({"weekly_hours": {"sat": [["10:00", "11:00"]]}}),
            )
            refresh = asyncio.create_task(refresh_start_blocks(other))
            await asyncio.sleep(0.5)
            assert not refresh.done()  # it waits for the change to commit
            await changing.commit()
        refreshed = await asyncio.wait_for(refresh, timeout=30)
    finally:
        await other.dispose()
    assert refreshed.checked == 1
    row = await stored(db, schedule.id)
    assert row.weekly_hours == {"sat": [["10:00", "11:00"]]}
    assert row.start_blocks == start_blocks(ScheduleSpec.from_row(row))
    saturday = {"days_of_week": ["sat"], "hours_from": "10:00", "hours_to": "11:00"}
    assert await _found(db, specialist, **saturday)

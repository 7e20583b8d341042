"""Webhook delivery against a real HTTP receiver on 127.0.0.1: signatures, retries, crashes,
several workers, refused addresses, and the delivery log on REST."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from accounts_support import Api, api_for, bearer
from events_support import (
    PEPPER,
    agent_with_callback,
    emit_one,
    event_row,
    outbox,
    verify_like_the_readme,
    worker_config,
)
from pydantic import SecretStr
from sqlalchemy import func, select, update
from webhook_receiver import Receiver

from agent_server.accounts.models import Agent
from agent_server.events.deliveries import list_deliveries
from agent_server.events.models import OutboxEvent, WebhookDelivery
from agent_server.events.signing import rotate_webhook_secret
from agent_server.events.worker import DeliveryWorker
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database, make_engine


async def rotate(db: Database, agent_id: int) -> str:
    async with db.uow() as uow:
        secret = await rotate_webhook_secret(uow, PEPPER, agent_id)
        await uow.commit()
    return secret


async def deliveries_of(db: Database, agent_id: int) -> list[WebhookDelivery]:
    async with db.uow() as uow:
        rows = await uow.session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.agent_id == agent_id)
            .order_by(WebhookDelivery.id)
        )
        found = list(rows.scalars())
        await uow.commit()
    return found


async def test_a_delivery_is_signed_so_the_documented_recipe_verifies_it(db: Database) -> None:
    with Receiver() as receiver:
        agent = await agent_with_callback(db, receiver.url)
        old_secret = await rotate(db, agent)
        secret = await rotate(db, agent)
        event_id = await emit_one(db, agent, "booking.created", {"booking": {"id": 7}})

        assert await DeliveryWorker(db, worker_config()).run_once() == 1

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    header = request.headers["x-agent-server-signature"]
    assert verify_like_the_readme(secret, header, request.body)
    assert not verify_like_the_readme(old_secret, header, request.body)
    assert not verify_like_the_readme(secret, header, request.body.replace(b"7", b"8"))
    assert request.path == "/hooks/agent"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-agent-server-event-id"] == event_id
    body = request.json()
    assert body["id"] == event_id
    assert body["event"] == "booking.created"
    assert body["agent_id"] == agent
    assert body["data"] == {"booking": {"id": 7}}

    row = await event_row(db, event_id)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)
    assert row.delivered_at == db.clock.now()
    log = await deliveries_of(db, agent)
    assert [(d.attempt, d.status_code, d.error) for d in log] == [(1, 200, None)]


async def test_a_named_host_is_called_at_its_checked_address_with_its_own_host_header(
    db: Database,
) -> None:
    with Receiver() as receiver:
        url = f"http://localhost:{receiver.port}/named?x=1"
        agent = await agent_with_callback(db, url)
        event_id = await emit_one(db, agent)
        assert await DeliveryWorker(db, worker_config()).run_once() == 1

    (request,) = receiver.requests
    assert request.path == "/named?x=1"
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert (await event_row(db, event_id)).status == "delivered"


async def test_a_failing_receiver_gets_exactly_three_attempts_then_the_event_failed(
    db: Database, clock: FakeClock
) -> None:
    worker = DeliveryWorker(db, worker_config(backoff_seconds=30))
    with Receiver(status=500) as receiver:
        agent = await agent_with_callback(db, receiver.url)
        event_id = await emit_one(db, agent)

        assert await worker.run_once() == 1
        first_failed_at = clock.now()
        row = await event_row(db, event_id)
        assert row.status == "pending" and row.attempts == 1
        # Backoff with jitter: 30 s stretched by a factor in [1, 1.5).
        assert timedelta(seconds=30) <= row.next_attempt_at - first_failed_at
        assert row.next_attempt_at - first_failed_at < timedelta(seconds=45)
        assert await worker.run_once() == 0  # not due yet

        clock.advance(timedelta(seconds=46))
        assert await worker.run_once() == 1
        row = await event_row(db, event_id)
        assert timedelta(seconds=60) <= row.next_attempt_at - clock.now() < timedelta(seconds=90)

        for _ in range(3):
            clock.advance(timedelta(minutes=10))
            await worker.run_once()

    assert len(receiver.requests) == 3
    assert receiver.event_ids() == {event_id: 3}
    attempts = [r.headers["x-agent-server-delivery-attempt"] for r in receiver.requests]
    assert attempts == ["1", "2", "3"]
    row = await event_row(db, event_id)
    assert (row.status, row.attempts, row.last_status_code) == ("failed", 3, 500)
    assert row.last_error == "HTTP 500 Internal Server Error"
    log = await deliveries_of(db, agent)
    assert [(d.attempt, d.status_code) for d in log] == [(1, 500), (2, 500), (3, 500)]


async def test_a_worker_stopped_mid_delivery_leaves_the_event_to_the_next_after_its_lease(
    db: Database, clock: FakeClock
) -> None:
    config = worker_config(lease_seconds=60)
    with Receiver(hold=True) as receiver:
        agent = await agent_with_callback(db, receiver.url)
        event_id = await emit_one(db, agent)

        first = asyncio.create_task(DeliveryWorker(db, config).run_once())
        await asyncio.to_thread(receiver.wait_for, 1)  # claimed, committed, in flight
        first.cancel()
        with suppress(asyncio.CancelledError):
            await first
        receiver.release()

        row = await event_row(db, event_id)
        assert row.status == "pending" and row.claimed_until is not None
        restarted = DeliveryWorker(db, config)
        assert await restarted.run_once() == 0  # the lease still holds
        clock.advance(timedelta(seconds=61))
        assert await restarted.run_once() == 1

    assert receiver.event_ids() == {event_id: 2}
    row = await event_row(db, event_id)
    assert (row.status, row.attempts) == ("delivered", 2)


async def test_a_killed_worker_process_delivers_after_restart(
    db: Database, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    with Receiver(hold=True) as receiver:
        agent = await agent_with_callback(db, receiver.url)
        event_id = await emit_one(db, agent)
        env = {
            **os.environ,
            "AGENT_SERVER_DATABASE_URL": database_url,
            "AGENT_SERVER_SECRET_PEPPER": PEPPER,
            "AGENT_SERVER_WEBHOOK_ALLOW_PRIVATE": "true",
            "AGENT_SERVER_LOG_FORMAT": "json",
        }
        command = [str(Path(sys.executable).parent / "agent-server"), "worker"]
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            await asyncio.to_thread(receiver.wait_for, 1, 60)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        assert process.returncode == -signal.SIGKILL
        receiver.release()

        row = await event_row(db, event_id)
        assert row.status == "pending" and row.attempts == 1 and row.claimed_until is not None
        # The killed process leased the event on the real clock: restart after it ran out.
        clock.set(datetime.now(UTC) + timedelta(minutes=2))
        assert await DeliveryWorker(db, worker_config()).run_once() == 1

    assert receiver.event_ids() == {event_id: 2}
    row = await event_row(db, event_id)
    assert (row.status, row.attempts) == ("delivered", 2)


@pytest.fixture
async def second_db(database_url: str, clock: FakeClock) -> AsyncIterator[Database]:
    """Another engine on the same database, as a second worker process would have."""
    other = Database(make_engine(database_url), clock)
    yield other
    await other.dispose()


async def test_two_workers_deliver_each_event_exactly_once(
    db: Database, second_db: Database
) -> None:
    n = 40
    with Receiver(delay=0.005) as receiver:
        agents = [await agent_with_callback(db, receiver.url, f"a{i}") for i in range(4)]
        async with db.uow() as uow:
            from agent_server.events import emit

            ids = [
                await emit(uow, type="booking.created", agent_id=agents[i % 4], data={"i": i})
                for i in range(n)
            ]
            await uow.commit()

        async def drain(worker: DeliveryWorker) -> int:
            claimed = 0
            while True:
                got = await worker.run_once()
                claimed += got
                if got:
                    continue
                async with worker.db.uow() as uow:
                    left = (
                        await uow.session.execute(
                            select(func.count(OutboxEvent.id)).where(
                                OutboxEvent.status == "pending"
                            )
                        )
                    ).scalar_one()
                if left == 0:
                    return claimed
                await asyncio.sleep(0.01)

        config = worker_config(batch_size=3)
        counts = await asyncio.gather(
            drain(DeliveryWorker(db, config)), drain(DeliveryWorker(second_db, config))
        )

    assert sum(counts) == n
    assert all(c > 0 for c in counts), counts  # both took part
    assert receiver.event_ids() == dict.fromkeys(ids, 1)
    rows = await outbox(db)
    assert {(r.status, r.attempts) for r in rows} == {("delivered", 1)}


async def test_a_callback_on_a_private_address_is_refused_at_delivery(
    db: Database, clock: FakeClock
) -> None:
    worker = DeliveryWorker(db, worker_config(allow_private=False))
    with Receiver() as receiver:
        # As if the name had been re-pointed after it was checked (DNS rebinding).
        agent = await agent_with_callback(db, receiver.url)
        event_id = await emit_one(db, agent)
        for _ in range(4):
            await worker.run_once()
            clock.advance(timedelta(hours=1))

    assert receiver.requests == []
    row = await event_row(db, event_id)
    assert (row.status, row.attempts) == ("failed", 3)
    assert row.last_error is not None and "loopback" in row.last_error
    log = await deliveries_of(db, agent)
    assert [d.status_code for d in log] == [None, None, None]


async def test_an_event_for_an_agent_without_callback_url_is_skipped(db: Database) -> None:
    agent = await agent_with_callback(db, None)
    event_id = await emit_one(db, agent)
    assert await DeliveryWorker(db, worker_config()).run_once() == 0
    row = await event_row(db, event_id)
    assert (row.status, row.attempts) == ("skipped", 0)
    assert await deliveries_of(db, agent) == []


# --- REST -----------------------------------------------------------------------------------


@pytest.fixture
async def api(database_url: str, clock: FakeClock) -> AsyncIterator[Api]:
    async with api_for(database_url, clock, None, secret_pepper=SecretStr(PEPPER)) as api:
        yield api


REFUSED = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "http://0.0.0.0/hook",
    "http://[::ffff:127.0.0.1]/hook",
]


async def test_setting_a_private_callback_url_is_a_validation_error(api: Api) -> None:
    agent_id, key = await api.signup("hooks@example.com", verify=False)
    for url in REFUSED:
        response = await api.client.patch(
            "/api/agent/me", json={"callback_url": url}, headers=bearer(key)
        )
        assert response.status_code == 422, (url, response.text)
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert [f["field"] for f in error["details"]["fields"]] == ["callback_url"], url
    registered = await api.register("other@example.com", callback_url=REFUSED[0])
    assert registered.status_code == 422
    assert registered.json()["error"]["details"]["fields"][0]["field"] == "callback_url"

    async with api.runtime.db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None and agent.callback_url is None
    public = await api.client.patch(
        "/api/agent/me", json={"callback_url": "https://93.184.215.14/hook"}, headers=bearer(key)
    )
    assert public.status_code == 200, public.text
    assert public.json()["agent"]["callback_url"] == "https://93.184.215.14/hook"


async def test_private_callback_urls_are_accepted_when_the_operator_allows_them(
    database_url: str, clock: FakeClock
) -> None:
    async with api_for(database_url, clock, None, webhook_allow_private=True) as api:
        _, key = await api.signup("dev@example.com", verify=False)
        response = await api.client.patch(
            "/api/agent/me", json={"callback_url": REFUSED[0]}, headers=bearer(key)
        )
        assert response.status_code == 200, response.text


async def test_the_secret_is_shown_once_per_rotation_and_the_log_is_on_rest(
    api: Api, clock: FakeClock
) -> None:
    agent_id, key = await api.signup("log@example.com", verify=False)
    assert (await api.client.post("/api/agent/webhook-secret")).status_code == 401
    first = await api.client.post("/api/agent/webhook-secret", headers=bearer(key))
    second = await api.client.post("/api/agent/webhook-secret", headers=bearer(key))
    assert first.status_code == second.status_code == 200
    secret = second.json()["webhook_secret"]
    assert secret.startswith("whsec_") and secret != first.json()["webhook_secret"]
    assert second.json()["signature_header"] == "X-Agent-Server-Signature"

    db = api.runtime.db
    with Receiver(status=503) as failing, Receiver() as receiver:
        async with db.uow() as uow:
            await uow.session.execute(
                update(Agent).where(Agent.id == agent_id).values(callback_url=failing.url)
            )
            await uow.commit()
        failed_id = await emit_one(db, agent_id, "deposit.confirmed", {"amount": "25"})
        await DeliveryWorker(db, worker_config()).run_once()
        async with db.uow() as uow:
            await uow.session.execute(
                update(Agent).where(Agent.id == agent_id).values(callback_url=receiver.url)
            )
            await uow.commit()
        clock.advance(timedelta(minutes=5))
        delivered_id = await emit_one(db, agent_id, "booking.created", {"booking": {"id": 1}})
        await DeliveryWorker(db, worker_config()).run_once()

    assert receiver.event_ids() == {failed_id: 1, delivered_id: 1}
    request = next(r for r in receiver.requests if r.json()["id"] == delivered_id)
    assert verify_like_the_readme(secret, request.headers["x-agent-server-signature"], request.body)

    response = await api.client.get("/api/agent/webhooks/deliveries", headers=bearer(key))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == 2 and page["next_cursor"] is None
    newest, oldest = page["deliveries"]
    assert (newest["event_id"], newest["event"], newest["status"]) == (
        delivered_id,
        "booking.created",
        "delivered",
    )
    assert [a["status_code"] for a in newest["log"]] == [200]
    assert (oldest["event_id"], oldest["status"], oldest["attempts"]) == (failed_id, "delivered", 2)
    assert [a["status_code"] for a in oldest["log"]] == [503, 200]
    assert oldest["log"][0]["error"] == "HTTP 503 Service Unavailable"

    first = await api.client.get(
        "/api/agent/webhooks/deliveries", params={"limit": 1}, headers=bearer(key)
    )
    one = await api.client.get(
        "/api/agent/webhooks/deliveries",
        params={"limit": 1, "cursor": first.json()["next_cursor"]},
        headers=bearer(key),
    )
    assert [d["event_id"] for d in one.json()["deliveries"]] == [failed_id]
    only_failed = await api.client.get(
        "/api/agent/webhooks/deliveries", params={"status": "failed"}, headers=bearer(key)
    )
    assert only_failed.json()["total"] == 0
    bad = await api.client.get(
        "/api/agent/webhooks/deliveries", params={"limit": 0}, headers=bearer(key)
    )
    assert bad.status_code == 422


async def test_the_delivery_log_pages_by_cursor_and_new_events_shift_no_page(api: Api) -> None:
    agent_id, key = await api.signup("pages@example.com", verify=False)
    db = api.runtime.db
    for n in range(1, 6):
        await emit_one(db, agent_id, "booking.created", {"n": n})
    await emit_one(db, await agent_with_callback(db, None, "other"), "booking.created", {"n": 0})

    async def page(**params: Any) -> tuple[list[int], int, str | None]:
        reply = await api.client.get(
            "/api/agent/webhooks/deliveries", params=params, headers=bearer(key)
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        return [d["data"]["n"] for d in body["deliveries"]], body["total"], body["next_cursor"]

    first, total, cursor = await page(limit=2)
    assert (first, total) == ([5, 4], 5) and cursor
    # An event written between two pages is not shown again below, nor pushes one down.
    await emit_one(db, agent_id, "booking.created", {"n": 6})
    second, total, cursor = await page(limit=2, cursor=cursor)
    assert (second, total) == ([3, 2], 6) and cursor
    assert await page(limit=2, cursor=cursor) == ([1], 6, None)
    assert (await page(limit=1))[0] == [6]
    assert (await page(limit=100))[0] == [6, 5, 4, 3, 2, 1]
    # The cursor pages a filtered log the same way.
    pending, _, cursor = await page(limit=4, status="pending")
    assert pending == [6, 5, 4, 3]
    assert await page(limit=4, status="pending", cursor=cursor) == ([2, 1], 6, None)

    for params, field in (
        ({"cursor": "page-2"}, "cursor"),
        ({"cursor": "eyJiZWZvcmUiOiAwfQ"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
    ):
        bad = await api.client.get(
            "/api/agent/webhooks/deliveries", params=params, headers=bearer(key)
        )
        assert bad.status_code == 422, params
        error = bad.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"]["fields"][0]["field"] == field, error
        if field == "cursor":
            assert "next_cursor" in error["details"]["fields"][0]["message"]


async def test_listing_is_only_the_callers_own(db: Database) -> None:
    mine = await agent_with_callback(db, None, "mine")
    theirs = await agent_with_callback(db, None, "theirs")
    await emit_one(db, mine)
    await emit_one(db, theirs)
    await emit_one(db, theirs)
    async with db.uow() as uow:
        page = await list_deliveries(uow, mine)
    assert page.total == 1 and len(page.items) == 1
    assert json.dumps(page.items[0].payload) == '{"n": 1}'

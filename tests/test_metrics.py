"""``/metrics`` of a real ``agent-server serve`` after a scripted mix of calls: its counters
equal the database's own counts (tool calls by outcome against the usage table, charges
against the ledger's charge transactions, deposits and withdrawals by status, webhook
deliveries against the recorded attempts)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_support import CLI, call_ok, error_code, make_agent, start_serve
from prometheus_client.parser import text_string_to_metric_families
from smtp_sink import free_port
from sqlalchemy import func, select, update

from agent_server.accounts.models import Agent
from agent_server.events.models import OutboxEvent, OutboxStatus, WebhookDelivery
from agent_server.events.outbox import BALANCE_LOW, emit
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from billing.models import LedgerTransaction, TransactionKind, UsageRecord
from wallets.models import Deposit, DepositStatus
from wallets.withdrawal_models import Withdrawal


class _Receiver(BaseHTTPRequestHandler):
    """Accepts webhooks on /ok and refuses them on /down."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204 if self.path == "/ok" else 503)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    env.update(
        AGENT_SERVER_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
        AGENT_SERVER_START_WATCHERS="false",
        AGENT_SERVER_LOG_FORMAT="json",
        AGENT_SERVER_WEBHOOK_ALLOW_PRIVATE="true",
        AGENT_SERVER_WEBHOOK_MAX_ATTEMPTS="1",
        **extra,
    )
    return env


def _samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the exposition by name, keyed by its sorted labels."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _by(samples: dict[tuple[tuple[str, str], ...], float], label: str) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for labels, value in samples.items():
        totals[dict(labels)[label]] += value
    return {key: value for key, value in totals.items() if value}


async def test_metrics_equal_the_database_after_a_mix_of_calls(
    tmp_path: Path, receiver: str
) -> None:
    db_path = tmp_path / "agent_server.db"
    done = subprocess.run(
        [CLI, "db", "upgrade"], env=_env(db_path), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    settings = Settings(database_url=f"sqlite+aiosqlite:///{db_path}")
    db = Database(make_engine(settings.database_url))
    usdc_agent, usdc_key = await make_agent(db, settings, currency="USDC", funds=1_000_000)
    eth_agent, eth_key = await make_agent(db, settings, currency="ETH", funds=10**17)
    _, poor_key = await make_agent(db, settings, currency="USDC")
    async with db.uow() as uow:
        now = uow.clock.now()
        for agent, path in ((usdc_agent, "/ok"), (eth_agent, "/down")):
            await uow.session.execute(
                update(Agent).where(Agent.id == agent).values(callback_url=receiver + path)
            )
        for i, status in enumerate(
            [DepositStatus.PENDING, DepositStatus.PENDING, DepositStatus.CREDITED]
        ):
            uow.session.add(
                Deposit(
                    network="eip155:31337",
                    tx_hash=f"0x{i:064x}",
                    position=0,
                    agent_id=usdc_agent,
                    address="0x" + "ab" * 20,
                    currency="USDC",
                    amount=5_000_000,
                    block_number=i + 1,
                    block_hash=f"0x{i:064x}",
                    status=status.value,
                    seen_at=datetime.now(UTC),
                )
            )
        for agent in (usdc_agent, usdc_agent, eth_agent):
            await emit(uow, type=BALANCE_LOW, agent_id=agent, data={"at": now.isoformat()})
        await uow.commit()

    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_serve(_env(db_path, AGENT_SERVER_PORT=str(port)), port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        for key, calls in (
            (usdc_key, [("search-specialists", {})] * 3 + [("get-wallet", {})] * 2),
            (eth_key, [("search-specialists", {})] * 2),
        ):
            headers = {"Authorization": f"Bearer {key}"}
            async with (
                httpx.AsyncClient(headers=headers, timeout=30) as http,
                Client(streamable_http_client(f"{base}/mcp", http_client=http)) as mcp,
            ):
                for tool, arguments in calls:
                    await call_ok(mcp, tool, arguments)
                if key == usdc_key:  # refusals: bad input, nothing found
                    bad = await mcp.call_tool("view-profile", {"specialist_id": "nope"})
                    assert error_code(bad) in ("VALIDATION_ERROR", "NOT_FOUND")
        headers = {"Authorization": f"Bearer {poor_key}"}
        async with (
            httpx.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(f"{base}/mcp", http_client=http)) as mcp,
        ):
            poor = await mcp.call_tool("search-specialists", {})
            poor_code = error_code(poor)
        assert httpx.get(f"{base}/no-such-page", timeout=10).status_code == 404

        # The worker delivers the three events, once each (one attempt allowed).
        deadline = time.monotonic() + 60
        while True:
            async with db.uow() as uow:
                pending = await uow.session.scalar(
                    select(func.count())
                    .select_from(OutboxEvent)
                    .where(OutboxEvent.status == OutboxStatus.PENDING.value)
                )
            if not pending:
                break
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)

        scraped = httpx.get(f"{base}/metrics", timeout=10)
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        metrics = _samples(scraped.text)
    finally:
        proc.terminate()
        proc.wait(timeout=20)

    async with db.uow() as uow:
        usage = dict(
            (
                await uow.session.execute(
                    select(UsageRecord.tool, func.count()).group_by(UsageRecord.tool)
                )
            ).all()
        )
        charges = {
            currency: (count, amount)
            for currency, count, amount in await uow.session.execute(
                select(
                    LedgerTransaction.currency,
                    func.count(),
                    func.sum(LedgerTransaction.amount),
                )
                .where(LedgerTransaction.kind == TransactionKind.CHARGE.value)
                .group_by(LedgerTransaction.currency)
            )
        }
        deposits = {
            (currency, status): count
            for currency, status, count in await uow.session.execute(
                select(Deposit.currency, Deposit.status, func.count()).group_by(
                    Deposit.currency, Deposit.status
                )
            )
        }
        withdrawals = await uow.session.scalar(select(func.count()).select_from(Withdrawal))
        attempts = Counter(
            "delivered" if code is not None and 200 <= code < 300 else "failed"
            for code in await uow.session.scalars(select(WebhookDelivery.status_code))
        )
    await db.engine.dispose()

    calls = metrics["agent_server_tool_calls_total"]
    ok_by_tool = {
        dict(labels)["tool"]: value
        for labels, value in calls.items()
        if dict(labels)["outcome"] == "ok"
    }
    assert ok_by_tool == usage == {"search-specialists": 5, "get-wallet": 2}
    refused = {
        dict(labels)["outcome"]: value
        for labels, value in calls.items()
        if dict(labels)["outcome"] != "ok"
    }
    assert sum(refused.values()) == 2 and poor_code.lower() in refused, refused
    counted = metrics["agent_server_tool_call_duration_seconds_count"]
    assert _by(counted, "tool") == {"search-specialists": 6, "get-wallet": 2, "view-profile": 1}

    assert set(charges) == {"USDC", "ETH"}
    assert _by(metrics["agent_server_charges_total"], "currency") == {
        currency: count for currency, (count, _) in charges.items()
    }
    assert _by(metrics["agent_server_charged_base_units_total"], "currency") == {
        currency: amount for currency, (_, amount) in charges.items()
    }

    assert (
        {
            (dict(labels)["currency"], dict(labels)["status"]): value
            for labels, value in metrics["agent_server_deposits"].items()
        }
        == deposits
        == {("USDC", "pending"): 2, ("USDC", "credited"): 1}
    )
    assert sum(metrics.get("agent_server_withdrawals", {}).values()) == withdrawals == 0

    assert _by(metrics["agent_server_webhook_deliveries_total"], "result") == attempts
    # The three events emitted above and any balance.low the charges raised, each once.
    assert attempts["delivered"] >= 2 and attempts["failed"] >= 1, attempts

    requests = metrics["agent_server_http_requests_total"]
    assert _by(requests, "surface")["mcp"] >= 9
    not_found = {
        labels: value for labels, value in requests.items() if dict(labels)["status"] == "404"
    }
    assert _by(not_found, "surface") == {"dashboard": 1}
    pool = _by(metrics["agent_server_db_pool_connections"], "state")
    assert pool["size"] >= 1
    # What start-up left is frozen for the garbage collector (kernel.heap): the served
    # process's modules, models and warmed statements, a few hundred thousand objects.
    [frozen] = metrics["agent_server_heap_frozen_objects"].values()
    assert frozen > 100_000

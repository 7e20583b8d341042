"""A market for the provider-side tests: an agent publishing a schedule at 10 USDC a slot, an
agent booking it, and the ledger audit run after each path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from billing_support import audit_ledger
from mcp import Client
from mcp_support import call_ok, make_agent
from soak_audit import AuditReport, _bookings, _ledger, booking_consistency

from agent_server.booking.availability import make_slot_id
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime

USDC = 1_000_000
PRICE = 10 * USDC
FEE = 50_000  # book-slot's 0.05 USD in USDC base units
TUE_9 = datetime(2026, 3, 3, 9, tzinfo=UTC)  # 25 h after the test clock's start


def runtime_for(database_url: str, db: Database) -> Runtime:
    return Runtime(settings=Settings(database_url=database_url), db=db)


def client_for(runtime: Runtime, key: str) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key))


async def audited(db: Database) -> None:
    await audit_ledger(db)
    report = AuditReport()
    await _ledger(db, report)
    await _bookings(db, report)
    report.problems.extend(await booking_consistency(db))
    assert report.problems == []


async def wallet(client: Client) -> dict[str, Any]:
    return await call_ok(client, "get-wallet", {})


def usdc(view: dict[str, Any]) -> int:
    return int(next(w for w in view["wallets"] if w["currency"] == "USDC")["balance"]["amount"])


def earned(view: dict[str, Any]) -> tuple[int, int]:
    rows = [e for e in view["earnings"] if e["paid"]["currency"] == "USDC"]
    if not rows:
        return 0, 0
    return int(rows[0]["paid"]["amount"]), int(rows[0]["pending"]["amount"])


class Market:
    """A provider agent with a schedule at 10 USDC a slot, and a booker agent."""

    def __init__(self, runtime: Runtime, price: int = PRICE) -> None:
        self.runtime = runtime
        self.price = price

    async def open(self) -> Market:
        settings = self.runtime.settings
        _, self.provider_key = await make_agent(self.runtime.db, settings, funds=5 * USDC)
        _, self.booker_key = await make_agent(self.runtime.db, settings, funds=100 * USDC)
        weekly = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
        async with self.provider() as client:
            made = await call_ok(
                client,
                "create-schedule",
                {
                    "timezone": "UTC",
                    "weekly_hours": weekly,
                    "price_amount": self.price,
                    "price_currency": "USDC",
                    "slot_minutes": 60,
                    "private": False,
                    "auto_accept": False,
                    "idempotency_key": "sched-provider-1",
                },
            )
        self.schedule_id = int(made["schedule"]["id"])
        return self

    def provider(self) -> Client:
        return client_for(self.runtime, self.provider_key)

    def booker(self) -> Client:
        return client_for(self.runtime, self.booker_key)

    async def book(self, start: datetime = TUE_9, key: str = "book-000001") -> int:
        async with self.booker() as client:
            made = await call_ok(
                client,
                "book-slot",
                {"slot_id": make_slot_id(self.schedule_id, start), "idempotency_key": key},
            )
        assert made["booking"]["status"] == "pending"
        return int(made["booking"]["id"])

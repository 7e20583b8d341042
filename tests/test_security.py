"""Security: one agent can neither read nor change another's data, through any MCP tool or
any REST route.

The tools come from ``tools/list`` and the routes from ``/api/openapi.json``; each must have
a case below, so a tool or route added without one fails ``test_every_tool_and_route_has_a
_case``. Each case is agent A aiming at agent B's bookings, schedules, wallet, usage,
transactions, withdrawals and their addresses, spending limits, webhook secret, calendar token
and profile; the routes on bookings, withdrawals and spending limits also answer 401 without a
key. After every case:

* no response A got contains anything private of B's (email, deposit addresses, booking
  topic, private schedule label and description, call ids, event ids);
* every row B owns, in every table with an owner column, is exactly as before the case
  (so a table added later is covered without a new line here).

Secrets in logs across a whole flow: ``test_secrets_in_logs.py``. Verification-code guessing
stops after 5 wrong tries: ``test_accounts_signup.py::test_five_wrong_tries_lock_the_code``
(REST) and ``test_dashboard_signin.py::test_wrong_codes_use_up_five_tries_then_the_code_is
_locked`` (dashboard sign-in).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp_support import make_agent
from sqlalchemy import Table, select, update

from agent_server.accounts.models import Agent
from agent_server.app import create_app
from agent_server.booking.demo import load_demo_data
from agent_server.booking.schedules import get_availability
from agent_server.events.models import OutboxEvent
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.mcp.server import build_mcp_server
from agent_server.models import metadata
from agent_server.runtime import Runtime
from billing.models import UsageRecord
from wallets.models import DepositAddressRecord
from wallets.withdrawal_models import WithdrawalAddress

USDC = 1_000_000
OWNER_COLUMNS = ("agent_id", "booker_agent_id")
# Columns that change when someone merely reads the row (a public profile's "last read").
READ_STAMPS = {("agents", "last_accessed_at")}
REFUSED = {"FORBIDDEN", "NOT_FOUND"}
B_ADDRESS = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"  # only B withdraws to it
A_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@dataclass
class Other:
    """Agent B: what it owns, and the strings only it may see."""

    agent_id: int
    key: str
    email: str
    booking_id: int
    booking_slot: str
    booking_key: str
    booked_specialist: int
    private_schedule: int
    private_slot: str
    schedule_key: str
    withdrawal_id: str = ""
    withdrawal_address_id: int = 0
    markers: list[str] = field(default_factory=list)


@dataclass
class World:
    runtime: Runtime
    a_id: int
    a_key: str
    b: Other
    seen: list[str] = field(default_factory=list)  # every response A got, as text
    sent: list[str] = field(default_factory=list)  # what A sent (echoing it leaks nothing)
    a_client: Client | None = None
    api: httpx.AsyncClient | None = None

    async def tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A's call of an MCP tool; its structured result (errors included)."""
        assert self.a_client is not None
        self.sent.append(json.dumps(arguments))
        result = await self.a_client.call_tool(name, arguments)
        body = dict(result.structured_content or {})
        self.seen.append(json.dumps(body) + "".join(getattr(c, "text", "") for c in result.content))
        return body

    async def ok(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        body = await self.tool(name, arguments)
        assert "error" not in body, (name, body)
        return body

    async def refused(self, name: str, arguments: dict[str, Any], codes: set[str]) -> None:
        body = await self.tool(name, arguments)
        assert body.get("error", {}).get("code") in codes, (name, arguments, body)

    async def rest(
        self, method: str, path: str, *, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A's request to the REST API; with another ``key``, someone else's (not counted
        as what A saw)."""
        assert self.api is not None
        headers = {"Authorization": f"Bearer {key or self.a_key}"}
        response = await self.api.request(method, f"/api{path}", headers=headers, **kwargs)
        if key is None:
            self.sent.append(path + json.dumps(kwargs.get("json")) + str(kwargs.get("params")))
            self.seen.append(response.text)
        return response

    async def anonymous(self, method: str, path: str, **kwargs: Any) -> None:
        """The same request without any key is refused before it reaches anyone's data."""
        assert self.api is not None
        response = await self.api.request(method, f"/api{path}", **kwargs)
        assert response.status_code == 401, (method, path, response.text)


def _client(runtime: Runtime, key: str) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key))


async def _ok(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, (tool, result.structured_content)
    return dict(result.structured_content or {})


async def _free_slots(db: Database, schedule_id: int, viewer: int | None = None) -> list[str]:
    async with db.uow() as uow:
        now = uow.clock.now()
        free = await get_availability(
            uow, schedule_id, now, now + timedelta(days=14), viewer_agent_id=viewer
        )
        return [s.slot_id for s in free]


async def _make_other(runtime: Runtime) -> Other:
    """Agent B with a booking, a private schedule, usage, transactions, a webhook secret, a
    calendar token and events."""
    db = runtime.db
    b_id, b_key = await make_agent(db, runtime.settings, funds=1_000 * USDC)
    email = f"agent-b-{b_id}@private.example"
    async with db.uow() as uow:
        await uow.session.execute(update(Agent).where(Agent.id == b_id).values(email=email))
        await uow.commit()
    slots = await _free_slots(db, 1)
    async with _client(runtime, b_key) as b:
        topic = "topic-of-agent-b-7f3a"
        booked = await _ok(
            b,
            "book-slot",
            {"slot_id": slots[0], "idempotency_key": "b-booking-key-0001", "topic": topic},
        )
        label = "label-of-agent-b-9c1d"
        made = await _ok(
            b,
            "create-schedule",
            {
                "timezone": "UTC",
                "weekly_hours": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu")},
                "label": label,
                "description": "description-of-agent-b-44e0",
                "price_amount": 7 * USDC,
                "price_currency": "USDC",
                "private": True,
                "idempotency_key": "b-schedule-key-0001",
            },
        )
        await _ok(b, "search-specialists", {})
        withdrawn = await _ok(
            b,
            "request-withdrawal",
            {
                "currency": "USDC",
                "amount": 5 * USDC,
                "address": B_ADDRESS,
                "idempotency_key": "b-withdrawal-key-0001",
            },
        )
        receipts = [booked["receipt"]["call_id"], made["receipt"]["call_id"]]
    private = int(made["schedule"]["id"])
    other = Other(
        agent_id=b_id,
        key=b_key,
        email=email,
        booking_id=int(booked["booking"]["id"]),
        booking_slot=slots[0],
        booking_key="b-booking-key-0001",
        booked_specialist=int(booked["booking"]["specialist_id"]),
        private_schedule=private,
        private_slot=(await _free_slots(db, private, viewer=b_id))[0],
        schedule_key="b-schedule-key-0001",
        withdrawal_id=str(withdrawn["withdrawal"]["id"]),
        markers=[
            email,
            topic,
            label,
            "description-of-agent-b-44e0",
            B_ADDRESS,
            str(withdrawn["withdrawal"]["id"]),
            *receipts,
        ],
    )
    async with db.uow() as uow:
        other.withdrawal_address_id = int(
            (
                await uow.session.scalars(
                    select(WithdrawalAddress.id).where(WithdrawalAddress.agent_id == b_id)
                )
            ).one()
        )
        other.markers += list(
            (
                await uow.session.scalars(
                    select(DepositAddressRecord.address).where(
                        DepositAddressRecord.agent_id == b_id
                    )
                )
            ).all()
        )
        other.markers += list(
            (
                await uow.session.scalars(
                    select(OutboxEvent.event_id).where(OutboxEvent.agent_id == b_id)
                )
            ).all()
        )
    return other


async def _owned_rows(db: Database, agent_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the agent owns, table by table (the agents row included)."""
    owned: dict[str, list[tuple[Any, ...]]] = {}
    async with db.uow() as uow:
        for table in metadata.sorted_tables:
            owner = _owner_column(table)
            if owner is None:
                continue
            columns = [c for c in table.columns if (table.name, c.name) not in READ_STAMPS]
            rows = await uow.session.execute(
                select(*columns).where(table.c[owner] == agent_id).order_by(*table.primary_key)
            )
            owned[table.name] = [tuple(row) for row in rows]
    return owned


def _owner_column(table: Table) -> str | None:
    if table.name == "agents":
        return "id"
    return next((c for c in OWNER_COLUMNS if c in table.c), None)


# --- MCP tools: A aims at B ----------------------------------------------------------------------

ToolCase = Callable[[World], Awaitable[None]]


async def search_specialists(w: World) -> None:
    await w.ok("search-specialists", {})
    await w.ok("search-specialists", {"q": "label-of-agent-b-9c1d"})


async def view_profile(w: World) -> None:
    await w.ok("view-profile", {"specialist_id": w.b.booked_specialist})


async def get_availability_(w: World) -> None:
    await w.refused("get-availability", {"schedule_id": w.b.private_schedule}, REFUSED)
    await w.ok("get-availability", {"specialist_id": w.b.booked_specialist})


async def create_schedule(w: World) -> None:
    base = {"timezone": "UTC", "weekly_hours": {"mon": [["09:00", "10:00"]]}}
    await w.refused(
        "create-schedule",
        {**base, "idempotency_key": w.b.schedule_key, "agent_id": w.b.agent_id},
        {"VALIDATION_ERROR"},
    )
    # B's idempotency key is B's: with it, A makes a schedule of its own.
    own = await w.ok("create-schedule", {**base, "idempotency_key": w.b.schedule_key})
    assert own["schedule"]["id"] != w.b.private_schedule
    assert own["schedule"]["owner"] == {"kind": "agent", "id": w.a_id}


async def book_slot(w: World) -> None:
    await w.refused(
        "book-slot",
        {"slot_id": w.b.private_slot, "idempotency_key": "a-into-b-private-0001"},
        REFUSED | {"BOOKING_CONFLICT"},
    )
    # B's key and slot: never B's booking back.
    reply = await w.tool(
        "book-slot", {"slot_id": w.b.booking_slot, "idempotency_key": w.b.booking_key}
    )
    if "error" in reply:
        assert reply["error"]["code"] == "BOOKING_CONFLICT", reply
    else:
        assert reply["booking"]["id"] != w.b.booking_id


async def list_bookings(w: World) -> None:
    for status in (None, "accepted", "pending"):
        listed = await w.ok("list-bookings", {"status": status} if status else {})
        assert w.b.booking_id not in {b["id"] for b in listed["bookings"]}


async def cancel_booking(w: World) -> None:
    await w.refused("cancel-booking", {"booking_id": w.b.booking_id}, REFUSED)


async def open_dispute(w: World) -> None:
    await w.refused(
        "open-dispute",
        {"booking_id": w.b.booking_id, "reason_code": "no_show", "text": "taken over"},
        REFUSED,
    )


async def reschedule_booking(w: World) -> None:
    schedule = int(w.b.booking_slot.split("-", 1)[0])
    target = next(s for s in await _free_slots(w.runtime.db, schedule) if s != w.b.booking_slot)
    await w.refused(
        "reschedule-booking", {"booking_id": w.b.booking_id, "new_slot_id": target}, REFUSED
    )


async def list_schedules(w: World) -> None:
    listed = await w.ok("list-schedules", {})
    assert w.b.private_schedule not in {s["id"] for s in listed["schedules"]}


async def update_schedule(w: World) -> None:
    await w.refused(
        "update-schedule",
        {"schedule_id": w.b.private_schedule, "changes": {"label": "taken over", "private": False}},
        REFUSED,
    )


async def delete_schedule(w: World) -> None:
    await w.refused("delete-schedule", {"schedule_id": w.b.private_schedule}, REFUSED)


async def get_wallet(w: World) -> None:
    wallet = await w.ok("get-wallet", {})
    assert wallet["agent_id"] == w.a_id


async def get_deposit_address(w: World) -> None:
    for currency in ("USDC", "BTC"):
        await w.ok("get-deposit-address", {"currency": currency})


async def list_transactions(w: World) -> None:
    history = await w.ok("list-transactions", {})
    assert all(t["booking_id"] != w.b.booking_id for t in history["transactions"])


async def get_usage(w: World) -> None:
    usage = await w.ok("get-usage", {})
    async with w.runtime.db.uow() as uow:
        mine = (
            await uow.session.scalars(
                select(UsageRecord.tool).where(UsageRecord.agent_id == w.a_id)
            )
        ).all()
    calls = {u["tool"]: u["calls"] for u in usage["usage"] if u["calls"]}
    expected = {tool: mine.count(tool) for tool in set(mine)}
    # The usage call itself is recorded after it answered.
    expected["get-usage"] = expected.get("get-usage", 1) - 1
    assert calls == {k: v for k, v in expected.items() if v}, (calls, expected)


async def quote(w: World) -> None:
    await w.refused("quote", {"tool": "book-slot", "slot_id": w.b.private_slot}, REFUSED)


async def get_booking(w: World) -> None:
    await w.refused("get-booking", {"booking_id": w.b.booking_id}, REFUSED)


async def accept_booking(w: World) -> None:
    # B booked a slot of a demo specialist's schedule: A is neither its booker nor provider.
    await w.refused("accept-booking", {"booking_id": w.b.booking_id}, REFUSED)
    await w.refused(
        "accept-booking", {"booking_id": w.b.booking_id, "location": "taken over"}, REFUSED
    )


async def reject_booking(w: World) -> None:
    await w.refused(
        "reject-booking", {"booking_id": w.b.booking_id, "reason": "taken over"}, REFUSED
    )


async def complete_booking(w: World) -> None:
    await w.refused("complete-booking", {"booking_id": w.b.booking_id}, REFUSED)
    await w.refused(
        "complete-booking", {"booking_id": w.b.booking_id, "note": "taken over"}, REFUSED
    )


async def leave_review(w: World) -> None:
    await w.refused(
        "leave-review", {"booking_id": w.b.booking_id, "rating": 1, "text": "taken over"}, REFUSED
    )


async def get_spending_limits(w: World) -> None:
    await w.ok("get-spending-limits", {})


async def set_spending_limits(w: World) -> None:
    # Unknown arguments naming B are refused by name; A's own caps are A's alone.
    await w.refused(
        "set-spending-limits",
        {"agent_id": w.b.agent_id, "daily_cap_usd_micros": 1},
        {"VALIDATION_ERROR"},
    )
    await w.ok("set-spending-limits", {"daily_cap_usd_micros": 500 * USDC})


async def request_withdrawal(w: World) -> None:
    # B's idempotency key is B's: with it, A's withdrawal is A's own, never B's back.
    mine = await w.ok(
        "request-withdrawal",
        {
            "currency": "USDC",
            "amount": 2 * USDC,
            "address": A_ADDRESS,
            "idempotency_key": "b-withdrawal-key-0001",
        },
    )
    assert mine["withdrawal"]["id"] != w.b.withdrawal_id, mine


async def list_withdrawals(w: World) -> None:
    listed = await w.ok("list-withdrawals", {})
    assert w.b.withdrawal_id not in {x["id"] for x in listed["withdrawals"]}


async def cancel_withdrawal(w: World) -> None:
    await w.refused("cancel-withdrawal", {"withdrawal_id": w.b.withdrawal_id}, REFUSED)


TOOL_CASES: dict[str, ToolCase] = {
    "get-booking": get_booking,
    "accept-booking": accept_booking,
    "reject-booking": reject_booking,
    "complete-booking": complete_booking,
    "leave-review": leave_review,
    "get-spending-limits": get_spending_limits,
    "set-spending-limits": set_spending_limits,
    "request-withdrawal": request_withdrawal,
    "list-withdrawals": list_withdrawals,
    "cancel-withdrawal": cancel_withdrawal,
    "search-specialists": search_specialists,
    "view-profile": view_profile,
    "get-availability": get_availability_,
    "create-schedule": create_schedule,
    "book-slot": book_slot,
    "list-bookings": list_bookings,
    "cancel-booking": cancel_booking,
    "reschedule-booking": reschedule_booking,
    "open-dispute": open_dispute,
    "list-schedules": list_schedules,
    "update-schedule": update_schedule,
    "delete-schedule": delete_schedule,
    "get-wallet": get_wallet,
    "get-deposit-address": get_deposit_address,
    "list-transactions": list_transactions,
    "get-usage": get_usage,
    "quote": quote,
}


# --- REST routes: A aims at B --------------------------------------------------------------------


async def register(w: World) -> None:
    taken = await w.rest("POST", "/agent/register", json={"name": "Impostor", "email": w.b.email})
    assert taken.status_code in (409, 422), taken.text


async def verify_email(w: World) -> None:
    guessed = await w.rest(
        "POST", "/agent/verify-email", json={"email": w.b.email, "code": "000000"}
    )
    assert guessed.status_code == 422, guessed.text
    assert "agent_id" not in guessed.text and "active" not in guessed.text


async def resend_verification(w: World) -> None:
    resent = await w.rest("POST", "/agent/resend-verification", json={"email": w.b.email})
    assert resent.status_code < 500, resent.text


async def regenerate_key(w: World) -> None:
    rotated = await w.rest("POST", "/agent/regenerate-key")
    assert rotated.status_code == 200, rotated.text
    w.a_key = rotated.json()["api_key"]
    assert (await w.rest("GET", "/agent/me", key=w.b.key)).status_code == 200  # B's still works


async def get_me(w: World) -> None:
    me = await w.rest("GET", "/agent/me")
    assert me.status_code == 200 and me.json()["agent"]["id"] == w.a_id, me.text


async def patch_me(w: World) -> None:
    for body in ({"name": "Renamed A", "id": w.b.agent_id}, {"agent_id": w.b.agent_id}):
        changed = await w.rest("PATCH", "/agent/me", json=body)
        assert changed.status_code in (200, 422), changed.text
        if changed.status_code == 200:
            assert changed.json()["agent"]["id"] == w.a_id


async def delete_me(w: World) -> None:
    # A third agent deletes itself (A is still needed): only its own data goes.
    _, key = await make_agent(w.runtime.db, w.runtime.settings)
    gone = await w.rest("DELETE", "/agent/me", key=key)
    assert gone.status_code == 200, gone.text


async def public_profile(w: World) -> None:
    profile = await w.rest("GET", f"/agents/{w.b.agent_id}")
    assert profile.status_code in (200, 404), profile.text


async def directory(w: World) -> None:
    found = await w.rest("GET", "/agents", params={"query": "agent"})
    assert found.status_code == 200, found.text


async def wallet_usage(w: World) -> None:
    usage = await w.rest("GET", "/agent/wallet/usage")
    assert usage.status_code == 200, usage.text


async def wallet_transactions(w: World) -> None:
    history = await w.rest("GET", "/agent/wallet/transactions")
    assert history.status_code == 200, history.text
    assert all(t.get("booking_id") != w.b.booking_id for t in history.json()["transactions"])


async def wallet(w: World) -> None:
    mine = await w.rest("GET", "/agent/wallet")
    assert mine.status_code == 200, mine.text


async def wallet_currency(w: World) -> None:
    chosen = await w.rest("POST", "/agent/wallet/currency", json={"currency": "USDT"})
    assert chosen.status_code == 200, chosen.text


async def webhook_secret(w: World) -> None:
    rotated = await w.rest("POST", "/agent/webhook-secret")
    assert rotated.status_code == 200, rotated.text


async def webhook_deliveries(w: World) -> None:
    log = await w.rest("GET", "/agent/webhooks/deliveries")
    assert log.status_code == 200, log.text


async def dispute_booking(w: World) -> None:
    disputed = await w.rest(
        "POST",
        f"/agent/bookings/{w.b.booking_id}/dispute",
        json={"reason_code": "no_show", "text": "taken over"},
    )
    assert disputed.status_code in (403, 404), disputed.text


async def calendar_token(w: World) -> None:
    issued = await w.rest("POST", "/agent/calendar-token")
    assert issued.status_code == 200, issued.text


def _refused(response: httpx.Response) -> None:
    assert response.status_code in (403, 404), response.text


def _on_b_booking(action: str, body: dict[str, Any] | None = None) -> ToolCase:
    """A POSTs ``action`` on B's booking: refused; without a key: 401."""

    async def case(w: World) -> None:
        path = f"/agent/bookings/{w.b.booking_id}/{action}"
        _refused(await w.rest("POST", path, json=body))
        await w.anonymous("POST", path, json=body)

    return case


async def list_bookings_rest(w: World) -> None:
    for role in (None, "booker", "provider"):
        listed = await w.rest("GET", "/agent/bookings", params={"role": role} if role else None)
        assert listed.status_code == 200, listed.text
        assert w.b.booking_id not in {b["id"] for b in listed.json()["bookings"]}
    await w.anonymous("GET", "/agent/bookings")


async def get_booking_rest(w: World) -> None:
    _refused(await w.rest("GET", f"/agent/bookings/{w.b.booking_id}"))
    await w.anonymous("GET", f"/agent/bookings/{w.b.booking_id}")


async def spending_limits(w: World) -> None:
    mine = await w.rest("GET", "/agent/spending-limits")
    assert mine.status_code == 200, mine.text
    await w.anonymous("GET", "/agent/spending-limits")


async def put_spending_limits(w: World) -> None:
    lowered = await w.rest("PUT", "/agent/spending-limits", json={"daily_cap_usd_micros": USDC})
    assert lowered.status_code == 200, lowered.text
    named = await w.rest(
        "PUT", "/agent/spending-limits", json={"agent_id": w.b.agent_id, "daily_cap_usd_micros": 1}
    )
    assert named.status_code == 422, named.text
    await w.anonymous("PUT", "/agent/spending-limits", json={"daily_cap_usd_micros": 1})


async def confirm_spending_limits(w: World) -> None:
    guessed = await w.rest("POST", "/agent/spending-limits/confirm", json={"code": "000000"})
    assert guessed.status_code in (403, 404, 409, 422), guessed.text
    await w.anonymous("POST", "/agent/spending-limits/confirm", json={"code": "000000"})


async def withdrawal_addresses(w: World) -> None:
    listed = await w.rest("GET", "/agent/withdrawal-addresses")
    assert listed.status_code == 200, listed.text
    assert w.b.withdrawal_address_id not in {a["id"] for a in listed.json()}
    await w.anonymous("GET", "/agent/withdrawal-addresses")


async def confirm_withdrawal_address(w: World) -> None:
    path = f"/agent/withdrawal-addresses/{w.b.withdrawal_address_id}/confirm"
    _refused(await w.rest("POST", path, json={"code": "000000"}))
    await w.anonymous("POST", path, json={"code": "000000"})


async def withdrawals_rest(w: World) -> None:
    listed = await w.rest("GET", "/agent/withdrawals")
    assert listed.status_code == 200, listed.text
    assert w.b.withdrawal_id not in {x["id"] for x in listed.json()["withdrawals"]}
    await w.anonymous("GET", "/agent/withdrawals")


async def get_withdrawal(w: World) -> None:
    _refused(await w.rest("GET", f"/agent/withdrawals/{w.b.withdrawal_id}"))
    await w.anonymous("GET", f"/agent/withdrawals/{w.b.withdrawal_id}")


async def cancel_withdrawal_rest(w: World) -> None:
    path = f"/agent/withdrawals/{w.b.withdrawal_id}/cancel"
    _refused(await w.rest("POST", path))
    await w.anonymous("POST", path)


async def request_withdrawal_rest(w: World) -> None:
    body = {
        "currency": "USDC",
        "amount": 2 * USDC,
        "address": A_ADDRESS,
        "idempotency_key": "b-withdrawal-key-0001",
    }
    mine = await w.rest("POST", "/agent/withdrawals", json=body)
    assert mine.status_code in (200, 201, 202), mine.text
    assert mine.json()["withdrawal"]["id"] != w.b.withdrawal_id
    await w.anonymous("POST", "/agent/withdrawals", json=body)


async def quote_withdrawal(w: World) -> None:
    body = {"currency": "USDC", "amount": 2 * USDC}
    quoted = await w.rest("POST", "/agent/withdrawals/quote", json=body)
    assert quoted.status_code == 200, quoted.text
    await w.anonymous("POST", "/agent/withdrawals/quote", json=body)


ROUTE_CASES: dict[str, ToolCase] = {
    "GET /agent/bookings": list_bookings_rest,
    "GET /agent/bookings/{booking_id}": get_booking_rest,
    "POST /agent/bookings/{booking_id}/accept": _on_b_booking("accept", {"location": "x"}),
    "POST /agent/bookings/{booking_id}/location": _on_b_booking("location", {"location": "x"}),
    "POST /agent/bookings/{booking_id}/reject": _on_b_booking("reject", {"reason": "x"}),
    "POST /agent/bookings/{booking_id}/cancel": _on_b_booking("cancel", {"reason": "x"}),
    "POST /agent/bookings/{booking_id}/complete": _on_b_booking("complete"),
    "POST /agent/bookings/{booking_id}/note": _on_b_booking("note", {"note": "taken over"}),
    "POST /agent/bookings/{booking_id}/dismiss": _on_b_booking("dismiss"),
    "POST /agent/bookings/{booking_id}/review": _on_b_booking("review", {"rating": 1}),
    "GET /agent/spending-limits": spending_limits,
    "PUT /agent/spending-limits": put_spending_limits,
    "POST /agent/spending-limits/confirm": confirm_spending_limits,
    "GET /agent/withdrawal-addresses": withdrawal_addresses,
    "POST /agent/withdrawal-addresses/{address_id}/confirm": confirm_withdrawal_address,
    "GET /agent/withdrawals": withdrawals_rest,
    "GET /agent/withdrawals/{withdrawal_id}": get_withdrawal,
    "POST /agent/withdrawals/{withdrawal_id}/cancel": cancel_withdrawal_rest,
    "POST /agent/withdrawals": request_withdrawal_rest,
    "POST /agent/withdrawals/quote": quote_withdrawal,
    "POST /agent/register": register,
    "POST /agent/verify-email": verify_email,
    "POST /agent/resend-verification": resend_verification,
    "POST /agent/regenerate-key": regenerate_key,
    "GET /agent/me": get_me,
    "PATCH /agent/me": patch_me,
    "DELETE /agent/me": delete_me,
    "GET /agents/{id}": public_profile,
    "GET /agents": directory,
    "GET /agent/wallet/usage": wallet_usage,
    "GET /agent/wallet/transactions": wallet_transactions,
    "GET /agent/wallet": wallet,
    "POST /agent/wallet/currency": wallet_currency,
    "POST /agent/webhook-secret": webhook_secret,
    "GET /agent/webhooks/deliveries": webhook_deliveries,
    "POST /agent/calendar-token": calendar_token,
    "POST /agent/bookings/{booking_id}/dispute": dispute_booking,
}


# --- the tests -----------------------------------------------------------------------------------


@pytest.fixture
async def world(database_url: str, db: Database) -> AsyncIterator[World]:
    settings = Settings(
        database_url=database_url,
        start_watchers=False,
        start_worker=False,
        register_per_ip_per_hour=1000,
        email_checks_per_ip_per_hour=1000,
    )
    runtime = Runtime(settings=settings, db=db)
    await load_demo_data(db, 6, seed=9)
    a_id, a_key = await make_agent(db, settings, funds=1_000 * USDC)
    b = await _make_other(runtime)
    app = create_app(runtime, bind_host="127.0.0.1")
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 41000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
        yield World(runtime, a_id, a_key, b, api=api)


async def test_every_tool_and_route_has_a_case(database_url: str, db: Database) -> None:
    runtime = Runtime(settings=Settings(database_url=database_url), db=db)
    async with Client(build_mcp_server(runtime, api_key_source=lambda: None)) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
    assert tools == set(TOOL_CASES), "a tool without a security case (or a case without a tool)"
    app = create_app(runtime, bind_host="127.0.0.1")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
        document = (await api.get("/api/openapi.json")).json()
    routes = {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert routes == set(ROUTE_CASES), "a route without a security case (or a case without one)"


async def test_agent_a_can_neither_read_nor_change_agent_b(world: World) -> None:
    # Tools first: a REST case rotates A's key, which the open MCP client would not follow.
    cases = [(f"tool {n}", f) for n, f in TOOL_CASES.items()]
    cases += [(f"route {n}", f) for n, f in ROUTE_CASES.items()]
    failures: dict[str, str] = {}
    async with _client(world.runtime, world.a_key) as client:  # opened and closed by this task
        world.a_client = client
        await _run_cases(world, cases, failures)
    assert failures == {}, "\n".join(f"{k}: {v}" for k, v in failures.items())


async def _run_cases(
    world: World, cases: list[tuple[str, ToolCase]], failures: dict[str, str]
) -> None:
    for name, case in cases:
        world.seen.clear()
        world.sent.clear()
        before = await _owned_rows(world.runtime.db, world.b.agent_id)
        try:
            await case(world)
        except AssertionError as exc:
            failures[name] = str(exc)[:1500]
            continue
        after = await _owned_rows(world.runtime.db, world.b.agent_id)
        changed = {t: (before[t], after[t]) for t in before if before[t] != after[t]}
        if changed:
            failures[name] = f"B's rows changed: {changed}"[:1500]
        seen, sent = "\n".join(world.seen), "\n".join(world.sent)
        leaked = [m for m in world.b.markers if m in seen and m not in sent]
        if leaked:
            failures[name] = f"{failures.get(name, '')} A was shown B's {leaked}".strip()

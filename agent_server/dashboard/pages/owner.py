"""Owner pages: an agent's settings, wallet, usage, transactions, bookings and schedules.

Every page loads the agent through ``owned_agent``: another person's agent is NOT_FOUND.
"""

# Long by design: one thin route per owner page, each calling a service.

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select

from agent_server.accounts import service as accounts
from agent_server.accounts.schemas import UpdateAgent
from agent_server.booking import schedules as schedule_svc
from agent_server.booking import service as booking_svc
from agent_server.booking.disputes import DISPUTE_REASON_CODES
from agent_server.booking.models import BookingStatus, CancelledBy, Specialist
from agent_server.booking.schedules import ScheduleOwner, parse_model
from agent_server.dashboard.charts import daily_chart, qr_svg, recent_periods, usage_chart
from agent_server.dashboard.forms import field_errors, parse_amount, text
from agent_server.dashboard.guide import guide_for
from agent_server.dashboard.history import (
    TYPES,
    all_history,
    daily_history,
    history_page,
    transactions_csv,
    usage_csv,
)
from agent_server.dashboard.pages import reviews as review_pages
from agent_server.dashboard.people import changeable_agent, owned_agent
from agent_server.dashboard.web import (
    DashboardRoute,
    Viewer,
    posted_form,
    redirect,
    render,
    runtime_of,
    signed_in,
)
from agent_server.events.urls import check_callback_url
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.money import decimal_text, usd_decimal, usd_text
from agent_server.services import bookings as booking_steps
from agent_server.services import disputes as dispute_steps
from agent_server.services import limits
from agent_server.services.wallets import choose_currency, get_wallet
from billing.usage import check_period, usage_for
from wallets.addresses import agent_addresses
from wallets.currencies import CURRENCIES, currency_info
from wallets.rates import rate_source

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

AgentId = Annotated[int, Path(ge=1, le=2**63 - 1)]
CANCELLABLE = (BookingStatus.PENDING.value, BookingStatus.ACCEPTED.value)
DISPUTABLE = (BookingStatus.ACCEPTED.value, BookingStatus.COMPLETED.value)


def _shown(micros: int | None) -> str:
    return "" if micros is None else usd_decimal(micros)


async def _agent_page(
    request: Request,
    viewer: Viewer,
    agent_id: int,
    *,
    new_key: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        agent = await owned_agent(uow, viewer.person, agent_id)
        view = await limits.limits(uow, agent_id, runtime.billing)
        guide = await guide_for(uow, runtime, request, agent, new_key)
        await uow.commit()  # read only; keeps the loaded agent readable
    shown = {
        "daily_cap": "" if view.daily_cap is None else usd_decimal(view.daily_cap),
        "monthly_cap": "" if view.monthly_cap is None else usd_decimal(view.monthly_cap),
        "balance_low": usd_decimal(view.balance_low),
        "withdraw_daily": _shown(view.daily_withdrawal_limit),
        "withdraw_monthly": _shown(view.monthly_withdrawal_limit),
        "callback_url": agent.callback_url or "",
    }
    shown.update(values or {})
    return render(
        request,
        "agent.html",
        {
            "title": agent.name,
            "agent": agent,
            "tab": "settings",
            "new_key": new_key,
            "guide": guide,
            "values": shown,
            "errors": errors or {},
            "spent_today": usd_decimal(view.spent_today),
            "spent_this_month": usd_decimal(view.spent_this_month),
            "withdrawn_today": usd_decimal(view.withdrawn_today),
            "withdrawn_this_month": usd_decimal(view.withdrawn_this_month),
        },
        viewer=viewer,
        status_code=status_code,
    )


@router.get("/agents/{agent_id}")
async def agent_settings(request: Request, agent_id: AgentId) -> Response:
    viewer = await signed_in(request)
    return await _agent_page(request, viewer, agent_id)


@router.post("/agents/{agent_id}/key")
async def regenerate_key(request: Request, agent_id: AgentId) -> Response:
    viewer = await signed_in(request)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await changeable_agent(uow, viewer.person, agent_id)
    try:
        # Only the key the page showed: sent again (a reload, the back button, a second
        # tab), the form must not replace the key it has just made.
        key = await accounts.regenerate_key(
            runtime.db.uow(), runtime.settings, agent_id, replacing=text(form, "replaces")
        )
    except accounts.KeyAlreadyReplaced:
        return redirect(f"/agents/{agent_id}", "key-kept")
    return await _agent_page(request, viewer, agent_id, new_key=key)


def _cap(form_value: str, field: str) -> int | None:
    if not form_value:
        return None
    return parse_amount(form_value, "USD", field)


@router.post("/agents/{agent_id}/caps")
async def save_caps(request: Request, agent_id: AgentId) -> Response:
    viewer = await signed_in(request)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    names = ("daily_cap", "monthly_cap", "balance_low", "withdraw_daily", "withdraw_monthly")
    values = {name: text(form, name) for name in names}
    try:
        given = {"daily", "monthly"}
        low = _cap(values["balance_low"], "balance_low")
        if low is not None:
            given.add("balance_low")
        # A form without the withdrawal fields (an older page) leaves the limits as they are.
        given |= {n for n in ("withdraw_daily", "withdraw_monthly") if n in form}
        change = limits.Change(
            daily=_cap(values["daily_cap"], "daily_cap"),
            monthly=_cap(values["monthly_cap"], "monthly_cap"),
            balance_low=low,
            given=frozenset(given),
            withdraw_daily=_cap(values["withdraw_daily"], "withdraw_daily"),
            withdraw_monthly=_cap(values["withdraw_monthly"], "withdraw_monthly"),
        )
        async with runtime.db.uow() as uow:
            await changeable_agent(uow, viewer.person, agent_id)
            # The signed-in owner may raise as well as lower.
            await limits.owner_set(uow, agent_id, change)
            await uow.commit()
    except ValidationFailed as exc:
        errors = {}
        for k, v in field_errors(exc).items():
            name = k if k in values else None
            name = name or next((n for n in values if k.startswith(n.split("_")[0])), "daily_cap")
            errors[name] = v
        return await _agent_page(
            request, viewer, agent_id, errors=errors, values=values, status_code=422
        )
    return redirect(f"/agents/{agent_id}", "caps")


@router.post("/agents/{agent_id}/callback")
async def save_callback(request: Request, agent_id: AgentId) -> Response:
    viewer = await signed_in(request)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    url = text(form, "callback_url")
    async with runtime.db.uow() as uow:
        await changeable_agent(uow, viewer.person, agent_id)
    try:
        data = parse_model(UpdateAgent, {"callback_url": url or None})
        # The same check as the REST API's: no loopback, private or metadata addresses.
        await check_callback_url(data.callback_url, runtime.settings)
        await accounts.update_profile(runtime.db.uow(), agent_id, data)
    except ValidationFailed as exc:
        shown = field_errors(exc)
        return await _agent_page(
            request,
            viewer,
            agent_id,
            errors={
                "callback_url": shown.get(
                    "callback_url", "must be an absolute http:// or https:// URL"
                )
            },
            values={"callback_url": url},
            status_code=422,
        )
    return redirect(f"/agents/{agent_id}", "callback")


@router.get("/agents/{agent_id}/wallet")
async def wallet(request: Request, agent_id: AgentId) -> Response:
    viewer = await signed_in(request)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        agent = await owned_agent(uow, viewer.person, agent_id)
        view = await get_wallet(uow, agent_id, rates=rate_source(runtime))
        addresses = await agent_addresses(uow, agent_id)
        charted = (agent.currency or "USDT").upper()
        days, spent, balances = await daily_history(uow, agent_id, charted)
        await uow.commit()
    held = {w.currency: w for w in view.wallets}
    rows = []
    for code in CURRENCIES:
        info = currency_info(code)
        record = addresses.get(info.chain.value)
        address = record.address if record else None
        balance = held.get(code)
        rows.append(
            {
                "currency": code,
                "balance": decimal_text(balance.balance.amount if balance else 0, code),
                "balance_usd": usd_text(balance.balance_usd.amount if balance else 0),
                "pending": decimal_text(balance.pending.amount if balance else 0, code),
                "address": address,
                "qr": qr_svg(address, f"{code} deposit address") if address else None,
            }
        )
    return render(
        request,
        "wallet.html",
        {
            "title": f"{agent.name}: wallet",
            "agent": agent,
            "tab": "wallet",
            "view": view,
            "rows": rows,
            "daily": daily_chart(charted, days, spent, balances),
        },
        viewer=viewer,
    )


@router.post("/agents/{agent_id}/wallet/address")
async def make_address(request: Request, agent_id: AgentId) -> Response:
    viewer = await signed_in(request)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await changeable_agent(uow, viewer.person, agent_id)
        await choose_currency(
            uow, runtime.settings, agent_id, text(form, "currency"), rates=rate_source(runtime)
        )
        await uow.commit()
    return redirect(f"/agents/{agent_id}/wallet", "address")


@router.get("/agents/{agent_id}/usage")
async def usage(
    request: Request,
    agent_id: AgentId,
    period: Annotated[str | None, Query(max_length=7)] = None,
) -> Response:
    viewer = await signed_in(request)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        agent = await owned_agent(uow, viewer.person, agent_id)
        result = await usage_for(uow, agent_id, period or None)
        await uow.commit()
    periods = recent_periods(runtime.clock.now())
    if result.period not in periods:
        periods.append(result.period)
    return render(
        request,
        "usage.html",
        {
            "title": f"{agent.name}: usage",
            "agent": agent,
            "tab": "usage",
            "usage": result,
            "chart": usage_chart(result),
            "periods": periods,
        },
        viewer=viewer,
    )


def _csv_response(body: str, filename: str) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/agents/{agent_id}/usage.csv")
async def usage_export(
    request: Request,
    agent_id: AgentId,
    period: Annotated[str | None, Query(max_length=7)] = None,
) -> Response:
    viewer = await signed_in(request)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await owned_agent(uow, viewer.person, agent_id)
        result = await usage_for(uow, agent_id, check_period(period) if period else None)
    return _csv_response(usage_csv(result), f"agent-{agent_id}-usage-{result.period}.csv")


@router.get("/agents/{agent_id}/transactions")
async def transactions(
    request: Request,
    agent_id: AgentId,
    type: Annotated[str | None, Query(max_length=20)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    viewer = await signed_in(request)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        agent = await owned_agent(uow, viewer.person, agent_id)
        history = await history_page(uow, agent_id, kind=type or None, page=page)
        await uow.commit()
    return render(
        request,
        "transactions.html",
        {
            "title": f"{agent.name}: transactions",
            "agent": agent,
            "tab": "transactions",
            "history": history,
            "types": TYPES,
        },
        viewer=viewer,
    )


@router.get("/agents/{agent_id}/transactions.csv")
async def transactions_export(
    request: Request,
    agent_id: AgentId,
    type: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    viewer = await signed_in(request)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await owned_agent(uow, viewer.person, agent_id)
        items = await all_history(uow, agent_id, type or None)
    suffix = f"-{type}" if type else ""
    return _csv_response(transactions_csv(items), f"agent-{agent_id}-transactions{suffix}.csv")


@router.get("/agents/{agent_id}/bookings")
async def bookings(
    request: Request,
    agent_id: AgentId,
    status: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    viewer = await signed_in(request)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        agent = await owned_agent(uow, viewer.person, agent_id)
        page = await booking_svc.list_bookings(
            uow, agent_id=agent_id, status=status or None, cursor=cursor, limit=25
        )
        ids = {b.specialist_id for b in page.items if b.specialist_id is not None}
        names: dict[int, str] = {}
        if ids:
            rows = await uow.session.execute(
                select(Specialist.id, Specialist.name).where(Specialist.id.in_(ids))
            )
            names = {int(i): str(n) for i, n in rows}
        done = await review_pages.reviewed(uow, [b.id for b in page.items])
        await uow.commit()
    return render(
        request,
        "agent_bookings.html",
        {
            "title": f"{agent.name}: bookings",
            "agent": agent,
            "tab": "bookings",
            "page": page,
            "names": names,
            "status": status or "",
            "statuses": [s.value for s in BookingStatus],
            "cancellable": CANCELLABLE,
            "now": runtime.clock.now(),
            "disputable": DISPUTABLE,
            "dispute_window": runtime.settings.dispute_window,
            "dispute_reasons": DISPUTE_REASON_CODES,
            "reviewable": review_pages.REVIEWABLE_STATUSES,
            "reviewed": done,
        },
        viewer=viewer,
    )


@router.post("/agents/{agent_id}/bookings/{booking_id}/cancel")
async def cancel_booking(request: Request, agent_id: AgentId, booking_id: AgentId) -> Response:
    viewer = await signed_in(request)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await changeable_agent(uow, viewer.person, agent_id)
        await booking_steps.cancel_booking(
            uow,
            booking_id,
            CancelledBy.AGENT,
            agent_id,
            text(form, "reason_code") or "other",
            text(form, "reason"),
            policy=runtime.billing.prices.booking,
        )
        await uow.commit()
    return redirect(f"/agents/{agent_id}/bookings", "cancelled")


@router.post("/agents/{agent_id}/bookings/{booking_id}/dispute")
async def dispute_booking(request: Request, agent_id: AgentId, booking_id: AgentId) -> Response:
    """The owner contests a session their agent booked, as ``open-dispute`` does."""
    viewer = await signed_in(request)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await changeable_agent(uow, viewer.person, agent_id)
        await dispute_steps.open_dispute(
            uow,
            agent_id,
            booking_id,
            text(form, "reason_code"),
            text(form, "text"),
            window=runtime.settings.dispute_window,
        )
        await uow.commit()
    return redirect(f"/agents/{agent_id}/bookings", "disputed")


@router.get("/agents/{agent_id}/schedules")
async def schedules(
    request: Request, agent_id: AgentId, page: Annotated[int, Query(ge=1, le=10_000)] = 1
) -> Response:
    viewer = await signed_in(request)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        agent = await owned_agent(uow, viewer.person, agent_id)
        listing = await schedule_svc.list_schedules(uow, ScheduleOwner.agent(agent_id), page)
        await uow.commit()
    return render(
        request,
        "agent_schedules.html",
        {
            "title": f"{agent.name}: schedules",
            "agent": agent,
            "tab": "schedules",
            "listing": listing,
        },
        viewer=viewer,
    )

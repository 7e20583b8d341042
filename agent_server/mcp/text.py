"""The text part of a tool result: what a language model reads, rendered from the structured part.

Clients show a model the text of a result, often without the structured content, so the text
carries everything needed to act: ids, slot_ids, cursors, and prices and balances in readable
units with their currency (``25.00 USDC``; the integers in base units stay in the structured
part). It is compact: a page of ten search results stays well within 8,000 characters.

``render(tool, body)`` is the text of a success body; ``error_text`` that of a failure. Search
pages and profiles have their own layout (they are long and read most); every other body is
rendered by one walk that knows the product's money fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent_server.kernel.money import amount_text, usd_text

Body = Mapping[str, Any]

# Integer fields holding money in the base unit of the sibling field named here (most money
# is a Money mapping, which reads as its text).
_AMOUNTS = {
    "price": "currency",
    "amount": "currency",
    "balance": "currency",
}
# Exact figures a reader does not need beside their readable form (they stay structured).
_HIDDEN = {"rate", "currency"}
_HIDDEN_EVERYWHERE = {"rate"}


def render(tool: str, body: Body) -> str:
    """The text of a successful ``tool`` result whose structured content is ``body``."""
    renderer = _RENDERERS.get(tool, _generic)
    lines = [receipt_text(body["receipt"])] if body.get("receipt") else []
    lines.append(renderer({k: v for k, v in body.items() if k != "receipt"}))
    return "\n".join(line for line in lines if line)


def receipt_text(receipt: Body) -> str:
    """One line on what the call cost."""
    paid = receipt.get("amount")
    if receipt.get("free"):
        cost = "Free (monthly quota)"
    elif isinstance(paid, Mapping) and _is_money(paid):
        cost = f"Charged {_money_text(paid)}"
    else:
        cost = "Nothing charged"
    parts = [f"{cost} for {receipt.get('tool')}, call_id {receipt.get('call_id')}"]
    if _is_money(receipt.get("escrowed")):
        parts.append(f"{_money_text(receipt['escrowed'])} into escrow")
    if _is_money(receipt.get("balance_after")):
        parts.append(f"balance {_money_text(receipt['balance_after'])}")
    return "; ".join(parts) + "."


def _is_money(value: Any) -> bool:
    """A Money mapping (``{amount, currency, text}``), not a record that holds one."""
    return (
        isinstance(value, Mapping)
        and {"amount", "currency"} <= set(value) <= {"amount", "currency", "text"}
        and isinstance(value["amount"], int)
    )


def _money_text(money: Body) -> str:
    """A Money's text, from the one formatter (``kernel.money``)."""
    return amount_text(int(money["amount"]), str(money["currency"]))


def error_text(code: str, status: int, message: str, details: Body, next_step: str) -> str:
    """A failure as the model reads it: the code, the message, each invalid field and why,
    the other details, and the next step."""
    lines = [f"{code} ({status}): {message}"]
    extra = dict(details)
    for entry in extra.pop("fields", None) or []:
        if isinstance(entry, Mapping):
            lines.append(f"- {entry.get('field')}: {entry.get('message')}")
    if extra:
        lines.append(f"Details: {_flat(extra)}")
    lines.append(f"Next step: {next_step}")
    return "\n".join(lines)


# --- the generic walk --------------------------------------------------------------------------


def _generic(body: Body) -> str:
    lines: list[str] = []
    scalars: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, list):
            lines.append(f"{key} ({len(value)}):" if value else f"{key}: none")
            lines.extend(
                f"- {_flat(item) if isinstance(item, Mapping) else item}" for item in value
            )
        elif isinstance(value, Mapping) and not _is_money(value) and key != "owner":
            lines.append(f"{key}: {_flat(value)}")
        else:
            scalars[key] = value
    if scalars:
        lines.insert(0, _flat(scalars))
    return "\n".join(lines)


def _flat(data: Body) -> str:
    """A mapping as ``key value, key value``: money readable, empty and exact figures left out."""
    parts: list[str] = []
    for key, value in data.items():
        if value in (None, "", [], {}) or key in _HIDDEN_EVERYWHERE:
            continue
        if key in _HIDDEN and not (key == "currency" and not _has_amount(data)):
            continue
        shown = _value(key, value, data)
        parts.append(f"{key} {shown}")
    return ", ".join(parts)


def _has_amount(data: Body) -> bool:
    return any(isinstance(data.get(k), int) and s in data for k, s in _AMOUNTS.items())


def _value(key: str, value: Any, data: Body) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in _AMOUNTS and isinstance(value, int) and isinstance(data.get(_AMOUNTS[key]), str):
        return amount_text(value, data[_AMOUNTS[key]])
    if key.endswith("usd_micros") and isinstance(value, int):
        return usd_text(value)
    if isinstance(value, Mapping):
        return _money_text(value) if _is_money(value) else "{" + _flat(value) + "}"
    if isinstance(value, list):
        return ", ".join(
            _money_text(v) if _is_money(v) else _flat(v) if isinstance(v, Mapping) else str(v)
            for v in value
        )
    return str(value)


# --- search pages and profiles -----------------------------------------------------------------


def _slots(slots: Mapping[str, str], seats: Mapping[str, int] | None = None) -> str:
    seats = seats or {}
    return (
        "; ".join(
            f"{slot_id} {when}" + (f" ({seats[slot_id]} seats left)" if slot_id in seats else "")
            for slot_id, when in slots.items()
        )
        or "none free"
    )


def _price(price: Mapping[str, Any] | None) -> str:
    if not price or not price.get("amount"):
        return "free"
    return amount_text(int(price["amount"]), str(price["currency"]))


def _search(page: Body) -> str:
    items = page.get("items") or []
    lines = [
        f"{len(items)} specialists with free slots between {page.get('window_start')} and "
        f"{page.get('window_end')}; local times in {page.get('timezone')}."
    ]
    for hit in items:
        place = ", ".join(p for p in (hit.get("city"), hit.get("country")) if p)
        lines.append(
            f"#{hit['id']} {hit.get('name')}, {hit.get('title')} ({place}); rating "
            f"{hit.get('rating')} ({hit.get('review_count')}); languages "
            f"{','.join(hit.get('languages') or [])}; skills {','.join(hit.get('skills') or [])}"
        )
        if hit.get("about"):
            lines.append(f"  {hit['about']}")
        for s in hit.get("schedules") or []:
            seats = f", {s['capacity']} seats" if s.get("capacity", 1) > 1 else ""
            lines.append(
                f"  schedule {s['id']} {s.get('label') or ''} ({s.get('slot_minutes')} min, "
                f"{_price(s.get('price'))}{seats}): {_slots(s.get('slots') or {})}"
            )
    cursor = page.get("next_cursor")
    lines.append(f"More: cursor {cursor}" if cursor else "No more results.")
    facets = page.get("facets") or {}
    if facets.get("skills"):
        lines.append("Skills: " + ", ".join(f"{k} {v}" for k, v in facets["skills"].items()))
    if facets.get("price_ranges"):
        ranges = ", ".join(f"{k} {v}" for k, v in facets["price_ranges"].items())
        lines.append(f"Price ranges (USD per slot): {ranges}")
    return "\n".join(lines)


def _profile(body: Body) -> str:
    p = body.get("profile") or {}
    place = ", ".join(x for x in (p.get("city"), p.get("country")) if x)
    rate = f"; hourly rate {_price(p['hourly_rate'])}" if p.get("hourly_rate") else ""
    lines = [
        f"#{p.get('id')} {p.get('name')}, {p.get('title')} ({place}, {p.get('timezone')}); "
        f"rating {p.get('rating')} ({p.get('review_count')}){rate}",
        f"Contact: {p.get('email')}" + (f", {p['phone']}" if p.get("phone") else ""),
        f"Languages {', '.join(p.get('languages') or [])}; skills "
        f"{', '.join(p.get('skills') or [])}",
    ]
    if p.get("about"):
        lines.append(f"About: {p['about']}")
    for e in p.get("education") or []:
        lines.append(f"Education: {_flat(e) if isinstance(e, Mapping) else e}")
    if p.get("next_available"):
        lines.append(f"Next available: {p['next_available']}")
    for s in p.get("schedules") or []:
        lines.append(
            f"Schedule {s['id']} {s.get('label') or ''}: {s.get('slot_minutes')} min, "
            f"{_price(s.get('price'))}, {s.get('capacity')} seat(s), time zone {s.get('timezone')}"
        )
        if s.get("description"):
            lines.append(f"  {s['description']}")
        lines.append(f"  Free: {_slots(s.get('slots') or {})}")
    for r in p.get("reviews") or []:
        lines.append(f"Review {r.get('rating')}/5 ({r.get('created_at')}): {r.get('text')}")
    if p.get("next_reviews_cursor"):
        lines.append(f"Older reviews: reviews_cursor={p['next_reviews_cursor']}")
    return "\n".join(lines)


def _availability(body: Body) -> str:
    lines = [f"Free slots from {body.get('start')} to {body.get('end')} (UTC):"]
    for s in body.get("schedules") or []:
        lines.append(
            f"Schedule {s.get('schedule_id')} ({s.get('slot_minutes')} min, "
            f"{s.get('capacity')} seat(s)), local times in {s.get('timezone')}: "
            f"{_slots(s.get('slots') or {}, s.get('seats_left'))}"
        )
    if len(lines) == 1:
        lines.append("none free")
    return "\n".join(lines)


_RENDERERS: dict[str, Callable[[Body], str]] = {
    "search-specialists": _search,
    "view-profile": _profile,
    "get-availability": _availability,
}

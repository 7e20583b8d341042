"""Events: an outbox written with each change, signed webhooks, and the mail queue's sender.

Writing events (any service, in its own unit of work; nothing here commits)::

    async def emit(uow, *, type: str, agent_id: int, data: Mapping[str, Any]) -> str
        Add an event for ``agent_id`` to the caller's transaction; returns its id
        ("evt_<32 hex>"). A rolled-back change leaves no event behind.
    agent_server.booking.events.emit_booking(uow, type, booking, *, previous=None)
        booking.* events to the booker and to the agent owning the schedule, if any (the
        booking domain builds them and calls ``emit``).
    agent_server.events.balance.emit_if_balance_low(uow, *, agent_id, currency,
        balance_before, balance_after, rate, threshold_usd_micros) -> str | None

Event types: booking.created, booking.confirmed, booking.cancelled, booking.completed,
booking.rescheduled, deposit.confirmed, deposit.reversed, balance.low. Deposit events are
written by ``agent_server.events.deposit_events.to_outbox``, which the service layer's deposit
follow-up calls from the crediting transaction; importing this package registers nothing.

Delivering them (``agent_server.events.worker``): ``DeliveryWorker(db, WorkerConfig)``,
``start_worker(runtime)`` (an async context manager for the server's lifespan) and
``run_worker(settings)`` (``agent-server worker``). Signatures: ``agent_server.events.signing``
(``rotate_webhook_secret(uow, pepper, agent_id) -> str``, ``verify_signature``). Callback
URL safety: ``agent_server.events.urls.check_callback_url(url, settings)``. The
delivery log: ``agent_server.events.deliveries.list_deliveries(uow, agent_id, ...)``.

iCal lives with the bookings it lists (``agent_server.booking.calendar``):
``rotate_agent_calendar_token(uow, agent_id, *, pepper)``,
``rotate_specialist_calendar_token(uow, specialist_id, *, pepper=None)``, ``feed_path(token)``;
the feed is served at ``/calendar/feed/{token}.ics`` by
``agent_server.api.calendar_feed``.

This package imports no transport (REST, MCP, dashboard) and no booking module: bookings
publish through it, never the other way round.
"""

from agent_server.events.outbox import EVENT_TYPES, emit

__all__ = ["EVENT_TYPES", "emit"]

"""One tool call from arguments to result: gate → validation → meter → handler → result.

``run_tool`` runs a ``ToolCall``, whose steps are its methods, in this order::

    admit     agent_server.gate.admit: steps 1-4 of the gate; a GatePass for step 5
    validate  the tool's input model (VALIDATION_ERROR, one entry per field)
    price     how to read the extra price a call holds besides the tool's fee (a slot
              price); the meter reads it (in its first transaction, for a held tool)
    meter     billing.meter.run_metered with one Admission: the gate's count, the charge or
              hold, the handler (``operate``) and the receipt, in the meter's transactions
    answer    the handler's output and the receipt as the tool's result

Every outcome is a result (``failed`` maps errors), never an exception; each call is logged
in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.types import CallToolResult

from agent_server.events.balance import emit_if_balance_low
from agent_server.gate import Caller, CallerChanged, GatePass, admit
from agent_server.kernel.errors import AgentServerError, ServiceUnavailable, Unauthorized
from agent_server.kernel.logs import get_logger
from agent_server.kernel.metrics import CHARGED_AMOUNT, CHARGES, TOOL_CALLS, TOOL_LATENCY
from agent_server.kernel.store import UnitOfWork
from agent_server.kernel.store.conflicts import lost_update
from agent_server.kernel.store.outage import RETRY_AFTER_SECONDS, database_unavailable
from agent_server.mcp import results
from agent_server.mcp.receipts import receipt_body
from agent_server.mcp.registry import (
    MAX_PRICE,
    ToolSpec,
    internal_error_result,
    pop_max_price,
    validate_arguments,
)
from agent_server.runtime import Runtime
from billing.meter import (
    Admission,
    ExtraPrice,
    Metered,
    MeteredCall,
    PriceLookup,
    max_price_refused,
    run_metered,
)
from wallets.rates import rate_source

log = get_logger(__name__)


@dataclass(frozen=True)
class ToolContext:
    """What a tool handler gets: the runtime, the admitted caller and the metered call
    (its transaction, call id and the escrow of a held slot price)."""

    runtime: Runtime
    caller: Caller
    call: MeteredCall

    @property
    def uow(self) -> UnitOfWork:
        return self.call.uow

    @property
    def agent_id(self) -> int:
        return self.caller.agent_id


@dataclass(frozen=True)
class LookupContext:
    """What an extra-price lookup gets: the transaction the meter reads it in, before the
    call's work (it must only read)."""

    runtime: Runtime
    caller: Caller
    uow: UnitOfWork

    @property
    def agent_id(self) -> int:
        return self.caller.agent_id


@dataclass
class _CallFacts:
    """What the call's one log line tells besides its result: who, and whether it paid."""

    agent_id: int | None = None
    charged: bool = False
    currency: str | None = None  # what a charged call was charged in, and how much
    amount: int = 0
    replayed: bool = False
    error: str | None = None  # the exception type behind SERVICE_UNAVAILABLE


async def run_tool(
    runtime: Runtime,
    spec: ToolSpec[Any, Any],
    raw: dict[str, Any],
    api_key: str | None,
    *,
    authenticated: Caller | None = None,
    recheck: bool = False,
    forget_key: Callable[[], None] | None = None,
) -> CallToolResult:
    """Run one call of ``spec`` (see ``ToolCall``) and log it."""
    call = ToolCall(
        runtime,
        spec,
        raw,
        api_key,
        authenticated=authenticated,
        recheck=recheck,
        forget_key=forget_key,
    )
    return await call.run()


class ToolCall:
    """One call of ``spec`` with the raw arguments ``raw`` and the key ``api_key``.

    ``authenticated`` is the caller the transport resolved from ``api_key`` (HTTP bearer
    auth), so the gate need not read the agent again. ``recheck``: that caller was
    remembered from an earlier request rather than read now, so the call's own first
    transaction reads the agent again and, if the key was revoked or the agent changed, the
    call is refused or gated afresh (and ``forget_key`` tells the transport to stop trusting
    the key).
    """

    def __init__(
        self,
        runtime: Runtime,
        spec: ToolSpec[Any, Any],
        raw: dict[str, Any],
        api_key: str | None,
        *,
        authenticated: Caller | None = None,
        recheck: bool = False,
        forget_key: Callable[[], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.spec = spec
        self.raw = raw
        self.api_key = api_key
        self.authenticated = authenticated
        self.recheck = recheck
        self.forget_key = forget_key
        self.facts = _CallFacts(agent_id=authenticated.agent_id if authenticated else None)
        self.gate: GatePass | None = None  # set by ``admit``
        self.args: Any = None  # the validated input model, set by ``validate``
        self.prepared: results.JsonOutput | None = None  # the handler's serialised output
        self.max_price: int | None = None  # a paid tool's max_price, set by ``validate``

    async def run(self) -> CallToolResult:
        """The call's result, logged in one line: the tool, its outcome (``ok`` or ``error``
        and the code), the agent, whether it was charged, and its duration."""
        started = time.perf_counter()
        result = await self.outcome()
        facts = self.facts
        error = (result.structured_content or {}).get("error") if result.is_error else None
        code = str(error.get("code")) if isinstance(error, dict) else None
        level = log.warning if code in ("SERVICE_UNAVAILABLE", "INTERNAL_ERROR") else log.info
        level(
            "tool.call",
            tool=self.spec.name,
            outcome="error" if result.is_error else "ok",
            **({"code": code} if result.is_error else {}),
            agent_id=facts.agent_id,
            charged=facts.charged,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            **({"replayed": True} if facts.replayed else {}),
            **({"error": facts.error} if facts.error else {}),
        )
        outcome = code.lower() if code else ("replayed" if facts.replayed else "ok")
        if result.is_error and not code:
            outcome = "error"
        TOOL_CALLS.labels(self.spec.name, outcome).inc()
        TOOL_LATENCY.labels(self.spec.name).observe(time.perf_counter() - started)
        if facts.charged and facts.currency is not None:
            CHARGES.labels(facts.currency).inc()
            CHARGED_AMOUNT.labels(facts.currency).inc(facts.amount)
        return result

    async def outcome(self) -> CallToolResult:
        """The steps in order; every outcome is a result, never an exception."""
        try:
            gate = await self.admit()
            self.validate()
            lookup = await self.price(gate.caller)
            return self.answer(await self.meter(gate, lookup))
        except CallerChanged:
            # Suspended, banned or otherwise changed since the key was last read: gate afresh.
            if self.forget_key is not None:
                self.forget_key()
            self.authenticated, self.recheck, self.forget_key = None, False, None
            self.gate = None
            return await self.outcome()
        except Exception as exc:
            return await self.failed(exc)

    async def admit(self) -> GatePass:
        """Gate steps 1-4 (``agent_server.gate``); step 5 rides in the meter's transactions."""
        runtime = self.runtime
        self.gate = await admit(
            runtime.db,
            self.api_key,
            self.spec.name,
            settings=runtime.settings,
            rates=rate_source(runtime),
            authenticated=self.authenticated,
            recheck=self.recheck,
        )
        self.facts.agent_id = self.gate.caller.agent_id
        return self.gate

    def validate(self) -> None:
        """The arguments through the tool's input model (``ValidationFailed`` by field);
        a paid tool's ``max_price`` first (``registry.pop_max_price``)."""
        raw = self.raw
        price = self.runtime.billing.prices.for_tool(self.spec.name)
        if self.spec.takes_max_price(price.price_usd_micros) and MAX_PRICE in raw:
            raw = dict(raw)
            self.max_price = pop_max_price(raw)
        self.args = validate_arguments(self.spec.input_model, raw)

    async def price(self, caller: Caller) -> PriceLookup | None:
        """How to read the extra price the call holds besides the tool's fee (the meter
        reads it: ``Admission.price_lookup``); a tool that prices itself is held to
        ``max_price`` here (the meter checks the rest)."""
        spec, runtime, args = self.spec, self.runtime, self.args
        if spec.own_price is not None and self.max_price is not None:
            async with runtime.db.uow() as uow:
                own = await spec.own_price(LookupContext(runtime, caller, uow), args)
            if own is not None and own > self.max_price:
                raise max_price_refused(spec.name, own, self.max_price)
        extra_price = spec.extra_price
        if extra_price is None:
            return None

        async def lookup(uow: UnitOfWork) -> ExtraPrice | None:
            return await extra_price(LookupContext(runtime, caller, uow), args)

        return lookup

    async def meter(self, gate: GatePass, lookup: PriceLookup | None) -> Metered:
        """Run ``operate`` in the meter with the call's one ``Admission``."""
        runtime, spec, args = self.runtime, self.spec, self.args
        key = getattr(args, "idempotency_key", None)
        admission = Admission(
            agent_id=gate.caller.agent_id,
            tool=spec.name,
            # What identifies the call for its idempotency key; without a key, nothing.
            arguments=(
                args.model_dump(mode="json", exclude={"idempotency_key"}) if key is not None else {}
            ),
            idempotency_key=key,
            price_lookup=lookup,
            durable=not spec.read_only or runtime.settings.durable_read_charges,
            gate=gate,
            on_balance_low=emit_if_balance_low,
            max_price_usd_micros=self.max_price,
        )
        metered = await run_metered(runtime.db, admission, self.operate, config=runtime.billing)
        self.facts.replayed = metered.replayed
        self.facts.charged = (
            bool(metered.receipt and metered.receipt.amount) and not metered.replayed
        )
        if self.facts.charged and metered.receipt is not None:
            self.facts.currency = metered.receipt.currency
            self.facts.amount = metered.receipt.amount
        return metered

    async def operate(self, call: MeteredCall) -> dict[str, Any]:
        """The tool's handler, inside the metered call's transaction."""
        assert self.gate is not None
        output = await self.spec.handler(
            ToolContext(self.runtime, self.gate.caller, call), self.args
        )
        if isinstance(output, results.JsonOutput):
            self.prepared = output
            return output.body
        body: dict[str, Any] = output.model_dump(mode="json")
        return body

    def answer(self, metered: Metered) -> CallToolResult:
        """The tool's result: its output with the receipt when the output model has one."""
        receipt = receipt_body(metered.receipt)
        has_receipt = "receipt" in self.spec.output_model.model_fields
        if self.prepared is not None and not metered.replayed:
            return results.prepared(self.prepared, receipt, has_receipt=has_receipt)
        body = dict(metered.result)
        if has_receipt:
            body["receipt"] = receipt
        return results.success(self.spec.name, body)

    async def failed(self, exc: Exception) -> CallToolResult:
        """The error result for ``exc``; an admitted call that failed still counts against
        the rate limit (``GatePass.count_failed``)."""
        if isinstance(exc, AgentServerError):
            if isinstance(exc, Unauthorized) and self.forget_key is not None:
                self.forget_key()
            await self._count_failed(exc)
            return results.failure(exc)
        conflict = lost_update(exc)
        if conflict is not None:
            # Another call changed the same booking first; this one wrote nothing.
            await self._count_failed(conflict)
            return results.failure(conflict)
        if database_unavailable(exc):
            # Nothing to count it in either: the database is what failed.
            self.facts.error = type(exc).__name__
            return results.failure(ServiceUnavailable(RETRY_AFTER_SECONDS))
        await self._count_failed(exc)
        return internal_error_result(self.spec.name, exc)

    async def _count_failed(self, exc: Exception) -> None:
        if self.gate is None:
            return
        try:
            await self.gate.count_failed(self.runtime.db, exc)
        except Exception as error:
            log.warning("tool.count_failed", tool=self.spec.name, error=type(error).__name__)

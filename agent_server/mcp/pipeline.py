"""One tool call from arguments to result: gate → validation → meter → handler → result."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp.types import CallToolResult

from agent_server.gate import (
    Caller,
    check,
    count_call,
    precheck_call,
    record_call,
    refuse_if_over,
    reread,
)
from agent_server.kernel.errors import (
    AgentServerError,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import UnitOfWork
from agent_server.kernel.store.conflicts import lost_update
from agent_server.kernel.store.outage import RETRY_AFTER_SECONDS, database_unavailable
from agent_server.mcp import results
from agent_server.mcp.registry import ToolSpec, internal_error_result, validate_arguments
from agent_server.runtime import Runtime
from billing.meter import MeteredCall, run_metered
from wallets.service import rate_source

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
    """What an extra-price lookup gets before the call runs: a read-only transaction."""

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
    """Run one call of ``spec`` (see ``_run_tool``) and log it in one line: the tool, its
    outcome (``ok`` or ``error`` and the code), the agent, whether it was charged, and its
    duration."""
    facts = _CallFacts(agent_id=authenticated.agent_id if authenticated else None)
    started = time.perf_counter()
    result = await _run_tool(
        runtime,
        spec,
        raw,
        api_key,
        facts=facts,
        authenticated=authenticated,
        recheck=recheck,
        forget_key=forget_key,
    )
    error = (result.structured_content or {}).get("error") if result.is_error else None
    code = str(error.get("code")) if isinstance(error, dict) else None
    level = log.warning if code in ("SERVICE_UNAVAILABLE", "INTERNAL_ERROR") else log.info
    level(
        "tool.call",
        tool=spec.name,
        outcome="error" if result.is_error else "ok",
        **({"code": code} if result.is_error else {}),
        agent_id=facts.agent_id,
        charged=facts.charged,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        **({"replayed": True} if facts.replayed else {}),
        **({"error": facts.error} if facts.error else {}),
    )
    return result


async def _run_tool(
    runtime: Runtime,
    spec: ToolSpec[Any, Any],
    raw: dict[str, Any],
    api_key: str | None,
    *,
    facts: _CallFacts,
    authenticated: Caller | None = None,
    recheck: bool = False,
    forget_key: Callable[[], None] | None = None,
) -> CallToolResult:
    """Run one call of ``spec``; every outcome is a result, never an exception.

    ``authenticated`` is the caller the transport resolved from ``api_key`` (HTTP bearer
    auth), so the gate need not read the agent again. ``recheck``: that caller was
    remembered from an earlier request rather than read now, so the call's own first
    transaction reads the agent again and, if the key was revoked or the agent changed, the
    call is refused or gated afresh (and ``forget_key`` tells the transport to stop trusting
    the key).
    """
    caller: Caller | None = None
    admitted = False
    counted: list[UnitOfWork] = []
    prepared: results.JsonOutput | None = None  # the handler's output, already serialised

    async def admission(uow: UnitOfWork) -> None:
        nonlocal admitted
        assert caller is not None
        if not recheck:
            await precheck_call(uow, runtime.settings, caller, spec.name)
            return
        admitted = False
        current, decision = await reread(uow, runtime.settings, api_key, caller, spec.name)
        if (current.agent_id, current.status, current.email_verified) != (
            caller.agent_id,
            caller.status,
            caller.email_verified,
        ):
            raise _CallerChanged
        admitted = True
        refuse_if_over(decision, spec.name)

    async def settle(uow: UnitOfWork) -> None:
        assert caller is not None
        await count_call(uow, runtime.settings, caller, spec.name)
        counted.append(uow)

    try:
        caller = await check(
            runtime.db,
            api_key,
            settings=runtime.settings,
            rates=rate_source(runtime),
            authenticated=authenticated,
        )
        facts.agent_id = caller.agent_id
        admitted = True
        args = validate_arguments(spec.input_model, raw)
        extra = None
        if spec.extra_price is not None:
            async with runtime.db.uow() as uow:
                extra = await spec.extra_price(LookupContext(runtime, caller, uow), args)

        async def operation(call: MeteredCall) -> dict[str, Any]:
            nonlocal prepared
            assert caller is not None
            output = await spec.handler(ToolContext(runtime, caller, call), args)
            if isinstance(output, results.JsonOutput):
                prepared = output
                return output.body
            body: dict[str, Any] = output.model_dump(mode="json")
            return body

        idempotency_key = getattr(args, "idempotency_key", None)
        metered = await run_metered(
            runtime.db,
            agent_id=caller.agent_id,
            tool=spec.name,
            # What identifies the call for its idempotency key; without a key, nothing.
            arguments=(
                args.model_dump(mode="json", exclude={"idempotency_key"})
                if idempotency_key is not None
                else {}
            ),
            idempotency_key=idempotency_key,
            operation=operation,
            extra_price=extra,
            config=runtime.billing,
            admission=admission,
            settle=settle,
            durable=not spec.read_only or runtime.settings.durable_read_charges,
        )
        facts.replayed = metered.replayed
        facts.charged = bool(metered.receipt and metered.receipt.amount) and not metered.replayed
        receipt = metered.receipt.to_dict() if metered.receipt else None
        has_receipt = "receipt" in spec.output_model.model_fields
        if prepared is not None and not metered.replayed:
            return results.prepared(prepared, receipt, has_receipt=has_receipt)
        body = dict(metered.result)
        if has_receipt:
            body["receipt"] = receipt
        return results.success(spec.name, body)
    except _CallerChanged:
        # Suspended, banned or otherwise changed since the key was last read: gate afresh.
        if forget_key is not None:
            forget_key()
        return await _run_tool(runtime, spec, raw, api_key, facts=facts)
    except AgentServerError as exc:
        if isinstance(exc, Unauthorized) and forget_key is not None:
            forget_key()
        if admitted:
            await _count_failed(runtime, caller, spec.name, counted, exc)
        return results.failure(exc)
    except Exception as exc:
        conflict = lost_update(exc)
        if conflict is not None:
            # Another call changed the same booking first; this one wrote nothing.
            if admitted:
                await _count_failed(runtime, caller, spec.name, counted, conflict)
            return results.failure(conflict)
        if database_unavailable(exc):
            # Nothing to count it in either: the database is what failed.
            facts.error = type(exc).__name__
            return results.failure(ServiceUnavailable(RETRY_AFTER_SECONDS))
        if admitted:
            await _count_failed(runtime, caller, spec.name, counted, exc)
        return internal_error_result(spec.name, exc)


class _CallerChanged(Exception):
    """The agent behind a remembered key is not as it was when the key was last read."""


async def _count_failed(
    runtime: Runtime,
    caller: Caller | None,
    tool: str,
    counted: list[UnitOfWork],
    exc: Exception,
) -> None:
    """Count an admitted call that failed against the rate limit too, unless its count was
    already committed (or it was refused for the limit itself)."""
    if caller is None or isinstance(exc, RateLimited) or any(u.committed for u in counted):
        return
    try:
        async with runtime.db.uow() as uow:
            await record_call(uow, runtime.settings, caller, tool)
            await uow.commit()
    except Exception as error:
        log.warning("tool.count_failed", tool=tool, error=type(error).__name__)

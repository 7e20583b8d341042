"""The gate in front of every MCP tool: who is calling, and may they call now?

``admit`` is the entry: it checks steps 1-4, in SPEC's order, stopping at the first failure,
and returns a ``GatePass`` that runs step 5 inside the meter's transactions (it is the
admission's ``CallGate``, ``billing.meter.admission``):

1. the API key is valid                       -> UNAUTHORIZED
2. the agent is not suspended or banned       -> ACCOUNT_INACTIVE (status, what unlocks it)
3. the agent's email is verified              -> EMAIL_NOT_VERIFIED (endpoint and body)
4. the agent is active (funded)               -> ACCOUNT_INACTIVE (deposit address, minimum)
5. the agent is within the tool's rate limit  -> RATE_LIMITED (retry_after seconds)

The price check that follows belongs to the billing meter. A refused call changes nothing
but the rate counter (only step 5 counts, and only calls that passed steps 1-4).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_server.accounts.keys import looks_like_api_key
from agent_server.accounts.models import Agent, AgentStatus, RateCounter
from agent_server.accounts.ratelimit import RateDecision, hit, peek, window_decision
from agent_server.accounts.service import RESEND_ENDPOINT, VERIFY_ENDPOINT, hash_api_key
from agent_server.kernel.config import Settings, get_settings
from agent_server.kernel.errors import (
    AccountInactive,
    AgentServerError,
    EmailNotVerified,
    RateLimited,
    Unauthorized,
)
from agent_server.kernel.store import Database, Direct, UnitOfWork, direct_rows
from agent_server.services.registration import wallet_info
from wallets.rates import RateSource

# Calls per minute per agent; other tools get Settings.rate_limit_default.
DEFAULT_TOOL_LIMITS: dict[str, int] = {"search-specialists": 100, "book-slot": 10}
RATE_WINDOW_SECONDS = 60


@dataclass(frozen=True)
class Caller:
    """The agent behind an API key, as the gate saw it."""

    agent_id: int
    name: str
    email: str
    status: AgentStatus
    email_verified: bool
    key_prefix: str
    currency: str | None


def tool_limit(settings: Settings, tool: str) -> int:
    """Calls per minute one agent may make to ``tool``."""
    if tool in settings.rate_limits:
        return settings.rate_limits[tool]
    return DEFAULT_TOOL_LIMITS.get(tool, settings.rate_limit_default)


def _unauthorized() -> Unauthorized:
    return Unauthorized(
        "Missing or invalid API key. Send 'Authorization: Bearer <api_key>' with the key "
        "returned by POST /api/agent/register (or POST /api/agent/regenerate-key).",
        {"register": "POST /api/agent/register"},
    )


_AGENT_BY_KEY_HASH = select(
    Agent.id,
    Agent.name,
    Agent.email,
    Agent.status,
    Agent.email_verified,
    Agent.api_key_prefix,
    Agent.api_key_hash,
    Agent.currency,
).where(Agent.api_key_hash == bindparam("digest"), Agent.deleted_at.is_(None))
_BY_KEY_HASH = Direct(_AGENT_BY_KEY_HASH)


async def authenticate(
    uow: UnitOfWork | AsyncConnection, settings: Settings, api_key: str | None
) -> Caller:
    """Step 1 only: the agent whose key this is, whatever its status; ``Unauthorized`` else.

    Reads in the given unit of work, or on a bare connection (one statement, no session)."""
    if not api_key or not looks_like_api_key(api_key):
        raise _unauthorized()
    digest = hash_api_key(settings, api_key)
    if isinstance(uow, UnitOfWork):
        rows = await direct_rows(uow, _BY_KEY_HASH, {"digest": digest})
        row: Any = rows[0] if rows else None
    else:
        row = (await uow.execute(_BY_KEY_HASH.statement, {"digest": digest})).first()
    return _caller_from(row, digest)


_COUNTERS = RateCounter.__table__
_BY_KEY_HASH_WITH_COUNTER = Direct(
    _AGENT_BY_KEY_HASH.add_columns(
        select(_COUNTERS.c.hits)
        .where(_COUNTERS.c.key == bindparam("counter"))
        .scalar_subquery()
        .label("hits"),
        select(_COUNTERS.c.window_start)
        .where(_COUNTERS.c.key == bindparam("counter"))
        .scalar_subquery()
        .label("window_start"),
    )
)


def _caller_from(row: Any, digest: str) -> Caller:
    """The caller in a ``_BY_KEY_HASH`` row (named columns), or ``Unauthorized``."""
    # The lookup found the row by the key's digest; compare the digests again in constant
    # time all the same (the key itself is hashed once per lookup, not twice).
    if row is None or not hmac.compare_digest(digest, row.api_key_hash):
        raise _unauthorized()
    return Caller(
        agent_id=int(row.id),
        name=row.name,
        email=row.email,
        status=AgentStatus(row.status),
        email_verified=bool(row.email_verified),
        key_prefix=row.api_key_prefix,
        currency=row.currency,
    )


async def reread(
    uow: UnitOfWork, settings: Settings, api_key: str | None, caller: Caller, tool: str
) -> tuple[Caller, RateDecision]:
    """Step 1 again for a caller remembered from an earlier request, with step 5's
    read-ahead (``precheck_call``), in one statement: the agent as it is now (``Unauthorized``
    when the key no longer is one) and whether one more call of ``tool`` would be within the
    limit. The caller compares the agent with what it remembered before using the decision."""
    if not api_key or not looks_like_api_key(api_key):
        raise _unauthorized()
    digest = hash_api_key(settings, api_key)
    rows = await direct_rows(
        uow,
        _BY_KEY_HASH_WITH_COUNTER,
        {"digest": digest, "counter": _counter_key(caller, tool)},
    )
    row = rows[0] if rows else None
    current = _caller_from(row, digest)
    assert row is not None
    counter = None
    if row.hits is not None and row.window_start is not None:
        counter = (int(row.hits), int(row.window_start))
    decision = window_decision(
        uow,
        counter,
        limit=tool_limit(settings, tool),
        window_seconds=RATE_WINDOW_SECONDS,
    )
    return current, decision


def _blocked(caller: Caller) -> AccountInactive:
    if caller.status is AgentStatus.SUSPENDED:
        return AccountInactive(
            "This agent is suspended. An operator must reactivate it; contact the operator "
            "of this server.",
            {"status": caller.status.value, "unlock": "operator reactivation"},
        )
    return AccountInactive(
        "This agent is banned and cannot call tools.",
        {"status": caller.status.value, "unlock": "none; bans are permanent"},
    )


def _unverified(caller: Caller) -> EmailNotVerified:
    return EmailNotVerified(
        f"Verify your email first: send the 6-digit code mailed to {caller.email} to "
        f"{VERIFY_ENDPOINT}. No code? {RESEND_ENDPOINT} sends a new one.",
        {
            "verify": {
                "endpoint": VERIFY_ENDPOINT,
                "body": {"email": caller.email, "code": "<6-digit code>"},
            },
            "resend": {"endpoint": RESEND_ENDPOINT, "body": {"email": caller.email}},
        },
    )


async def _unfunded(
    uow: UnitOfWork, settings: Settings, caller: Caller, rates: RateSource | None
) -> AccountInactive:
    wallet = await wallet_info(uow, settings, caller.agent_id, caller.currency, rates)
    return AccountInactive(
        f"This agent is not active yet: deposit at least {wallet.minimum_deposit} "
        f"{wallet.currency} (~{wallet.minimum_deposit_usd} USD) to {wallet.deposit_address}. "
        "It activates after the deposit is confirmed.",
        {
            "status": caller.status.value,
            "unlock": "a confirmed deposit worth at least the activation amount",
            "currency": wallet.currency,
            "deposit_address": wallet.deposit_address,
            "minimum_deposit": wallet.minimum_deposit,
            "minimum_deposit_usd": wallet.minimum_deposit_usd,
        },
    )


def _first_refusal(caller: Caller) -> AgentServerError | None:
    """Steps 2-3 on a caller already read, or None when they pass."""
    if caller.status in (AgentStatus.SUSPENDED, AgentStatus.BANNED):
        return _blocked(caller)
    if not caller.email_verified:
        return _unverified(caller)
    return None


async def _check(
    uow: UnitOfWork,
    settings: Settings,
    api_key: str | None,
    rates: RateSource | None,
    authenticated: Caller | None,
) -> Caller:
    caller = authenticated or await authenticate(uow, settings, api_key)
    refusal = _first_refusal(caller)
    if refusal is not None:
        raise refusal
    if caller.status is not AgentStatus.ACTIVE:
        raise await _unfunded(uow, settings, caller, rates)
    return caller


def _counter_key(caller: Caller, tool: str) -> str:
    return f"tool:{caller.agent_id}:{tool}"[:200]


async def record_call(
    uow: UnitOfWork, settings: Settings, caller: Caller, tool: str
) -> RateDecision:
    """Count one call of ``tool`` by ``caller`` in the given transaction (no refusal)."""
    return await hit(
        uow,
        _counter_key(caller, tool),
        limit=tool_limit(settings, tool),
        window_seconds=RATE_WINDOW_SECONDS,
    )


async def count_call(uow: UnitOfWork, settings: Settings, caller: Caller, tool: str) -> None:
    """Step 5: count this call against the agent's per-minute limit for ``tool``, in the
    given transaction; ``RateLimited`` when it is over."""
    refuse_if_over(await record_call(uow, settings, caller, tool), tool)


def refuse_if_over(decision: RateDecision, tool: str) -> None:
    """``RateLimited`` when ``decision`` (a count or a read-ahead) is over the limit."""
    if not decision.allowed:
        raise RateLimited(
            f"Rate limit of {decision.limit} {tool} calls a minute reached; retry in "
            f"{decision.retry_after} seconds.",
            {
                "retry_after": decision.retry_after,
                "limit": decision.limit,
                "window_seconds": RATE_WINDOW_SECONDS,
                "tool": tool,
            },
        )


async def precheck_call(uow: UnitOfWork, settings: Settings, caller: Caller, tool: str) -> None:
    """Step 5 read ahead: ``RateLimited`` when the limit is already reached, counting nothing
    and locking nothing. ``count_call`` still decides, later in the same transaction, so a
    call can do its work before it takes the counter's row lock, just before it commits."""
    decision = await peek(
        uow,
        _counter_key(caller, tool),
        limit=tool_limit(settings, tool),
        window_seconds=RATE_WINDOW_SECONDS,
    )
    refuse_if_over(decision, tool)


async def check(
    db: Database,
    api_key: str | None,
    *,
    settings: Settings,
    rates: RateSource | None = None,
    authenticated: Caller | None = None,
) -> Caller:
    """Steps 1-4 of ``admit``; the caller then counts the call (``count_call``) in a
    transaction of its own choosing. With ``authenticated`` given and every step passing,
    no database work at all; a refusal's funding hint may allocate a deposit address, which
    is committed."""
    if authenticated is not None and authenticated.status is AgentStatus.ACTIVE:
        refusal = _first_refusal(authenticated)
        if refusal is not None:
            raise refusal
        return authenticated
    async with db.uow() as uow:
        try:
            return await _check(uow, settings, api_key, rates, authenticated)
        except AgentServerError:
            await uow.commit()
            raise


class CallerChanged(Exception):
    """The agent behind a remembered key is not as it was when the key was last read."""


@dataclass
class GatePass:
    """A caller past steps 1-4 for one call of ``tool``; step 5, the rate count, runs in the
    meter's transactions (``billing.meter.CallGate``): read ahead before the work, counted
    just before the call commits.

    ``recheck``: the caller was remembered from an earlier request rather than read now, so
    ``before_work`` reads the agent again with the key and raises ``CallerChanged`` when it is
    not as remembered (the transport then gates the call afresh). ``admitted`` is false while
    such a caller is unconfirmed: a call refused then is not counted."""

    settings: Settings
    caller: Caller
    tool: str
    api_key: str | None = None
    recheck: bool = False
    admitted: bool = True
    _counted_in: list[UnitOfWork] = field(default_factory=list)

    async def before_work(self, uow: UnitOfWork) -> None:
        """Step 5 read ahead (and step 1 again for a remembered caller)."""
        if not self.recheck:
            await precheck_call(uow, self.settings, self.caller, self.tool)
            return
        self.admitted = False
        current, decision = await reread(uow, self.settings, self.api_key, self.caller, self.tool)
        caller = self.caller
        if (current.agent_id, current.status, current.email_verified) != (
            caller.agent_id,
            caller.status,
            caller.email_verified,
        ):
            raise CallerChanged
        self.admitted = True
        refuse_if_over(decision, self.tool)

    async def before_commit(self, uow: UnitOfWork) -> None:
        """Step 5: count the call in its transaction; ``RateLimited`` when over the limit."""
        await count_call(uow, self.settings, self.caller, self.tool)
        self._counted_in.append(uow)

    async def count_failed(self, db: Database, exc: BaseException) -> None:
        """Count an admitted call that failed against the rate limit too, in a transaction of
        its own, unless its count was already committed or it was refused for the limit."""
        if not self.admitted or isinstance(exc, RateLimited):
            return
        if any(uow.committed for uow in self._counted_in):
            return
        async with db.uow() as uow:
            await record_call(uow, self.settings, self.caller, self.tool)
            await uow.commit()


async def admit(
    db: Database,
    api_key: str | None,
    tool: str,
    *,
    settings: Settings | None = None,
    rates: RateSource | None = None,
    authenticated: Caller | None = None,
    recheck: bool = False,
) -> GatePass:
    """Let the holder of ``api_key`` call ``tool`` (steps 1-4, see ``check``), or raise the
    first failing step's error; the pass counts the call (step 5) in the meter's transaction.

    Transports pass their runtime's settings (the process settings are the default) and rate
    source (used to price the activation deposit in the funding hint; static rates if
    omitted). ``authenticated`` is the caller a transport already resolved from this very key
    (the MCP HTTP endpoint's bearer check); ``recheck`` says it was remembered from an earlier
    request rather than read for this one (see ``GatePass``).
    """
    settings = settings or get_settings()
    caller = await check(db, api_key, settings=settings, rates=rates, authenticated=authenticated)
    return GatePass(settings, caller, tool, api_key=api_key, recheck=recheck)

"""Prices, metering, the double-entry ledger and usage.

Every amount is an integer in a currency's base unit (satoshi, gwei, 10^-6 for USDT and USDC);
USD prices are micro-dollars. Nothing here commits unless it says so: services take an entered
``UnitOfWork`` and the caller commits.

Wallet money from outside the tool calls (``billing.wallet_funds``), for the chain watchers and
the operator CLI::

    async def credit_deposit(uow, *, agent_id: int, currency: str, amount: int,
                             usd_micros: int, reference: str) -> int
        Credit a confirmed deposit (deposits clearing -> the agent's wallet in ``currency``,
        opened on first use). Idempotent by ``reference`` (use the chain's unique key, e.g.
        "eth:1:<tx hash>:<log index>"): a second call moves nothing and returns the first
        transaction's id. Returns the ledger transaction id.

    async def reverse_deposit(uow, *, reference: str, reason: str) -> int | None
        Reverse a credited deposit that left the chain (a reorg) with a NEW transaction;
        None if nothing was credited under ``reference``; idempotent. The wallet never goes
        below zero: if the agent already spent part of the deposit, the wallet gives back what
        it holds and the shortfall is debited to the agent's receivable account
        ("receivable:agent:<id>:<currency>"), recording what the agent owes.

    async def balances(uow, agent_id: int) -> dict[str, int]
        The agent's wallet balances by currency, in paying order.

    async def open_wallet(uow, agent_id: int, currency: str) -> AccountRef
        Open the agent's wallet in a currency (zero balance) ahead of its first deposit.

    async def adjust_balance(uow, *, agent_id, currency, amount: int, reason: str,
                             reference: str | None = None) -> int
        An operator credit (amount > 0) or debit (amount < 0); a debit never overdraws.

Which wallet pays a tool call: the agent's preferred currency (``agents.currency``) first,
then its other wallets in the order they were opened; the first whose balance covers the
price, converted at the current rate (rounded up), pays all of it.

Tool calls (``billing.meter``, one module per concern), for the MCP tool pipeline::

    async def run_metered(db, admission: Admission,
                          operation: Callable[[MeteredCall], Awaitable[dict]],
                          *, config: BillingConfig) -> Metered
        Charge a successful call exactly once and a failed or refused one never. The
        ``Admission`` says who calls which tool (agent_id, tool, arguments, idempotency_key,
        extra_price, durable) and carries the caller's hooks: ``gate`` (a ``CallGate``, the
        rate count in the meter's transactions) and ``on_balance_low`` (told each debit).
        Read tools pay in the operation's own transaction; tools with ``hold = true`` in the
        price list hold first, then capture (or release on failure). ``extra_price`` (a slot
        price) is held too and moved to escrow when the operation calls
        ``await call.escrow(booking)``; or give a ``price_lookup`` that reads it (for a held
        tool, in the transaction that claims the key and counts the call).
        ``Metered.result`` is the operation's dict,
        ``Metered.receipt`` the ``Receipt`` (call_id, tool, price_usd_micros, currency,
        amount, balance_after, rate, free, escrowed), ``Metered.replayed`` true for a stored
        idempotent answer. Raises what the gate and the operation raise, InsufficientFunds,
        SpendingCapReached, IdempotencyMismatch.

    async def quote(db, *, agent_id, tool, extra_price=None, config) -> Quote
    async def release_stale_holds(db, older_than: timedelta) -> int     (run periodically)
    billing.idempotency.purge_idempotency_keys(db, older_than=24h) -> int  (run periodically)

Bookings (``billing.escrow``, ``billing.rebooking``), in the booking change's unit of work::

    async def escrow_booking(uow, booking, *, amount, currency, price_usd_micros, rate,
                             hold=None) -> int | None
    async def refund_booking(uow, booking, *, policy=None) -> Settlement | None
        On cancellation or rejection: 100 % when the specialist or the system cancelled or
        the booking was rejected, or when the agent cancelled >= 24 h before the start;
        otherwise 50 % (rest to the payee less commission). Idempotent per booking.
    async def payout_booking(uow, booking, *, policy=None) -> Settlement | None
        On completion: the payee gets the slot price less 10 % commission. Idempotent.
    async def move_escrow(uow, old, new) -> bool          (a rescheduled booking)

Usage and history (``billing.usage``)::

    async def usage_for(uow, agent_id, period: str | None = None) -> Usage
    async def transactions_for(uow, agent_id, page: int = 1) -> HistoryPage  (50 a page)

Caps (``billing.caps``): ``set_spending_caps(uow, agent_id, *, daily_usd_micros,
monthly_usd_micros)``. Prices (``billing.prices``): ``load_price_list(path)``; rates and
conversions: ``wallets.rates``.
"""

from billing.ledger import AccountRef, open_wallet
from billing.wallet_funds import adjust_balance, balances, credit_deposit, reverse_deposit

__all__ = [
    "AccountRef",
    "adjust_balance",
    "balances",
    "credit_deposit",
    "open_wallet",
    "reverse_deposit",
]

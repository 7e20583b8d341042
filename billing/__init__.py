"""Prices, metering, the double-entry ledger and usage.

Every amount is an integer in a currency's base unit (satoshi, wei, 10^-6 for USDT and USDC);
USD prices are micro-dollars. Nothing here commits unless it says so: services take an entered
``UnitOfWork`` and the caller commits.

Wallet money from outside the tool calls (``billing.deposits``), for the chain watchers and
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

Tool calls (``billing.meter``): ``run_metered`` charges a successful call exactly once and a
failed or refused one never; ``quote`` prices a call without running it. Bookings
(``billing.escrow``): ``escrow_booking``, ``refund_booking``, ``payout_booking``. Usage and
history: ``billing.usage``.
"""

from billing.deposits import adjust_balance, balances, credit_deposit, reverse_deposit
from billing.ledger import AccountRef, open_wallet

__all__ = [
    "AccountRef",
    "adjust_balance",
    "balances",
    "credit_deposit",
    "open_wallet",
    "reverse_deposit",
]

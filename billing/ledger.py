"""Posting to the double-entry ledger.

``post`` is the only way money moves. It takes legs (account, debit or credit), checks they sum
to zero per currency, inserts the transaction under its unique reference (a second posting of
the same reference changes nothing and returns the first one's id), updates cached wallet
balances with conditional UPDATEs, and inserts the entries: all inside the caller's unit of
work, which commits or rolls back the lot.

A wallet debit is ``UPDATE ... SET balance = balance - :x WHERE id = :id AND balance >= :x``:
no row back means ``InsufficientFunds``. Callers roll their unit of work back on any exception
(``async with uow`` does), so a refused posting leaves no trace.

On PostgreSQL the transaction row, its wallet updates and its entries are ONE statement
(data-modifying CTEs; the updates and entries only happen when the reference is new); on
SQLite they are three statements sent straight to the unit of work's driver connection. Either
way a charge costs as few trips to the database as the work allows.
"""

# Long by design: the one door for money; its two posting paths stay side by side.

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import BigInteger, Table, column, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agent_server.kernel.errors import InsufficientFunds
from agent_server.kernel.store import Database, Direct, UnitOfWork, column_binds, direct_rows
from billing.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction
from wallets.currencies import currency_info


class LedgerError(Exception):
    """A posting that can never be valid (a bug in the caller, not a user error)."""


class ReferenceConflict(LedgerError):
    """A reference already names a different transaction (other kind or amount)."""


@dataclass(frozen=True)
class AccountRef:
    """The identity of an account, enough to post to it."""

    id: int
    kind: AccountKind
    currency: str

    @property
    def cached(self) -> bool:
        """Whether the account keeps a cached, never-negative balance (wallets)."""
        return self.kind is AccountKind.WALLET


@dataclass(frozen=True)
class Leg:
    """A debit or a credit of one account, in base units of the account's currency."""

    account: AccountRef
    debit: int = 0
    credit: int = 0

    def __post_init__(self) -> None:
        if self.debit < 0 or self.credit < 0 or (self.debit == 0) == (self.credit == 0):
            raise LedgerError(f"a leg needs exactly one positive side: {self}")


def debit(account: AccountRef, amount: int) -> Leg:
    return Leg(account, debit=amount)


def credit(account: AccountRef, amount: int) -> Leg:
    return Leg(account, credit=amount)


@dataclass
class Posted:
    """The outcome of ``post``: the transaction id, and whether this call created it."""

    transaction_id: int
    created: bool
    # Cached balances after the posting, for the wallets it touched (empty on a replay).
    balances: dict[int, int] = field(default_factory=dict)


def account_key(
    kind: AccountKind,
    currency: str,
    *,
    agent_id: int | None = None,
    specialist_id: int | None = None,
) -> str:
    """The unique readable name of an account."""
    if agent_id is not None:
        return f"{kind.value}:agent:{agent_id}:{currency}"
    if specialist_id is not None:
        return f"{kind.value}:specialist:{specialist_id}:{currency}"
    return f"{kind.value}:{currency}"


@cache
def _insert_ignoring(
    sqlite: bool, table: Table, conflict: tuple[str, ...], names: tuple[str, ...]
) -> Direct:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` for ``table``, a bind parameter per
    column in ``names``, built once per dialect, table and set of columns."""
    insert = sqlite_insert if sqlite else pg_insert
    return Direct(
        insert(table)
        .values(column_binds(table, names))
        .on_conflict_do_nothing(index_elements=list(conflict))
        .returning(table.c.id)
    )


async def insert_or_none(
    uow: UnitOfWork, table: Table, values: dict[str, Any], conflict: Sequence[str]
) -> int | None:
    """Insert a row unless it conflicts with ``conflict``; the new id, or None if it existed.

    On PostgreSQL a conflicting insert waits for the other writer's transaction and then
    does nothing if that one committed: the database, not Python, decides who was first.
    One statement straight to the driver.
    """
    stmt = _insert_ignoring(uow.db.is_sqlite, table, tuple(conflict), tuple(sorted(values)))
    rows = await direct_rows(uow, stmt, values)
    return int(rows[0][0]) if rows else None


_ACCOUNTS: Table = LedgerAccount.__table__  # type: ignore[assignment]
_TRANSACTIONS: Table = LedgerTransaction.__table__  # type: ignore[assignment]
_ENTRIES: Table = LedgerEntry.__table__  # type: ignore[assignment]


# Account ids never change once committed, so each database's are remembered after the
# first look-up. Only rows known to be committed are remembered: never one this session
# inserted itself, which a rollback could still undo.
_KNOWN_ACCOUNTS: WeakKeyDictionary[Database, dict[str, int]] = WeakKeyDictionary()
_CREATED_HERE = "billing.accounts_created"


async def open_account(
    uow: UnitOfWork,
    kind: AccountKind,
    currency: str,
    *,
    agent_id: int | None = None,
    specialist_id: int | None = None,
) -> AccountRef:
    """The account of that kind, currency and owner, created on first use."""
    code = currency_info(currency).code
    key = account_key(kind, code, agent_id=agent_id, specialist_id=specialist_id)
    known = _KNOWN_ACCOUNTS.setdefault(uow.db, {})
    if key in known:
        return AccountRef(known[key], kind, code)
    created_here: set[str] = uow.session.info.setdefault(_CREATED_HERE, set())
    found = (
        await uow.session.execute(select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.key == key))
    ).first()
    if found is not None:
        if key not in created_here:
            known[key] = int(found[0])
        return AccountRef(int(found[0]), kind, code)
    new_id = await insert_or_none(
        uow,
        _ACCOUNTS,
        {
            "key": key,
            "kind": kind.value,
            "currency": code,
            "agent_id": agent_id,
            "specialist_id": specialist_id,
            "balance": 0 if kind is AccountKind.WALLET else None,
            "created_at": uow.clock.now(),
        },
        ["key"],
    )
    if new_id is not None:
        created_here.add(key)
        return AccountRef(new_id, kind, code)
    # Another transaction created it and committed first.
    account_id = (
        await uow.session.execute(select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.key == key))
    ).scalar_one()
    known[key] = int(account_id)
    return AccountRef(int(account_id), kind, code)


async def open_wallet(uow: UnitOfWork, agent_id: int, currency: str) -> AccountRef:
    """The agent's wallet in ``currency``, created (with a zero balance) on first use.

    Wallets pay in the order they were opened: open the agent's chosen currency first.
    """
    return await open_account(uow, AccountKind.WALLET, currency, agent_id=agent_id)


async def system_account(uow: UnitOfWork, kind: AccountKind, currency: str) -> AccountRef:
    """A platform account (clearing, holds, escrow, revenue, adjustments) in ``currency``."""
    return await open_account(uow, kind, currency)


def check_balanced(legs: Iterable[Leg]) -> None:
    """Raise ``LedgerError`` unless debits equal credits in every currency."""
    totals: dict[str, int] = defaultdict(int)
    count = 0
    for leg in legs:
        totals[leg.account.currency] += leg.debit - leg.credit
        count += 1
    if count < 2:
        raise LedgerError("a transaction needs at least two legs")
    unbalanced = {cur: total for cur, total in totals.items() if total != 0}
    if unbalanced:
        raise LedgerError(f"transaction does not sum to zero: {unbalanced}")


async def post(
    uow: UnitOfWork,
    *,
    kind: str,
    reference: str,
    legs: Sequence[Leg],
    currency: str,
    amount: int,
    agent_id: int | None = None,
    booking_id: int | None = None,
    call_id: str | None = None,
    tool: str | None = None,
    price_usd_micros: int | None = None,
    rate: int | None = None,
    reverses_id: int | None = None,
    memo: str = "",
) -> Posted:
    """Record one balanced transaction; idempotent by ``reference``.

    ``currency`` and ``amount`` are the transaction's headline figure for history and usage.
    Raises ``InsufficientFunds`` (with ``details.account_id``) if a wallet debit would go
    below zero, ``ReferenceConflict`` if the reference names another kind or amount, and
    ``LedgerError`` for an unbalanced set of legs.
    """
    check_balanced(legs)
    values: dict[str, Any] = {
        "kind": str(kind),
        "reference": reference,
        "agent_id": agent_id,
        "booking_id": booking_id,
        "call_id": call_id,
        "tool": tool,
        "currency": currency,
        "amount": amount,
        "price_usd_micros": price_usd_micros,
        "rate": rate,
        "reverses_id": reverses_id,
        "memo": memo,
        "created_at": uow.clock.now(),
    }
    if uow.db.is_sqlite:
        new_id, balances = await _post_in_steps(uow, values, legs)
    else:
        new_id, balances = await _post_in_one_statement(uow, values, legs)
    if new_id is None:
        existing = (
            await uow.session.execute(
                select(_TRANSACTIONS.c.id, _TRANSACTIONS.c.kind, _TRANSACTIONS.c.amount).where(
                    _TRANSACTIONS.c.reference == reference
                )
            )
        ).one()
        if existing.kind != str(kind) or existing.amount != amount:
            raise ReferenceConflict(
                f"reference {reference!r} is already a {existing.kind} of {existing.amount}"
            )
        return Posted(int(existing.id), created=False)
    return Posted(new_id, created=True, balances=balances)


def _wallet_changes(legs: Sequence[Leg]) -> list[tuple[int, int]]:
    """(wallet id, net change) for the cached accounts among ``legs``, by id: a stable order,
    so two postings touching the same wallets lock them in the same order."""
    net: dict[int, int] = defaultdict(int)
    for leg in legs:
        if leg.account.cached:
            net[leg.account.id] += leg.credit - leg.debit
    return sorted(net.items())


def _refused(account_id: int, change: int) -> InsufficientFunds:
    return InsufficientFunds(
        "The wallet balance is too low for this payment.",
        {"account_id": account_id, "required": -change},
    )


_SQLITE_TRANSACTION = (
    "INSERT INTO ledger_transactions (kind, reference, agent_id, booking_id, call_id, tool, "
    "currency, amount, price_usd_micros, rate, reverses_id, memo, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (reference) DO NOTHING"
)
_SQLITE_WALLET = (
    "UPDATE ledger_accounts SET balance = balance + ? WHERE id = ? AND balance >= ? "
    "RETURNING balance"
)
_SQLITE_ENTRIES: dict[int, str] = {}


def _sqlite_entries(legs: int) -> str:
    """One ``INSERT`` of all the transaction's entries, in leg order (built once per count)."""
    if legs not in _SQLITE_ENTRIES:
        _SQLITE_ENTRIES[legs] = (
            "INSERT INTO ledger_entries (transaction_id, account_id, currency, debit, credit) "
            "VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * legs)
        )
    return _SQLITE_ENTRIES[legs]


async def _post_in_steps(
    uow: UnitOfWork, values: dict[str, Any], legs: Sequence[Leg]
) -> tuple[int | None, dict[int, int]]:
    """SQLite: the transaction row, then the conditional wallet updates, then the entries
    (one multi-row insert).

    These three statements go straight to the driver connection of the unit of work (same
    connection, same transaction): through the async adapter each statement would cost four
    hops to the driver's thread (cursor, execute, fetch, close), here it costs one.
    """
    dialect, driver = await uow.driver_connection()
    # The processor SQLAlchemy applies (the column type's implementation for the dialect):
    # the timestamp stored as the same text as every other one, microseconds included.
    stamp = _TRANSACTIONS.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    created_at = stamp(values["created_at"]) if stamp else values["created_at"]
    cursor = await driver.execute(
        _SQLITE_TRANSACTION,
        (
            values["kind"],
            values["reference"],
            values["agent_id"],
            values["booking_id"],
            values["call_id"],
            values["tool"],
            values["currency"],
            values["amount"],
            values["price_usd_micros"],
            values["rate"],
            values["reverses_id"],
            values["memo"],
            created_at,
        ),
    )
    if cursor.rowcount != 1:
        return None, {}
    new_id = int(cursor.lastrowid)
    balances: dict[int, int] = {}
    for wallet, change in _wallet_changes(legs):
        rows = await driver.execute_fetchall(_SQLITE_WALLET, (change, wallet, max(-change, 0)))
        if not rows:
            raise _refused(wallet, change)
        balances[wallet] = int(next(iter(rows))[0])
    await driver.execute(
        _sqlite_entries(len(legs)),
        [
            value
            for leg in legs
            for value in (new_id, leg.account.id, leg.account.currency, leg.debit, leg.credit)
        ],
    )
    return new_id, balances


_ONE_STATEMENT: dict[tuple[int, int], Direct] = {}
_TXN_COLUMNS = (
    ("kind", "VARCHAR"),
    ("reference", "VARCHAR"),
    ("agent_id", "BIGINT"),
    ("booking_id", "BIGINT"),
    ("call_id", "VARCHAR"),
    ("tool", "VARCHAR"),
    ("currency", "VARCHAR"),
    ("amount", "BIGINT"),
    ("price_usd_micros", "BIGINT"),
    ("rate", "BIGINT"),
    ("reverses_id", "BIGINT"),
    ("memo", "TEXT"),
    ("created_at", "TIMESTAMPTZ"),
)


def _one_statement(legs: int, wallets: int) -> Direct:
    """PostgreSQL: the transaction, its wallet updates and its entries in ONE statement.

    The wallet updates and the entries only happen if the transaction row was inserted (its
    reference is new); a wallet whose balance does not cover its debit is not updated and
    comes back NULL, and the caller raises so the whole transaction rolls back.
    """
    # The SQL is assembled from constant names and leg counters only; every value is a bound
    # parameter (hence the S608 exemptions below).
    shape = (legs, wallets)
    if shape not in _ONE_STATEMENT:
        columns = ", ".join(name for name, _ in _TXN_COLUMNS)
        params = ", ".join(f"CAST(:{name} AS {kind})" for name, kind in _TXN_COLUMNS)
        parts = [
            f"t AS (INSERT INTO ledger_transactions ({columns}) VALUES ({params}) "  # noqa: S608
            "ON CONFLICT (reference) DO NOTHING RETURNING id)"
        ]
        for i in range(wallets):
            parts.append(
                f"w{i} AS (UPDATE ledger_accounts"  # noqa: S608
                f" SET balance = balance + CAST(:change{i} AS BIGINT)"
                f" WHERE id = CAST(:wallet{i} AS BIGINT) AND balance >= CAST(:needed{i} AS BIGINT)"
                " AND EXISTS (SELECT 1 FROM t) RETURNING balance)"
            )
        rows = ", ".join(
            f"(CAST(:account{i} AS BIGINT), CAST(:currency{i} AS VARCHAR), "
            f"CAST(:debit{i} AS BIGINT), CAST(:credit{i} AS BIGINT))"
            for i in range(legs)
        )
        parts.append(
            "e AS (INSERT INTO ledger_entries"  # noqa: S608
            " (transaction_id, account_id, currency, debit, credit)"
            " SELECT t.id, v.account_id, v.currency, v.debit, v.credit FROM t CROSS JOIN "
            f"(VALUES {rows}) AS v(account_id, currency, debit, credit)"
            # Reading the wallet updates makes them run (and take their row locks) before the
            # entries draw their ids, so a wallet's entries are numbered in lock order.
            + "".join(f" CROSS JOIN w{i}" for i in range(wallets))
            + ")"
        )
        outputs = ", ".join(
            ["(SELECT id FROM t) AS txn"]
            + [f"(SELECT balance FROM w{i}) AS b{i}" for i in range(wallets)]  # noqa: S608
        )
        named = [column("txn", BigInteger), *(column(f"b{i}", BigInteger) for i in range(wallets))]
        _ONE_STATEMENT[shape] = Direct(
            text(f"WITH {', '.join(parts)} SELECT {outputs}").columns(*named)
        )
    return _ONE_STATEMENT[shape]


async def _post_in_one_statement(
    uow: UnitOfWork, values: dict[str, Any], legs: Sequence[Leg]
) -> tuple[int | None, dict[int, int]]:
    changes = _wallet_changes(legs)
    params = dict(values)
    for i, (wallet, change) in enumerate(changes):
        params.update({f"wallet{i}": wallet, f"change{i}": change, f"needed{i}": max(-change, 0)})
    for i, leg in enumerate(legs):
        params.update(
            {
                f"account{i}": leg.account.id,
                f"currency{i}": leg.account.currency,
                f"debit{i}": leg.debit,
                f"credit{i}": leg.credit,
            }
        )
    (row,) = await direct_rows(uow, _one_statement(len(legs), len(changes)), params)
    if row.txn is None:
        return None, {}
    balances: dict[int, int] = {}
    for i, (wallet, change) in enumerate(changes):
        if row[i + 1] is None:
            raise _refused(wallet, change)
        balances[wallet] = int(row[i + 1])
    return int(row.txn), balances


async def account_balance_from_entries(uow: UnitOfWork, account_id: int) -> int:
    """Credits minus debits of an account, summed from its entries."""
    total = (
        await uow.session.execute(
            select(func.coalesce(func.sum(_ENTRIES.c.credit - _ENTRIES.c.debit), 0)).where(
                _ENTRIES.c.account_id == account_id
            )
        )
    ).scalar_one()
    return int(total)


async def transaction_id_for(uow: UnitOfWork, reference: str) -> int | None:
    """The id of the transaction posted under ``reference``, if any."""
    found = (
        await uow.session.execute(
            select(_TRANSACTIONS.c.id).where(_TRANSACTIONS.c.reference == reference)
        )
    ).first()
    return None if found is None else int(found[0])

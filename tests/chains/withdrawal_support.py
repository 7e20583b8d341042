"""Helpers for the sender tests: a funded hot wallet, approved withdrawals, ledger figures."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

from chain_support import make_agent
from eth_account import Account
from pydantic import SecretStr
from sqlalchemy import func, select
from web3 import AsyncWeb3

from agent_server.events.models import OutboxEvent
from agent_server.kernel.store import Database
from agent_server.services.withdrawal_sender import SENDER_FOLLOW_UP
from billing.ledger import credit, debit, open_wallet, post, system_account
from billing.models import AccountKind, LedgerAccount, LedgerEntry, TransactionKind
from billing.wallet_funds import adjust_balance
from wallets.chains.anvil import DEV_ACCOUNT, send_value
from wallets.chains.tokens import transfer
from wallets.currencies import currency_info
from wallets.sending.chains import EvmSigner
from wallets.sending.keys import SenderSettings, load_evm_account, write_keystore
from wallets.sending.sender import WithdrawalSender
from wallets.withdrawal_models import (
    Withdrawal,
    WithdrawalAddress,
    WithdrawalSendAttempt,
)

PASSWORD = "correct horse battery staple"


def new_hot_wallet(directory: Path) -> tuple[Path, str]:
    """A fresh key in a keystore at ``directory``; (keystore path, address)."""
    key = "0x" + secrets.token_hex(32)
    path = directory / "keystore.json"
    return path, write_keystore(path, key, PASSWORD)


async def fund_hot_wallet(
    w3: AsyncWeb3[Any], address: str, tokens: dict[str, str], *, token_units: int = 10**9
) -> None:
    await send_value(w3, address, 10 * 10**18)
    for contract in tokens.values():
        await transfer(w3, contract, address, token_units, sender=DEV_ACCOUNT)


async def evm_sender(
    db: Database,
    w3: AsyncWeb3[Any],
    keystore: Path,
    *,
    confirmations: int = 3,
    replace_after: float = 3600.0,
) -> WithdrawalSender:
    settings = SenderSettings(keystore=keystore, keystore_password=SecretStr(PASSWORD))
    account = load_evm_account(settings)
    signer = EvmSigner(w3, int(await w3.eth.chain_id), account, settings.token_gas_limit)
    return WithdrawalSender(
        db, signer, SENDER_FOLLOW_UP, confirmations=confirmations, replace_after=replace_after
    )


def external_address() -> str:
    return str(Account.create().address)


async def approved_withdrawal(
    db: Database,
    agent_id: int,
    currency: str,
    amount: int,
    fee: int,
    address: str,
    *,
    network: str = "evm",
) -> str:
    """A withdrawal as the request step leaves it once approved: amount + fee moved from
    the wallet to the pending-withdrawal account. Its public id."""
    code = currency_info(currency).code
    public_id = f"wd_{uuid.uuid4().hex}"
    async with db.uow() as uow:
        now = uow.clock.now()
        row = WithdrawalAddress(
            owner=f"agent:{agent_id}",
            agent_id=agent_id,
            currency=code,
            network=network,
            address=address,
            label="",
            code_tries=0,
            confirmed_at=now,
            usable_after=now,
            created_at=now,
        )
        uow.session.add(row)
        await uow.flush()
        wallet = await open_wallet(uow, agent_id, code)
        pending = await system_account(uow, AccountKind.WITHDRAWING, code)
        posted = await post(
            uow,
            kind=TransactionKind.WITHDRAWAL,
            reference=f"withdrawal:{public_id}",
            legs=[debit(wallet, amount + fee), credit(pending, amount + fee)],
            currency=code,
            amount=amount + fee,
            agent_id=agent_id,
        )
        uow.session.add(
            Withdrawal(
                public_id=public_id,
                kind="withdrawal",
                owner=f"agent:{agent_id}",
                agent_id=agent_id,
                currency=code,
                network=network,
                address_id=row.id,
                address=address,
                amount=amount,
                fee=fee,
                network_fee_estimate=fee,
                status="approved",
                needs_approval=False,
                reason="",
                requested_at=now,
                updated_at=now,
                approved_at=now,
                request_txn_id=posted.transaction_id,
                confirmations=0,
            )
        )
        await uow.commit()
    return public_id


async def funded_agent(db: Database, balances: dict[str, int]) -> int:
    agent_id = await make_agent(db, f"w{secrets.token_hex(3)}")
    async with db.uow() as uow:
        for currency, amount in balances.items():
            await adjust_balance(
                uow, agent_id=agent_id, currency=currency, amount=amount, reason="test funds"
            )
        await uow.commit()
    return agent_id


async def withdrawal(db: Database, public_id: str) -> Withdrawal:
    async with db.uow() as uow:
        row = (
            await uow.session.execute(select(Withdrawal).where(Withdrawal.public_id == public_id))
        ).scalar_one()
        uow.session.expunge(row)
        return row


async def attempts(db: Database, public_id: str) -> list[WithdrawalSendAttempt]:
    async with db.uow() as uow:
        rows = list(
            (
                await uow.session.execute(
                    select(WithdrawalSendAttempt)
                    .join(Withdrawal, Withdrawal.id == WithdrawalSendAttempt.withdrawal_id)
                    .where(Withdrawal.public_id == public_id)
                    .order_by(WithdrawalSendAttempt.attempt)
                )
            ).scalars()
        )
        uow.session.expunge_all()
        return rows


async def system_balance(db: Database, kind: AccountKind, currency: str) -> int:
    """Credits minus debits of the platform account ``kind`` in ``currency``."""
    async with db.uow() as uow:
        total = await uow.session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.credit - LedgerEntry.debit), 0))
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(
                LedgerAccount.kind == kind.value,
                LedgerAccount.currency == currency,
                LedgerAccount.agent_id.is_(None),
                LedgerAccount.specialist_id.is_(None),
            )
        )
        return int(total or 0)


async def events(db: Database, agent_id: int) -> list[tuple[str, dict[str, Any]]]:
    async with db.uow() as uow:
        rows = await uow.session.execute(
            select(OutboxEvent.type, OutboxEvent.payload)
            .where(OutboxEvent.agent_id == agent_id)
            .order_by(OutboxEvent.id)
        )
        return [(str(t), dict(p)) for t, p in rows.all()]


async def token_balance(w3: AsyncWeb3[Any], contract: str, holder: str) -> int:
    data = "0x70a08231" + holder[2:].lower().rjust(64, "0")
    result = await w3.eth.call(
        {"to": AsyncWeb3.to_checksum_address(contract), "data": data}  # type: ignore[typeddict-item]
    )
    return int(result.hex() or "0", 16)

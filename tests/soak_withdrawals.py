"""The soak's money-out part: withdrawals and payouts sent by two ``send-withdrawals``
processes on one PostgreSQL database and a real anvil, one of them killed with SIGKILL again
and again, then checked against a reference model and the chain.

``run_withdrawal_soak`` (called by ``soak.run_soak``, or on its own):

1. starts anvil, deploys USDT and USDC, registers them, makes a hot wallet (a keystore and its
   password file) funded with ETH and a little USDT, so one large USDT withdrawal fails on
   chain;
2. creates agents funded by operator credits and provider agents owed money (payable accounts),
   and requests withdrawals (ETH, USDT, USDC) and payouts through the withdrawal services,
   each to a new address confirmed with the code from the mail outbox, the cooling-off time
   zero; one is cancelled before it is sent; more are requested while the senders run;
3. runs two senders, a block mined every quarter second; kills one with SIGKILL at random
   moments and starts it again;
4. once every withdrawal has ended, ``audit`` compares the database and the chain with a
   plain-Python model: each wallet and payable balance is its funding less what left it
   (amount and fee of every withdrawal not returned), the pending-withdrawal account is
   empty, the outflow and network-fee accounts hold exactly the confirmed amounts and fees,
   each address on chain received exactly its confirmed amount (nothing for a returned one),
   the hot wallet used exactly one nonce per transaction that reached the chain (no gaps, no
   second nonce for a withdrawal), each confirmed withdrawal has one mined transaction, and
   each agent's outbox has one ``withdrawal.confirmed`` or ``withdrawal.failed`` per ending.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from eth_account import Account
from pydantic import SecretStr
from sqlalchemy import func, select
from web3 import AsyncWeb3

from agent_server.accounts.models import Agent
from agent_server.events.models import OutboxEvent
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.mail import OutboxMail
from agent_server.runtime import Runtime
from agent_server.services import withdrawals as svc
from billing.ledger import credit, debit, open_account, post, system_account
from billing.models import AccountKind, LedgerAccount, LedgerEntry, TransactionKind
from billing.payables import payable_balances
from billing.wallet_funds import adjust_balance, balances
from wallets.chains.anvil import DEV_ACCOUNT, AnvilNode, mine, send_value
from wallets.chains.tokens import deploy_test_tokens, transfer
from wallets.currencies import currency_info
from wallets.evm import evm_network
from wallets.models import ChainToken
from wallets.network_fees import FixedFees
from wallets.sending.keys import write_keystore
from wallets.withdrawal_models import Withdrawal, WithdrawalKind, WithdrawalSendAttempt

ENDED = ("confirmed", "failed", "cancelled", "rejected")
RETURNED = ("failed", "cancelled", "rejected")
HOT_USDT = 2_000_000_000  # the hot wallet's USDT: the "whale" withdrawal asks for more


@dataclass
class Funding:
    """What each owner was given: (owner key, currency) -> base units."""

    wallets: dict[tuple[int, str], int] = field(default_factory=dict)
    payables: dict[tuple[int, str], int] = field(default_factory=dict)


@dataclass
class WithdrawalSoakResult:
    problems: list[str]
    figures: dict[str, Any]


class SenderProcess:
    """One ``agent-server send-withdrawals``, its output in a log file."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.env = env
        self.log = logs / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from agent_server.cli import app; app()",
                    "send-withdrawals",
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


async def _agent(db: Database, name: str) -> int:
    async with db.uow() as uow:
        now = uow.clock.now()
        token = secrets.token_hex(6)
        agent = Agent(
            name=name,
            email=f"{name}-{token}@example.com",
            email_verified=True,
            status="active",
            api_key_hash=secrets.token_hex(32),
            api_key_prefix="as_" + token,
            profile={},
            created_at=now,
            updated_at=now,
        )
        uow.session.add(agent)
        await uow.flush()
        await uow.commit()
        return agent.id


async def _confirm(db: Database, settings: Settings, owner: svc.Owner, w: Withdrawal) -> None:
    """Confirm the withdrawal's new address with the code mailed to its owner."""
    async with db.uow() as uow:
        email = await svc.owner_email(uow, owner)
        body = await uow.session.scalar(
            select(OutboxMail.body)
            .where(OutboxMail.to_addr == email, OutboxMail.kind == "withdrawal_address_code")
            .where(OutboxMail.body.contains(w.address))
            .order_by(OutboxMail.id.desc())
            .limit(1)
        )
    found = re.search(r"code is (\S+) \(valid", body or "")
    assert found, f"no code mailed for {w.address}"
    async with db.uow() as uow:
        confirmation = await svc.confirm_address(uow, settings, owner, w.address_id, found.group(1))
        await uow.commit()
    assert confirmation.error is None, confirmation.error
    async with db.uow() as uow:
        await svc.release_due(uow)
        await uow.commit()


async def _request(
    db: Database,
    terms: svc.Terms,
    owner: svc.Owner,
    kind: WithdrawalKind,
    currency: str,
    amount: int,
) -> Withdrawal:
    address = str(Account.create().address)
    async with db.uow() as uow:
        placed = await svc.request(
            uow,
            terms,
            owner,
            kind=kind,
            currency=currency,
            amount=amount,
            address=address,
            request_key=secrets.token_hex(8),
        )
        await uow.commit()
    await _confirm(db, terms.settings, owner, placed.withdrawal)
    return placed.withdrawal


async def run_withdrawal_soak(
    db: Database,
    database_url: str,
    logs: Path,
    rng: random.Random,
    *,
    agents: int = 4,
    per_agent: int = 3,
    providers: int = 2,
    kills: int = 3,
    timeout: float = 150.0,
) -> WithdrawalSoakResult:
    """Steps 1-4 of the module docstring on ``db`` (a migrated PostgreSQL database)."""
    node = await asyncio.to_thread(AnvilNode.start)
    w3 = node.web3()
    senders: list[SenderProcess] = []
    miner: asyncio.Task[None] | None = None
    try:
        chain_id = int(await w3.eth.chain_id)
        tokens = await deploy_test_tokens(w3)
        async with db.uow() as uow:
            for code, contract in tokens.items():
                uow.session.add(
                    ChainToken(
                        network=evm_network(chain_id), currency=code, contract=contract, decimals=6
                    )
                )
            await uow.commit()
        key = "0x" + secrets.token_hex(32)
        keystore = logs / "hot-keystore.json"
        password_file = logs / "hot-password"
        password_file.write_text(secrets.token_urlsafe(16))
        password_file.chmod(0o600)
        hot = write_keystore(keystore, key, password_file.read_text())
        await send_value(w3, hot, 100 * 10**18)
        await transfer(w3, tokens["USDC"], hot, 10**12, sender=DEV_ACCOUNT)
        await transfer(w3, tokens["USDT"], hot, HOT_USDT, sender=DEV_ACCOUNT)

        settings = Settings(
            database_url=database_url,
            withdrawal_cooling_off=timedelta(0),
            withdrawal_approval_usd_micros=10**15,
            secret_pepper=SecretStr("soak-withdrawals"),
        )
        runtime = Runtime(settings, db)
        terms = svc.Terms.of(settings, runtime.billing, FixedFees(1_000_000_000, 5))
        funding = Funding()
        owners: list[svc.Owner] = []
        for index in range(agents):
            agent_id = await _agent(db, f"withdrawer{index}")
            owners.append(svc.Owner(agent_id=agent_id))
            async with db.uow() as uow:
                for code, amount in (("ETH", 10**9), ("USDC", 10**9), ("USDT", 10**10)):
                    await adjust_balance(
                        uow, agent_id=agent_id, currency=code, amount=amount, reason="soak"
                    )
                    funding.wallets[(agent_id, code)] = amount
                await uow.commit()
        payees = [await _agent(db, f"provider{n}") for n in range(providers)]
        for payee in payees:  # owed what their bookings earned (credited here directly)
            async with db.uow() as uow:
                payable = await open_account(uow, AccountKind.PAYABLE, "USDC", agent_id=payee)
                source = await system_account(uow, AccountKind.ADJUSTMENTS, "USDC")
                await post(
                    uow,
                    kind=TransactionKind.ADJUSTMENT,
                    reference=f"soak-payable:{payee}",
                    legs=[debit(source, 500_000_000), credit(payable, 500_000_000)],
                    currency="USDC",
                    amount=500_000_000,
                )
                await uow.commit()
            funding.payables[(payee, "USDC")] = 500_000_000

        async def request_some(count: int) -> None:
            for _ in range(count):
                owner = rng.choice(owners)
                currency = rng.choice(("ETH", "USDC", "USDT"))
                minimum = terms.policy.minimum.get(currency, 1)
                amount = minimum + rng.randrange(1, 5 * minimum)
                await _request(db, terms, owner, WithdrawalKind.WITHDRAWAL, currency, amount)

        await request_some(agents * per_agent // 2)
        for payee in payees:
            await _request(
                db, terms, svc.Owner(agent_id=payee), WithdrawalKind.PAYOUT, "USDC", 100_000_000
            )
        whale = await _request(
            db, terms, owners[0], WithdrawalKind.WITHDRAWAL, "USDT", HOT_USDT + 1
        )
        cancelled = await _request(
            db, terms, owners[-1], WithdrawalKind.WITHDRAWAL, "USDC", 5_000_000
        )
        async with db.uow() as uow:
            await svc.cancel(uow, svc.Owner(agent_id=owners[-1].agent_id), cancelled.public_id)
            await uow.commit()

        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
        env.update(
            AGENT_SERVER_DATABASE_URL=database_url,
            AGENT_SERVER_EVM_RPC_URL=node.rpc_url,
            AGENT_SERVER_START_WATCHERS="false",
            AGENT_SERVER_CONFIRMATIONS="2",
            AGENT_SERVER_LOG_FORMAT="json",
            AGENT_SERVER_SENDER_KEYSTORE=str(keystore),
            AGENT_SERVER_SENDER_KEYSTORE_PASSWORD_FILE=str(password_file),
            AGENT_SERVER_SENDER_INTERVAL="0.2",
            AGENT_SERVER_SENDER_REPLACE_AFTER="5",
        )
        senders = [SenderProcess(f"sender-{n}", env, logs) for n in ("a", "b")]
        for sender in senders:
            sender.start()

        async def mining() -> None:
            while True:
                await asyncio.sleep(0.25)
                await mine(w3)

        miner = asyncio.create_task(mining())
        await request_some(agents * per_agent - agents * per_agent // 2)
        for _ in range(kills):  # kill -9 at a random moment, then start it again
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            senders[0].kill()
            await asyncio.sleep(0.3)
            senders[0].start()
        ended = await _wait_ended(db, timeout)
        for sender in senders:
            sender.stop()
        problems = [] if ended else [f"withdrawals still open after {timeout:.0f} s"]
        problems += await audit_withdrawals(db, w3, hot, tokens, funding)
        figures = await _figures(db)
        figures["sender_kills"] = kills
        figures["audit_catches"] = await _doctored(db, w3, hot, tokens, funding)
        figures["whale_failed"] = (await _status(db, whale.public_id)) == "failed"
        return WithdrawalSoakResult(problems, figures)
    finally:
        if miner is not None:
            miner.cancel()
        for sender in senders:
            sender.stop()
        await w3.provider.disconnect()
        await asyncio.to_thread(node.stop)


async def _doctored(
    db: Database, w3: AsyncWeb3[Any], hot: str, tokens: dict[str, str], funding: Funding
) -> dict[str, bool]:
    """Whether the audit reports a model one base unit off, and a withdrawal given a second
    nonce (written to the database last: it is dropped afterwards)."""
    key = next(iter(funding.wallets))
    off = Funding({**funding.wallets, key: funding.wallets[key] + 1}, dict(funding.payables))
    caught = {"wallet_off_by_one": bool(await audit_withdrawals(db, w3, hot, tokens, off))}
    async with db.uow() as uow:
        first = await uow.session.scalar(
            select(WithdrawalSendAttempt).order_by(WithdrawalSendAttempt.id).limit(1)
        )
        assert first is not None
        uow.session.add(
            WithdrawalSendAttempt(
                withdrawal_id=first.withdrawal_id,
                attempt=first.attempt + 100,
                network=first.network,
                nonce=(first.nonce or 0) + 1000,
                tx_hash="0x" + secrets.token_hex(32),
                raw_tx="0x00",
                status="replaced",
                created_at=first.created_at,
            )
        )
        await uow.commit()
    caught["second_nonce"] = any(
        "more than one nonce" in p for p in await audit_withdrawals(db, w3, hot, tokens, funding)
    )
    return caught


async def _scalars(db: Database, query: Any) -> list[Any]:
    async with db.uow() as uow:
        rows = list((await uow.session.execute(query)).scalars())
        uow.session.expunge_all()  # readable after the session ends
        return rows


async def _status(db: Database, public_id: str) -> str:
    rows = await _scalars(db, select(Withdrawal.status).where(Withdrawal.public_id == public_id))
    return str(rows[0])


async def _wait_ended(db: Database, timeout: float) -> bool:
    try:
        async with asyncio.timeout(timeout):
            while True:
                open_ = await _scalars(
                    db, select(func.count()).where(Withdrawal.status.not_in(ENDED))
                )
                if open_[0] == 0:
                    return True
                await asyncio.sleep(0.5)
    except TimeoutError:
        return False


async def _figures(db: Database) -> dict[str, Any]:
    rows = await _scalars(db, select(Withdrawal))
    by_status: dict[str, int] = {}
    for w in rows:
        by_status[w.status] = by_status.get(w.status, 0) + 1
    attempts = await _scalars(db, select(func.count()).select_from(WithdrawalSendAttempt))
    return {
        "withdrawals": len(rows),
        "withdrawals_by_status": by_status,
        "payouts": sum(1 for w in rows if w.kind == "payout"),
        "send_attempts": attempts[0],
    }


async def _account_total(db: Database, kind: AccountKind, currency: str) -> int:
    rows = await _scalars(
        db,
        select(func.coalesce(func.sum(LedgerEntry.credit - LedgerEntry.debit), 0))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(LedgerAccount.kind == kind.value, LedgerAccount.currency == currency),
    )
    return int(rows[0])


async def _on_chain(w3: AsyncWeb3[Any], tokens: dict[str, str], w: Withdrawal) -> int:
    """What ``w``'s address holds on chain, in base units."""
    if w.currency == "ETH":
        wei = int(await w3.eth.get_balance(AsyncWeb3.to_checksum_address(w.address)))
        credited, dust = currency_info("ETH").chain_to_base(wei)
        return credited if dust == 0 else -1
    data = "0x70a08231" + w.address[2:].lower().rjust(64, "0")
    result = await w3.eth.call(
        {"to": AsyncWeb3.to_checksum_address(tokens[w.currency]), "data": data}  # type: ignore[typeddict-item]
    )
    return int(result.hex() or "0", 16)


async def audit_withdrawals(
    db: Database,
    w3: AsyncWeb3[Any],
    hot: str,
    tokens: dict[str, str],
    funding: Funding,
) -> list[str]:
    """The reference model against the database and the chain (module docstring, step 4)."""
    problems: list[str] = []
    rows: list[Withdrawal] = await _scalars(db, select(Withdrawal).order_by(Withdrawal.id))
    attempts: list[WithdrawalSendAttempt] = await _scalars(db, select(WithdrawalSendAttempt))
    by_withdrawal: dict[int, list[WithdrawalSendAttempt]] = {}
    for a in attempts:
        by_withdrawal.setdefault(a.withdrawal_id, []).append(a)
    wallets = dict(funding.wallets)
    payables = dict(funding.payables)
    confirmed: dict[str, tuple[int, int]] = {}
    nonces: list[int] = []
    for w in rows:
        name = f"withdrawal {w.public_id} ({w.status})"
        if w.status not in ENDED:
            problems.append(f"{name}: not ended")
        tries = by_withdrawal.get(w.id, [])
        if w.nonce is not None:
            nonces.append(w.nonce)
        if len({a.nonce for a in tries}) > 1:
            problems.append(f"{name}: signed under more than one nonce")
        if w.status not in RETURNED:
            assert w.agent_id is not None
            if w.kind == "payout":
                payables[(w.agent_id, w.currency)] -= w.amount + w.fee
            else:
                wallets[(w.agent_id, w.currency)] -= w.amount + w.fee
        held = await _on_chain(w3, tokens, w)
        if w.status == "confirmed":
            amount, fee = confirmed.get(w.currency, (0, 0))
            confirmed[w.currency] = (amount + w.amount, fee + w.fee)
            mined = [a for a in tries if a.status == "mined"]
            if len(mined) != 1 or mined[0].tx_hash != w.tx_hash:
                problems.append(f"{name}: {len(mined)} mined transactions, not its one")
            if held != w.amount:
                problems.append(f"{name}: its address holds {held}, sent {w.amount}")
            if not w.settle_txn_id or w.return_txn_id:
                problems.append(f"{name}: settled {w.settle_txn_id}, returned {w.return_txn_id}")
        else:
            if held != 0:
                problems.append(f"{name}: its address holds {held} though the money came back")
            if not w.return_txn_id or w.settle_txn_id:
                problems.append(f"{name}: returned {w.return_txn_id}, settled {w.settle_txn_id}")
    if sorted(nonces) != list(range(len(nonces))):
        problems.append(f"hot wallet nonces are not one each from 0: {sorted(nonces)}")
    used = int(await w3.eth.get_transaction_count(AsyncWeb3.to_checksum_address(hot)))
    if used != len(nonces):
        problems.append(f"the hot wallet sent {used} transactions for {len(nonces)} nonces")
    async with db.uow() as uow:
        for (agent_id, code), expected in wallets.items():
            actual = (await balances(uow, agent_id)).get(code, 0)
            if actual != expected:
                problems.append(f"agent {agent_id} {code}: wallet {actual}, model {expected}")
        for (payee, code), expected in payables.items():
            actual = (await payable_balances(uow, agent_id=payee)).get(code, 0)
            if actual != expected:
                problems.append(f"provider {payee} {code}: owed {actual}, model {expected}")
    for code in ("ETH", "USDT", "USDC"):
        amount, fee = confirmed.get(code, (0, 0))
        figures = {
            AccountKind.WITHDRAWING: 0,
            AccountKind.WITHDRAWN: amount,
            AccountKind.NETWORK_FEES: fee,
        }
        for kind, expected in figures.items():
            actual = await _account_total(db, kind, code)
            if actual != expected:
                problems.append(f"{kind.value} {code}: {actual}, model {expected}")
    events = await _scalars(
        db,
        select(OutboxEvent).where(
            OutboxEvent.type.in_(("withdrawal.confirmed", "withdrawal.failed"))
        ),
    )
    endings: dict[str, int] = {}
    for event in events:
        endings[event.payload["id"]] = endings.get(event.payload["id"], 0) + 1
    for w in rows:
        if w.agent_id is not None and w.status in ("confirmed", "failed", "cancelled"):
            if endings.get(w.public_id) != 1:
                problems.append(f"withdrawal {w.public_id}: {endings.get(w.public_id)} endings")
    return problems

"""Running the withdrawal sender: ``agent-server send-withdrawals``, or ``serve`` with
``AGENT_SERVER_SEND_WITHDRAWALS=true``.

``SenderFollowUp`` is what each on-chain step does to the ledger and the events, through the
withdrawal services (``agent_server.services.withdrawals``): ``sent`` publishes
``withdrawal.sent``; ``confirmed`` settles (pending-withdrawal account to the chain and the
network fee) with ``withdrawal.confirmed``; ``failed`` returns the money once with
``withdrawal.failed``. Each runs in the sender's transaction that changes the withdrawal.

The hot-wallet key is read here only, and only when the sender runs: ``wallets.sending.keys``
is imported by ``start_senders`` and its settings (``AGENT_SERVER_SENDER_*``) are never part
of the server's own. With no EVM node configured the embedded development chain is used, and
anvil's second development account (the first funds agents with ``dev fund``, so the two never
share a nonce) signs from a keystore made for it on first use
(``.agent_server/chain/sender/``); the BTC payments of the embedded bcoin node are signed by
its own wallet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent_server.events import outbox
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database, UnitOfWork
from agent_server.services import withdrawals
from wallets.withdrawal_models import Withdrawal

if TYPE_CHECKING:
    from wallets.sending.sender import WithdrawalSender

log = get_logger(__name__)


class SenderFollowUp:
    """The ledger and event side of the sender's steps (``WithdrawalFollowUp``)."""

    async def sent(self, uow: UnitOfWork, withdrawal: Withdrawal) -> None:
        if withdrawal.agent_id is not None:
            await outbox.emit(
                uow,
                type=outbox.WITHDRAWAL_SENT,
                agent_id=withdrawal.agent_id,
                data=withdrawals.withdrawal_data(withdrawal),
            )

    async def confirmed(self, uow: UnitOfWork, withdrawal: Withdrawal) -> bool:
        try:
            await withdrawals.settle(uow, withdrawal.public_id)
        except ValidationFailed:  # no longer sent: another sender finished it
            return False
        return True

    async def failed(self, uow: UnitOfWork, withdrawal: Withdrawal, reason: str) -> bool:
        try:
            await withdrawals.fail(uow, withdrawal.public_id, reason=reason)
        except ValidationFailed:
            return False
        return True


SENDER_FOLLOW_UP = SenderFollowUp()


class SenderRuntime(Protocol):
    settings: Settings
    db: Database


def _embedded_endpoint() -> tuple[dict[str, Any] | None, Path]:
    from wallets.embedded import chain_dir, read_endpoint

    directory = chain_dir()
    return read_endpoint(directory), directory


async def build_senders(runtime: SenderRuntime) -> list[WithdrawalSender]:
    """The senders this configuration signs for: EVM and BTC, each when its node and key
    are known. Raises ``KeyUnavailable`` for a configured but unreadable keystore."""
    from wallets.btc_rpc import BcoinRpc
    from wallets.chains.anvil import connect
    from wallets.sending.chains import BcoinSigner, EvmSigner
    from wallets.sending.keys import development_keystore, load_evm_account, sender_settings

    settings = runtime.settings
    sender = sender_settings()
    endpoint, directory = (None, Path()) if settings.evm_rpc_url else _embedded_endpoint()
    senders: list[WithdrawalSender] = []
    evm_url = settings.evm_rpc_url or (endpoint or {}).get("rpc_url")
    if evm_url:
        keystore = password_file = None
        if not settings.evm_rpc_url and sender.keystore is None:
            keystore, password_file = development_keystore(directory / "sender")
        account = load_evm_account(sender, keystore=keystore, password_file=password_file)
        w3 = connect(str(evm_url))
        signer = EvmSigner(w3, int(await w3.eth.chain_id), account, sender.token_gas_limit)
        senders.append(_sender(runtime, signer, sender.replace_after))
    btc = (endpoint or {}).get("btc")
    wallet_url = sender.btc_wallet_url or (btc or {}).get("wallet_url")
    btc_rpc = settings.btc_rpc_url or (btc or {}).get("rpc_url")
    if wallet_url and btc_rpc:
        api_key = (
            sender.btc_wallet_api_key.get_secret_value()
            if sender.btc_wallet_api_key is not None
            else str((btc or {}).get("api_key", ""))
        )
        rpc = BcoinRpc(str(btc_rpc).removeprefix("bcoin+"), network=settings.btc_network)
        btc_signer = BcoinSigner(
            rpc,
            str(wallet_url),
            sender.btc_wallet_id,
            api_key,
            settings.btc_network,
            sender.btc_fee_rate,
        )
        senders.append(_sender(runtime, btc_signer, sender.replace_after))
    return senders


def _sender(runtime: SenderRuntime, signer: Any, replace_after: float) -> WithdrawalSender:
    from wallets.sending.sender import WithdrawalSender

    return WithdrawalSender(
        runtime.db,
        signer,
        SENDER_FOLLOW_UP,
        confirmations=runtime.settings.confirmations,
        replace_after=replace_after,
    )


async def run_senders(runtime: SenderRuntime, stop: asyncio.Event) -> None:
    """Send and follow withdrawals until ``stop``; waits for a node (the embedded chain may
    still be starting) and retries a pass that fails."""
    from wallets.sending.keys import sender_settings

    interval = sender_settings().interval
    senders: list[WithdrawalSender] = []
    while not stop.is_set() and not senders:
        try:
            senders = await build_senders(runtime)
        except Exception as exc:
            log.warning("withdrawals.sender_not_ready", error=str(exc))
        if not senders:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    for sender in senders:
        log.info("withdrawals.sender_started", network=sender.network)
    try:
        await asyncio.gather(*(s.run(stop, interval) for s in senders))
    finally:
        for sender in senders:
            with contextlib.suppress(Exception):
                await sender.signer.aclose()


@contextlib.asynccontextmanager
async def start_withdrawal_sender(runtime: SenderRuntime) -> AsyncIterator[None]:
    """Run the sender beside the server when ``AGENT_SERVER_SEND_WITHDRAWALS`` is on; without
    it nothing of the sender (its settings, its key) is read."""
    if not runtime.settings.send_withdrawals:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(run_senders(runtime, stop), name="withdrawal-sender")
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 10.0)

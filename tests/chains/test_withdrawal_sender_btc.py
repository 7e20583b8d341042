"""The withdrawal sender on bcoin regtest: the node's wallet signs a BTC payment that is
recorded before it is broadcast, followed through a reorg (``invalidateblock``) to
confirmation, paid exactly once, with the ledger and events right to the satoshi."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chain_support import balance
from withdrawal_support import (
    approved_withdrawal,
    attempts,
    events,
    funded_agent,
    system_balance,
    withdrawal,
)

from agent_server.kernel.store import Database
from agent_server.services.withdrawal_sender import SENDER_FOLLOW_UP
from billing.models import AccountKind
from wallets.btc_rpc import reencode_bech32
from wallets.chains import BcoinNode
from wallets.sending.chains import BcoinSigner
from wallets.sending.sender import WithdrawalSender
from wallets.withdrawal_models import Withdrawal


async def settled(
    db: Database, sender: WithdrawalSender, public_id: str, done: Callable[[Withdrawal], bool]
) -> Withdrawal:
    """Run the sender until the withdrawal reads as ``done``: bcoin's wallet takes in a block
    (or its removal) a moment after the node, so one pass may still see the old state."""
    for _ in range(50):
        await sender.run_once()
        w = await withdrawal(db, public_id)
        if done(w):
            return w
        await asyncio.sleep(0.1)
    return w


async def paid_to(node: BcoinNode, txid: str, address: str) -> list[int]:
    """Satoshi paid to ``address`` by ``txid`` in the blocks of the current chain's tip area."""
    rpc = node.rpc()
    try:
        height = await rpc.get_block_count()
        found: list[int] = []
        for number in range(max(0, height - 20), height + 1):
            block_hash = await rpc.get_block_hash(number)
            assert block_hash is not None
            block = await rpc.get_block(block_hash)
            for tx in block.transactions:
                found += [o.satoshi for o in tx.outputs if o.address == address]
        return found
    finally:
        await rpc.aclose()


async def test_a_btc_withdrawal_is_signed_by_the_node_wallet_and_survives_a_reorg(
    db: Database, bcoin: BcoinNode
) -> None:
    await bcoin.wait_spendable(10_000_000)
    agent = await funded_agent(db, {"BTC": 5_000_000})
    to = reencode_bech32(await bcoin.new_address(), "rb", "bcrt")  # a fresh address
    public_id = await approved_withdrawal(
        db, agent, "BTC", 1_234_567, 2_000, to, network="bitcoin:regtest"
    )
    signer = BcoinSigner(bcoin.rpc(), bcoin.wallet_url, "primary", bcoin.api_key, "regtest", 1000)
    sender = WithdrawalSender(db, signer, SENDER_FOLLOW_UP, confirmations=3)
    try:
        await sender.run_once()  # created, signed, recorded, broadcast
        w = await withdrawal(db, public_id)
        assert w.status == "sent" and w.raw_tx and w.tx_hash
        [first_block] = await bcoin.mine(1)
        mined = await settled(db, sender, public_id, lambda w: w.block_hash is not None)
        assert mined.block_hash == first_block and mined.confirmations == 1

        rpc = bcoin.rpc()
        try:  # the block leaves the chain; the payment goes back to the mempool
            await rpc.call("invalidateblock", first_block)
        finally:
            await rpc.aclose()
        back = await settled(db, sender, public_id, lambda w: w.block_hash is None)
        assert back.status == "sent" and back.block_hash is None

        for _ in range(3):
            await bcoin.mine(1)
            await sender.run_once()
        await settled(db, sender, public_id, lambda w: w.status == "confirmed")
    finally:
        await signer.aclose()

    w = await withdrawal(db, public_id)
    assert w.status == "confirmed" and w.block_hash != first_block
    assert await paid_to(bcoin, w.tx_hash or "", to) == [1_234_567]
    assert len(await attempts(db, public_id)) == 1
    assert await balance(db, agent, "BTC") == 5_000_000 - 1_236_567
    assert await system_balance(db, AccountKind.WITHDRAWING, "BTC") == 0
    assert await system_balance(db, AccountKind.WITHDRAWN, "BTC") == 1_234_567
    kinds = [t for t, p in await events(db, agent) if p.get("id") == public_id]
    assert kinds == ["withdrawal.sent", "withdrawal.confirmed"]

"""The BTC deposit watcher against a real bcoin regtest node, through the Core-style RPC."""

from __future__ import annotations

from chain_support import ACTIVATION, address_of, balance, deposits, make_agent, rates, status_of
from sqlalchemy import select

from agent_server.kernel.store import Database
from agent_server.services.deposits import DEPOSIT_FOLLOW_UP
from billing.models import LedgerTransaction
from wallets.btc import BtcSource
from wallets.chains import BcoinNode
from wallets.watcher import DepositWatcher


async def btc_watcher(db: Database, bcoin: BcoinNode, confirmations: int) -> DepositWatcher:
    rpc = bcoin.rpc()
    source = BtcSource(rpc, "regtest")
    return DepositWatcher(
        db,
        source,
        rates=rates(),  # 60,000 USD per BTC
        confirmations=confirmations,
        activation_usd_micros=ACTIVATION,
        follow_up=DEPOSIT_FOLLOW_UP,
        start_block=await rpc.get_block_count() + 1,
    )


async def test_a_btc_deposit_is_credited_only_after_the_configured_confirmations(
    db: Database, bcoin: BcoinNode
) -> None:
    watcher = await btc_watcher(db, bcoin, confirmations=3)
    agent = await make_agent(db)
    address = await address_of(db, agent, "BTC")
    assert address.startswith("bcrt1q")
    txid = await bcoin.send(address, 50_000)  # 0.0005 BTC = 30 USD

    assert (await watcher.poll_once()).seen == 0  # in the mempool only
    for confirmations in (1, 2):
        await bcoin.mine(1)
        result = await watcher.poll_once()
        assert result.credited == 0, f"credited after {confirmations} confirmation(s)"
        assert await balance(db, agent, "BTC") == 0
        assert await status_of(db, agent) == "pending_deposit"
    await bcoin.mine(1)
    assert (await watcher.poll_once()).credited == 1
    assert await balance(db, agent, "BTC") == 50_000
    assert await status_of(db, agent) == "active"
    [row] = await deposits(db)
    assert (row.tx_hash, row.currency, row.usd_micros) == (txid, "BTC", 30_000_000)
    assert row.address == address
    await watcher.source.aclose()


async def test_two_outputs_of_one_transaction_are_two_deposits_keyed_by_vout(
    db: Database, bcoin: BcoinNode
) -> None:
    watcher = await btc_watcher(db, bcoin, confirmations=1)
    rich, modest = await make_agent(db, "rich"), await make_agent(db, "modest")
    txid = await bcoin.send_many(
        [
            (await address_of(db, rich, "BTC"), 100_000),
            (await address_of(db, modest, "BTC"), 20_000),
        ]
    )
    await bcoin.mine(1)
    assert (await watcher.poll_once()).credited == 2
    assert await balance(db, rich, "BTC") == 100_000  # 60 USD: activates
    assert await balance(db, modest, "BTC") == 20_000  # 12 USD: credited, not activated
    assert (await status_of(db, rich), await status_of(db, modest)) == ("active", "pending_deposit")
    rows = await deposits(db)
    assert {r.tx_hash for r in rows} == {txid}
    assert len({r.position for r in rows}) == 2
    await watcher.source.aclose()


async def test_a_reorged_btc_deposit_is_reversed_then_credited_again_when_mined_anew(
    db: Database, bcoin: BcoinNode
) -> None:
    watcher = await btc_watcher(db, bcoin, confirmations=1)
    agent = await make_agent(db)
    address = await address_of(db, agent, "BTC")
    await bcoin.mine(1)
    await watcher.poll_once()  # the watcher knows the block the fork starts from
    txid = await bcoin.send(address, 60_000)
    [block] = await bcoin.mine(1)
    assert (await watcher.poll_once()).credited == 1
    assert await balance(db, agent, "BTC") == 60_000

    rpc = bcoin.rpc()
    await rpc.call("invalidateblock", block)  # the block leaves the chain...
    await bcoin.rebroadcast(txid)
    await bcoin.mine(2)  # ...and a longer one mines the same transaction again
    await rpc.aclose()
    result = await watcher.poll_once()
    assert (result.reorgs, result.orphaned, result.credited) == (1, 1, 1)
    assert await balance(db, agent, "BTC") == 60_000  # reversed once, credited once more
    [row] = await deposits(db)
    assert (row.tx_hash, row.status, row.generation) == (txid, "credited", 1)
    assert row.block_hash != block
    async with db.uow() as uow:
        kinds = [
            t.kind
            for t in (
                await uow.session.execute(select(LedgerTransaction).order_by(LedgerTransaction.id))
            ).scalars()
        ]
    assert kinds == ["deposit", "reversal", "deposit"]
    await watcher.source.aclose()

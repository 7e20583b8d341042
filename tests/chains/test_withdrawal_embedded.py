"""``make run``'s path on one machine: ``serve`` with the embedded chain and the sender on
(AGENT_SERVER_SEND_WITHDRAWALS), anvil's second development account (not the one `dev fund`
uses) signing from a keystore made for it on first start; an approved ETH withdrawal goes to
confirmed and arrives to the wei."""

from __future__ import annotations

import asyncio
import json
import re
import stat
from pathlib import Path

from test_wallet_processes import cli, env, start
from withdrawal_support import approved_withdrawal, external_address, funded_agent, withdrawal

from agent_server.kernel.store import Database
from wallets.chains.anvil import DEV_ACCOUNT, SENDER_ACCOUNT, connect, mine
from wallets.chains.tokens import token


async def test_serve_sends_a_withdrawal_from_the_embedded_chains_development_key(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    chain = tmp_path / "chain"
    environ = env(
        database_url,
        AGENT_SERVER_CHAIN_DIR=str(chain),
        AGENT_SERVER_SEND_WITHDRAWALS="true",
        AGENT_SERVER_SENDER_INTERVAL="0.2",
        AGENT_SERVER_BTC_NETWORK="testnet",  # no embedded bcoin: this test is about EVM
        AGENT_SERVER_START_WORKER="false",
    )
    server = start(cli("serve", "--host", "127.0.0.1", "--port", "0"), environ, "serve")
    try:
        server.wait_for(re.compile(r"withdrawals.sender_started"), timeout=120)
        endpoint = json.loads((chain / "endpoint.json").read_text())
        keystore = chain / "sender" / "keystore.json"
        assert "crypto" in json.loads(keystore.read_text())
        assert stat.S_IMODE((chain / "sender" / "keystore-password").stat().st_mode) == 0o600

        agent = await funded_agent(db, {"ETH": 40_000_000})
        to = external_address()
        public_id = await approved_withdrawal(db, agent, "ETH", 21_000_001, 30_000, to)
        w3 = connect(endpoint["rpc_url"])
        try:
            async with asyncio.timeout(60):
                while (await withdrawal(db, public_id)).status != "confirmed":
                    await asyncio.sleep(0.3)
                    await mine(w3)
            assert await w3.eth.get_balance(to) == 21_000_001 * 10**9  # type: ignore[arg-type]
            # Signed by the sender's own development account, not the one `dev fund` sends
            # from, which the embedded chain also gave test tokens for token withdrawals.
            sent = await w3.eth.get_transaction((await withdrawal(db, public_id)).tx_hash)  # type: ignore[arg-type]
            assert sent["from"] == SENDER_ACCOUNT != DEV_ACCOUNT
            usdc = token(w3, endpoint["tokens"]["USDC"])
            assert await usdc.functions.balanceOf(SENDER_ACCOUNT).call() > 0
        finally:
            await w3.provider.disconnect()
    except TimeoutError:
        raise AssertionError(server.output()) from None
    finally:
        server.stop()

"""Real local chains for the wallet tests, one of each per test session.

``anvil`` (from ``@foundry-rs/anvil``) with the two test tokens deployed, and ``bcoin`` in
regtest with a funded wallet: both installed by ``npm ci`` and started on loopback. Each
test gets a fresh database (both backends) and watches the chain from its current tip, so
tests sharing a chain never see each other's deposits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from web3 import AsyncWeb3

from wallets.chains import AnvilNode, BcoinNode
from wallets.chains.tokens import deploy_test_tokens


@pytest.fixture(scope="session")
def anvil_node() -> Iterator[AnvilNode]:
    node = AnvilNode.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
async def anvil(anvil_node: AnvilNode) -> AsyncIterator[AsyncWeb3[Any]]:
    w3 = anvil_node.web3()
    yield w3
    await w3.provider.disconnect()


@pytest.fixture(scope="session")
async def test_tokens(anvil: AsyncWeb3[Any]) -> dict[str, str]:
    """USDT and USDC deployed on the session's anvil: currency -> contract."""
    return await deploy_test_tokens(anvil)


@pytest.fixture(scope="session")
async def bcoin() -> AsyncIterator[BcoinNode]:
    node = BcoinNode.start()
    try:
        await node.fund_wallet()
        yield node
    finally:
        node.stop()

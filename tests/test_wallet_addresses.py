"""Deposit addresses: published HD vectors, one index per agent and chain, never reused."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from bip_utils import (
    Bip39SeedGenerator,
    Bip44,
    Bip44Changes,
    Bip44Coins,
    Bip84,
    Bip84Coins,
    SegwitBech32Encoder,
)
from sqlalchemy import select

from agent_server.accounts.models import Agent
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.store import Database
from wallets.addresses import (
    DEV_XPUB_BTC,
    DEV_XPUB_ETH,
    InvalidExtendedKey,
    WalletKeys,
    deposit_address_for,
    existing_deposit_address,
)
from wallets.btc_rpc import reencode_bech32
from wallets.models import DepositAddressRecord

MNEMONIC = " ".join(["abandon"] * 11 + ["about"])


def keys(network: str = "mainnet") -> WalletKeys:
    return WalletKeys(DEV_XPUB_ETH, DEV_XPUB_BTC, network)


def test_bip44_ethereum_vectors_of_the_test_mnemonic() -> None:
    k = keys()
    assert k.evm_address(0) == "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
    assert k.evm_address(1) == "0x6Fac4D18c912343BF86fa7049364Dd4E424Ab9C0"
    assert k.evm_address(2) == "0xb6716976A3ebe8D39aCEB04372f22Ff8e6802D7A"


def test_bip84_bitcoin_vectors_of_the_test_mnemonic() -> None:
    # BIP-84 test vectors: first and second receive addresses of m/84'/0'/0'.
    k = keys()
    assert k.btc_address(0) == "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    assert k.btc_address(1) == "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"


def test_btc_prefix_follows_the_network() -> None:
    assert keys("testnet").btc_address(0).startswith("tb1q")
    assert keys("regtest").btc_address(0).startswith("bcrt1q")
    # Same key, different human-readable part.
    assert keys("regtest").btc_address(0)[6:30] == keys("mainnet").btc_address(0)[4:28]


def test_the_development_keys_are_the_public_keys_of_the_test_mnemonic() -> None:
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    eth = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(0)
    btc = Bip84.FromSeed(seed, Bip84Coins.BITCOIN).Purpose().Coin().Account(0)
    assert eth.PublicKey().ToExtended() == DEV_XPUB_ETH
    assert btc.PublicKey().ToExtended() == DEV_XPUB_BTC
    # Derivation from the public key alone equals derivation from the seed.
    for i in range(5):
        child = btc.Change(Bip44Changes.CHAIN_EXT).AddressIndex(i)
        assert keys().btc_address(i) == child.PublicKey().ToAddress()


def test_private_or_non_account_keys_are_refused() -> None:
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    account = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(0)
    with pytest.raises(InvalidExtendedKey, match="PUBLIC"):
        WalletKeys(account.PrivateKey().ToExtended(), DEV_XPUB_BTC, "mainnet")
    coin_level = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin()
    with pytest.raises(InvalidExtendedKey, match="depth"):
        WalletKeys(coin_level.PublicKey().ToExtended(), DEV_XPUB_BTC, "mainnet")
    with pytest.raises(InvalidExtendedKey):
        WalletKeys("not-a-key", DEV_XPUB_BTC, "mainnet")


def test_settings_without_xpubs_fall_back_to_development_keys() -> None:
    k = WalletKeys.from_settings(Settings(btc_network="regtest"))
    assert k.evm_address(0) == "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
    assert k.btc_address(0) == "bcrt1qcr8te4kr609gcawutmrza0j4xv80jy8zeqchgx"


async def make_agent(db: Database, name: str = "a") -> int:
    async with db.uow() as uow:
        now: datetime = uow.clock.now()
        agent = Agent(
            name=name,
            email=f"{name}@example.com",
            email_verified=True,
            status="pending_deposit",
            api_key_hash=f"hash-{name}",
            api_key_prefix="as_",
            profile={},
            created_at=now,
            updated_at=now,
        )
        uow.session.add(agent)
        await uow.flush()
        agent_id = agent.id
        await uow.commit()
    return agent_id


async def test_each_agent_gets_its_own_index_and_keeps_it(db: Database) -> None:
    k = keys("regtest")
    a, b = await make_agent(db, "a"), await make_agent(db, "b")
    async with db.uow() as uow:
        a_usdt = await deposit_address_for(uow, a, "USDT", keys=k)
        b_eth = await deposit_address_for(uow, b, "eth", keys=k)
        a_btc = await deposit_address_for(uow, a, "BTC", keys=k)
        await uow.commit()
    assert (a_usdt.index, b_eth.index, a_btc.index) == (0, 1, 0)
    assert a_usdt.address == k.evm_address(0) and a_usdt.currency == "USDT"
    assert b_eth.address == k.evm_address(1) and b_eth.chain == "evm"
    assert a_btc.address == k.btc_address(0) and a_btc.chain == "btc"
    async with db.uow() as uow:
        # ETH and USDC share the agent's EVM address; asking again allocates nothing.
        assert (await deposit_address_for(uow, a, "ETH", keys=k)).address == a_usdt.address
        assert (await deposit_address_for(uow, a, "USDC", keys=k)).index == 0
        await uow.commit()


async def test_looking_up_an_address_never_allocates_one(db: Database) -> None:
    k = keys("regtest")
    a, b = await make_agent(db, "a"), await make_agent(db, "b")
    async with db.uow() as uow:
        assert await existing_deposit_address(uow, a, "USDC") is None
        await uow.commit()
    async with db.uow() as uow:
        # b asks first and gets index 0: a's lookup above took nothing.
        assert (await deposit_address_for(uow, b, "USDC", keys=k)).index == 0
        await uow.commit()
    async with db.uow() as uow:
        found = await existing_deposit_address(uow, b, "ETH")
    assert found is not None and found.address == k.evm_address(0) and found.currency == "ETH"


async def test_concurrent_allocations_never_share_an_index(db: Database) -> None:
    k = keys("regtest")
    agents = [await make_agent(db, f"c{i}") for i in range(8)]

    async def allocate(agent_id: int) -> int:
        async with db.uow() as uow:
            address = await deposit_address_for(uow, agent_id, "BTC", keys=k)
            await uow.commit()
            return address.index

    indexes = await asyncio.gather(*(allocate(a) for a in agents))
    assert sorted(indexes) == list(range(8))


async def test_unknown_currency_is_a_validation_error_and_writes_nothing(db: Database) -> None:
    a = await make_agent(db)
    async with db.uow() as uow:
        with pytest.raises(ValidationFailed) as raised:
            await deposit_address_for(uow, a, "DOGE", keys=keys())
        await uow.commit()
    assert raised.value.details["fields"][0]["field"] == "currency"
    async with db.uow() as uow:
        assert (await uow.session.execute(select(DepositAddressRecord))).first() is None


def test_bcoin_regtest_segwit_addresses_read_as_bcrt_and_others_stay_as_they_are() -> None:
    program = bytes(range(20))
    bcoin_style = SegwitBech32Encoder.Encode("rb", 0, program)
    assert reencode_bech32(bcoin_style, "rb", "bcrt") == SegwitBech32Encoder.Encode(
        "bcrt", 0, program
    )
    # A base58 (P2PKH) address of bcoin's regtest that happens to start with the same letters.
    base58 = "RB1HVprBkadms7P4Akztd9wbscNV8dkzjq"
    assert reencode_bech32(base58, "rb", "bcrt") == base58
    assert reencode_bech32("rb1notbech32", "rb", "bcrt") == "rb1notbech32"

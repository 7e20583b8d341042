"""Deposit addresses: watch-only HD derivation from account-level extended public keys.

The server holds only public keys, so it can hand out addresses but never spend:

- EVM (ETH, USDT, USDC): BIP-44 ``m/44'/60'/0'/0/i`` below the account key
  ``Settings.wallet_xpub_eth`` (``m/44'/60'/0'``), EIP-55 checksummed.
- BTC: BIP-84 native segwit ``m/84'/0'/0'/0/i`` below ``Settings.wallet_xpub_btc``
  (``m/84'/0'/0'``, given as xpub or zpub), bech32 with the prefix of
  ``Settings.btc_network``: ``bc`` (mainnet), ``tb`` (testnet, signet), ``bcrt`` (regtest).

Each agent gets one index per chain, taken from a counter row with one atomic
``UPDATE ... RETURNING``; an index is never handed out twice, even when a transaction that
took one rolls back.

Without configured keys the development keys below are used: the public account keys of the
well-known "abandon abandon ... about" test mnemonic. Anyone can spend from them, so a warning
is logged; never receive real money on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from agent_server.kernel.config import Settings, get_settings
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import UnitOfWork
from wallets.currencies import Chain, currency_info
from wallets.models import DepositAddressRecord, DerivationCounter

# bip_utils loads hundreds of modules: imported where addresses are derived, not by every
# process that imports this module (a server that derives none never loads it).
if TYPE_CHECKING:
    from bip_utils import Bip32Secp256k1

log = get_logger(__name__)

# Public account keys of the "abandon ... about" mnemonic (BIP-39 test vector), for development.
DEV_XPUB_ETH = (  # m/44'/60'/0'
    "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si"
    "3yZdUsT8ddYM3PwnATt"
)
DEV_XPUB_BTC = (  # m/84'/0'/0'
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31m"
    "GDtKsAYz2oz2AGutZYs"
)

BECH32_PREFIXES = {"mainnet": "bc", "testnet": "tb", "signet": "tb", "regtest": "bcrt"}

# Version bytes of public extended keys we accept (xpub/ypub/zpub and their test variants).
_PUBLIC_VERSIONS = {
    bytes.fromhex("0488b21e"): "xpub",
    bytes.fromhex("049d7cb2"): "ypub",
    bytes.fromhex("04b24746"): "zpub",
    bytes.fromhex("043587cf"): "tpub",
    bytes.fromhex("044a5262"): "upub",
    bytes.fromhex("045f1cf6"): "vpub",
}


class InvalidExtendedKey(ValueError):
    """The configured extended key is not an account-level public key."""


@dataclass(frozen=True)
class DepositAddress:
    """Where an agent sends one currency."""

    currency: str
    address: str
    index: int
    chain: str


def _account_key(text: str, setting: str) -> Bip32Secp256k1:
    from bip_utils import Base58Decoder, Bip32KeyNetVersions, Bip32Secp256k1

    text = text.strip()
    try:
        raw = Base58Decoder.CheckDecode(text)
    except Exception as exc:
        raise InvalidExtendedKey(f"{setting} is not a base58check extended key") from exc
    version = raw[:4]
    if version not in _PUBLIC_VERSIONS:
        raise InvalidExtendedKey(
            f"{setting} must be an extended PUBLIC key (xpub, zpub, tpub or vpub); "
            "the server never holds private keys"
        )
    key = Bip32Secp256k1.FromExtendedKey(text, Bip32KeyNetVersions(version, bytes(4)))
    if key.Depth().ToInt() != 3:
        raise InvalidExtendedKey(
            f"{setting} must be an account-level key (depth 3, e.g. m/44'/60'/0'), "
            f"not depth {key.Depth().ToInt()}"
        )
    return key


class WalletKeys:
    """The two account keys and the Bitcoin network; derives receive addresses."""

    def __init__(self, xpub_eth: str, xpub_btc: str, btc_network: str) -> None:
        if btc_network not in BECH32_PREFIXES:
            raise InvalidExtendedKey(
                f"btc_network must be one of {', '.join(BECH32_PREFIXES)}, not {btc_network!r}"
            )
        self.btc_network = btc_network
        self.btc_hrp = BECH32_PREFIXES[btc_network]
        # Receive (external) chain: the ".../0" child of the account.
        self._eth = _account_key(xpub_eth, "wallet_xpub_eth").ChildKey(0)
        self._btc = _account_key(xpub_btc, "wallet_xpub_btc").ChildKey(0)

    @classmethod
    def from_settings(cls, settings: Settings) -> WalletKeys:
        missing = [
            name
            for name, value in (
                ("AGENT_SERVER_WALLET_XPUB_ETH", settings.wallet_xpub_eth),
                ("AGENT_SERVER_WALLET_XPUB_BTC", settings.wallet_xpub_btc),
            )
            if not value
        ]
        if missing:
            log.warning(
                "wallets.development_keys",
                unset=missing,
                message="deposit addresses come from the public development test mnemonic; "
                "anyone can spend funds sent to them. Set the account xpubs before real use.",
            )
        return cls(
            settings.wallet_xpub_eth or DEV_XPUB_ETH,
            settings.wallet_xpub_btc or DEV_XPUB_BTC,
            settings.btc_network,
        )

    def evm_address(self, index: int) -> str:
        """The checksummed EVM address at ``m/44'/60'/0'/0/index``."""
        from bip_utils import EthAddr

        return str(EthAddr.EncodeKey(self._eth.ChildKey(index).PublicKey().KeyObject()))

    def btc_address(self, index: int) -> str:
        """The bech32 P2WPKH address at ``m/84'/0'/0'/0/index`` for the configured network."""
        from bip_utils import P2WPKHAddr

        key = self._btc.ChildKey(index).PublicKey().KeyObject()
        return str(P2WPKHAddr.EncodeKey(key, hrp=self.btc_hrp))

    def address(self, chain: Chain | str, index: int) -> str:
        if Chain(chain) is Chain.EVM:
            return self.evm_address(index)
        return self.btc_address(index)


@lru_cache(maxsize=8)
def _keys_for(xpub_eth: str | None, xpub_btc: str | None, btc_network: str) -> WalletKeys:
    return WalletKeys.from_settings(
        Settings(wallet_xpub_eth=xpub_eth, wallet_xpub_btc=xpub_btc, btc_network=btc_network)
    )


def wallet_keys(settings: Settings | None = None) -> WalletKeys:
    """The keys of ``settings`` (default: the process settings), built once per key set."""
    settings = settings or get_settings()
    return _keys_for(settings.wallet_xpub_eth, settings.wallet_xpub_btc, settings.btc_network)


async def _next_index(uow: UnitOfWork, chain: str) -> int:
    """Take the next derivation index of ``chain`` with one atomic counter update."""
    session = uow.session
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(DerivationCounter)
        .values(chain=chain, next_index=0)
        .on_conflict_do_nothing(index_elements=["chain"])
    )
    taken = await session.execute(
        update(DerivationCounter)
        .where(DerivationCounter.chain == chain)
        .values(next_index=DerivationCounter.next_index + 1)
        .returning(DerivationCounter.next_index)
    )
    return int(taken.scalar_one()) - 1


async def deposit_address_for(
    uow: UnitOfWork, agent_id: int, currency: str, *, keys: WalletKeys | None = None
) -> DepositAddress:
    """The agent's deposit address for ``currency``, allocated on first use.

    Flushes but does not commit: the caller's transaction decides, and must commit before
    the address is shown to anyone (a rolled-back allocation returns its index to the pool). Raises
    ``ValidationFailed`` (field ``currency``) for an unknown currency.
    """
    info = currency_info(currency)
    chain = info.chain.value
    record = await _existing(uow, agent_id, chain)
    if record is None:
        keys = keys or wallet_keys()
        index = await _next_index(uow, chain)
        candidate = DepositAddressRecord(
            agent_id=agent_id,
            chain=chain,
            derivation_index=index,
            address=keys.address(chain, index),
            created_at=uow.clock.now(),
        )
        try:
            async with uow.session.begin_nested():
                uow.session.add(candidate)
        except IntegrityError:
            # Another transaction gave this agent an address first; its index stays unused.
            record = await _existing(uow, agent_id, chain)
            if record is None:
                raise
        else:
            record = candidate
            log.info("wallets.address_allocated", agent_id=agent_id, chain=chain, index=index)
    return DepositAddress(
        currency=info.code, address=record.address, index=record.derivation_index, chain=chain
    )


async def existing_deposit_address(
    uow: UnitOfWork, agent_id: int, currency: str
) -> DepositAddress | None:
    """The agent's address for ``currency`` if one was allocated; never allocates.

    For answers given from a transaction that will roll back (an INSUFFICIENT_FUNDS error
    writes nothing): an address allocated there would be handed out again later.
    """
    info = currency_info(currency)
    record = await _existing(uow, agent_id, info.chain.value)
    if record is None:
        return None
    return DepositAddress(info.code, record.address, record.derivation_index, record.chain)


async def _existing(uow: UnitOfWork, agent_id: int, chain: str) -> DepositAddressRecord | None:
    return (
        await uow.session.execute(
            select(DepositAddressRecord).where(
                DepositAddressRecord.agent_id == agent_id, DepositAddressRecord.chain == chain
            )
        )
    ).scalar_one_or_none()


async def agent_addresses(uow: UnitOfWork, agent_id: int) -> dict[str, DepositAddressRecord]:
    """The agent's allocated addresses by chain (``evm``, ``btc``)."""
    rows = await uow.session.execute(
        select(DepositAddressRecord).where(DepositAddressRecord.agent_id == agent_id)
    )
    return {row.chain: row for row in rows.scalars()}


async def owners_of(uow: UnitOfWork, chain: str, addresses: list[str]) -> dict[str, int]:
    """Which agent owns each of ``addresses`` (canonical form) on ``chain``."""
    owners: dict[str, int] = {}
    for start in range(0, len(addresses), 500):
        batch = addresses[start : start + 500]
        rows = await uow.session.execute(
            select(DepositAddressRecord.address, DepositAddressRecord.agent_id).where(
                DepositAddressRecord.chain == chain, DepositAddressRecord.address.in_(batch)
            )
        )
        owners.update({str(address): int(agent_id) for address, agent_id in rows})
    return owners


async def all_addresses(uow: UnitOfWork, chain: str) -> dict[str, int]:
    """Every deposit address on ``chain`` with its agent."""
    rows = await uow.session.execute(
        select(DepositAddressRecord.address, DepositAddressRecord.agent_id).where(
            DepositAddressRecord.chain == chain
        )
    )
    return {str(address): int(agent_id) for address, agent_id in rows}

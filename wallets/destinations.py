"""External addresses money is sent to: checked for their chain and network before use.

ETH, USDT and USDC go to an EVM address written with its EIP-55 checksum (mixed case), so a
mistyped character is caught; an all-lowercase address carries no checksum and is refused.
BTC goes to a native SegWit address (bech32 for version 0, bech32m for taproot) of the
configured network: ``bc1`` on mainnet, ``tb1`` on testnet, ``bcrt1`` on regtest.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_server.kernel.errors import ValidationFailed
from wallets.currencies import Chain, currency_info

BTC_HRP = {"mainnet": "bc", "testnet": "tb", "signet": "tb", "regtest": "bcrt"}


@dataclass(frozen=True)
class Destination:
    """A checked address: as it will be sent to, and the network it belongs to."""

    currency: str
    address: str
    network: str  # "evm" or "bitcoin:<network>"


def btc_network_of(address: str) -> str | None:
    """The Bitcoin network a bech32 address decodes for, or None."""
    from bip_utils import SegwitBech32Decoder  # imported on use: a heavy package

    lowered = address.lower()
    for network, hrp in (("regtest", "bcrt"), ("mainnet", "bc"), ("testnet", "tb")):
        if lowered.startswith(hrp + "1"):
            try:
                SegwitBech32Decoder.Decode(hrp, lowered)
            except Exception:
                return None
            return network
    return None


def check_destination(currency: str, address: str, *, btc_network: str) -> Destination:
    """``address`` checked for ``currency``'s chain and this server's network.

    Raises ``ValidationFailed`` on field ``address`` with what is wrong and what to send.
    """
    info = currency_info(currency)
    text = address.strip()
    if not text or len(text) > 100:
        raise ValidationFailed.field("address", f"give the {info.code} address to send to")
    if info.chain is Chain.EVM:
        return Destination(info.code, _evm(info.code, text), "evm")
    return Destination(info.code, _btc(text, btc_network), f"bitcoin:{btc_network}")


def _evm(code: str, text: str) -> str:
    # eth_utils is imported on use: a heavy package most requests never need.
    from eth_utils.address import is_checksum_address, is_hex_address, to_checksum_address

    if not is_hex_address(text):
        hint = " (that is a BTC address)" if btc_network_of(text) else ""
        raise ValidationFailed.field(
            "address",
            f"not an Ethereum address{hint}: {code} goes to 0x and 40 hex digits",
        )
    if not is_checksum_address(text):
        if text[2:] == text[2:].lower() or text[2:] == text[2:].upper():
            raise ValidationFailed.field(
                "address",
                "write the address with its EIP-55 checksum (mixed case, as your wallet "
                "shows it); without it a typo cannot be caught",
            )
        raise ValidationFailed.field(
            "address", "the EIP-55 checksum does not match: the address has a typo"
        )
    return to_checksum_address(text)


def _btc(text: str, network: str) -> str:
    hrp = BTC_HRP.get(network)
    if hrp is None:
        raise ValueError(f"unknown BTC network {network!r}")
    from eth_utils.address import is_hex_address

    if is_hex_address(text):
        raise ValidationFailed.field(
            "address", "that is an Ethereum address: BTC goes to a bech32 address"
        )
    found = btc_network_of(text)
    if found is None:
        raise ValidationFailed.field(
            "address",
            f"not a valid bech32 BTC address (or its checksum fails): give a {hrp}1... address",
        )
    if BTC_HRP[found] != hrp:
        raise ValidationFailed.field(
            "address",
            f"that is a BTC {found} address; this server pays on {network}: give a {hrp}1... "
            "address",
        )
    return text.lower()

"""The sender's settings and its hot-wallet key, read by the sender process only.

``SenderSettings`` reads ``AGENT_SERVER_SENDER_*`` variables (never part of the server's
``Settings``, so a server that does not send never reads them). The EVM key lives in a standard
encrypted keystore (``eth_account.Account.encrypt``) whose password comes from
``AGENT_SERVER_SENDER_KEYSTORE_PASSWORD`` or the file ``..._PASSWORD_FILE``.

On the embedded development chain the key is anvil's second development account (public
knowledge, worthless elsewhere; the first one funds agents with ``dev fund``, so the two never
share a nonce): ``development_keystore`` writes it once into a keystore with a random password
file beside it, both readable by their owner only, and rewrites a keystore made for another
account.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_server.kernel.config import ENV_FILE_VARIABLE
from agent_server.kernel.recursion import restore_recursion_limit

restore_recursion_limit()  # importing eth_account raised it (py_ecc)

# anvil's second development account (well known): the embedded chain's hot wallet. anvil
# gives it ETH at start and the embedded chain mints it test tokens
# (``wallets.chains.anvil.SENDER_ACCOUNT``).
ANVIL_SENDER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


class SenderSettings(BaseSettings):
    """What the sender needs beyond the server's settings: key, nodes, fees, timing."""

    model_config = SettingsConfigDict(
        env_prefix="AGENT_SERVER_SENDER_", env_file=".env", extra="ignore", frozen=True
    )

    keystore: Path | None = None
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    # The bcoin wallet that signs BTC (its wallet HTTP URL, wallet id and API key).
    btc_wallet_url: str | None = None
    btc_wallet_id: str = "primary"
    btc_wallet_api_key: SecretStr | None = None
    btc_fee_rate: int = 1000  # satoshi per kvB
    token_gas_limit: int = 100_000
    # A transaction not mined this many seconds after its broadcast is replaced with a higher
    # fee under the same nonce.
    replace_after: float = 120.0
    interval: float = 2.0


def sender_settings() -> SenderSettings:
    """The sender's settings, from the environment and the same file as the server's
    (``AGENT_SERVER_ENV_FILE``, else ``.env``)."""
    return SenderSettings(_env_file=os.environ.get(ENV_FILE_VARIABLE) or ".env")


class KeyUnavailable(RuntimeError):
    """The keystore or its password is missing or wrong (never says what the password was)."""


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def write_keystore(path: Path, private_key: str, password: str) -> str:
    """Encrypt ``private_key`` into a standard keystore at ``path``; the account address."""
    encrypted = Account.encrypt(HexStr(private_key), password)
    _write_private(path, json.dumps(encrypted))
    return str(Account.from_key(private_key).address)


def development_keystore(directory: Path) -> tuple[Path, Path]:
    """The embedded chain's keystore and password file in ``directory``, made on first use."""
    keystore = directory / "keystore.json"
    password_file = directory / "keystore-password"
    if (
        not keystore.exists()
        or not password_file.exists()
        or keystore_address(keystore) != Account.from_key(ANVIL_SENDER_KEY).address.lower()
    ):
        password = secrets.token_urlsafe(24)
        _write_private(password_file, password)
        write_keystore(keystore, ANVIL_SENDER_KEY, password)
    return keystore, password_file


def keystore_address(path: Path) -> str | None:
    """The lower-case 0x address a keystore names (read without decrypting), or None."""
    try:
        address = json.loads(path.read_text()).get("address")
    except (OSError, ValueError, AttributeError):
        return None
    return f"0x{str(address).lower().removeprefix('0x')}" if address else None


def _password(settings: SenderSettings, password_file: Path | None) -> str:
    if settings.keystore_password is not None:
        return settings.keystore_password.get_secret_value()
    source = settings.keystore_password_file or password_file
    if source is None:
        raise KeyUnavailable(
            "no keystore password: set AGENT_SERVER_SENDER_KEYSTORE_PASSWORD or "
            "AGENT_SERVER_SENDER_KEYSTORE_PASSWORD_FILE"
        )
    try:
        return source.read_text().strip()
    except OSError as exc:
        raise KeyUnavailable(
            f"the keystore password file cannot be read ({exc.strerror})"
        ) from None


def load_evm_account(
    settings: SenderSettings,
    *,
    keystore: Path | None = None,
    password_file: Path | None = None,
) -> LocalAccount:
    """The hot wallet's account, decrypted from its keystore."""
    path = settings.keystore or keystore
    if path is None:
        raise KeyUnavailable("no keystore: set AGENT_SERVER_SENDER_KEYSTORE")
    try:
        encrypted = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KeyUnavailable(f"the keystore {path} cannot be read ({type(exc).__name__})") from None
    try:
        key = Account.decrypt(encrypted, _password(settings, password_file))
    except ValueError:
        raise KeyUnavailable(f"the keystore {path} does not open with its password") from None
    account: LocalAccount = Account.from_key(key)
    return account

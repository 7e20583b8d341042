"""The hot wallet's key: an encrypted standard keystore read by the sender alone.

A server without the sender never imports the key-reading code nor reads its settings; the
keystore holds no plain key, is readable by its owner only, and a wrong password is refused
without being repeated.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr

from agent_server.kernel.config import Settings
from wallets.chains.anvil import DEV_ACCOUNT, SENDER_ACCOUNT
from wallets.sending.keys import (
    KeyUnavailable,
    SenderSettings,
    development_keystore,
    load_evm_account,
    write_keystore,
)

PROBE = """
import asyncio, json, sys
from agent_server.app import create_app
from agent_server.kernel.config import Settings
from agent_server.runtime import Runtime

async def main():
    runtime = Runtime.create(Settings())
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.5)
        loaded = "wallets.sending.keys" in sys.modules
    print(json.dumps({"key_code_loaded": loaded}))

asyncio.run(main())
"""


def _serve_probe(tmp_path: Path, sqlite_template: Path, **extra: str) -> dict[str, bool]:
    database = tmp_path / "probe.db"
    database.write_bytes(sqlite_template.read_bytes())
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    environ.update(
        AGENT_SERVER_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        AGENT_SERVER_START_WATCHERS="false",
        AGENT_SERVER_START_WORKER="false",
        AGENT_SERVER_EVM_RPC_URL="http://127.0.0.1:9",
        AGENT_SERVER_SENDER_KEYSTORE=str(tmp_path / "keystore.json"),
        AGENT_SERVER_SENDER_KEYSTORE_PASSWORD="a password the server must not read",
        AGENT_SERVER_SENDER_INTERVAL="0.1",
        **extra,
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, bool] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_server_without_the_sender_never_loads_the_key_code(
    tmp_path: Path, sqlite_template: Path
) -> None:
    assert _serve_probe(tmp_path, sqlite_template) == {"key_code_loaded": False}
    # The same server told to send does load it: the probe can tell the difference.
    assert _serve_probe(tmp_path, sqlite_template, AGENT_SERVER_SEND_WITHDRAWALS="true") == {
        "key_code_loaded": True
    }


def test_the_server_settings_hold_no_key_material() -> None:
    for name in Settings.model_fields:
        for word in ("keystore", "password", "private_key", "mnemonic", "seed", "sender_"):
            assert word not in name


def test_the_keystore_is_encrypted_private_and_refuses_a_wrong_password(tmp_path: Path) -> None:
    key = Account.create().key.hex()
    path = tmp_path / "keystore.json"
    address = write_keystore(path, key, "right password")
    text = path.read_text()
    assert key.removeprefix("0x") not in text and json.loads(text)["crypto"]["kdf"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    opened = load_evm_account(
        SenderSettings(keystore=path, keystore_password=SecretStr("right password"))
    )
    assert opened.address == address
    with pytest.raises(KeyUnavailable) as refused:
        load_evm_account(
            SenderSettings(keystore=path, keystore_password=SecretStr("wrong password"))
        )
    assert "wrong password" not in str(refused.value)


def test_the_development_keystore_is_made_once_for_anvils_sender_account(tmp_path: Path) -> None:
    keystore, password_file = development_keystore(tmp_path / "sender")
    first = keystore.read_text()
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    account = load_evm_account(SenderSettings(), keystore=keystore, password_file=password_file)
    # Its own account, not the one `dev fund` sends from: the two never share a nonce.
    assert account.address == SENDER_ACCOUNT == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert account.address != DEV_ACCOUNT
    development_keystore(tmp_path / "sender")
    assert keystore.read_text() == first


def test_a_development_keystore_of_the_funding_account_is_replaced(tmp_path: Path) -> None:
    # A checkout whose first start wrote anvil's first account (the one `dev fund` uses).
    directory = tmp_path / "sender"
    directory.mkdir()
    (directory / "keystore-password").write_text("old password")
    funding_key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    write_keystore(directory / "keystore.json", funding_key, "old password")
    keystore, password_file = development_keystore(directory)
    account = load_evm_account(SenderSettings(), keystore=keystore, password_file=password_file)
    assert account.address == SENDER_ACCOUNT


def test_a_sender_with_a_wrong_password_says_so_without_any_secret(
    tmp_path: Path, sqlite_template: Path
) -> None:
    key = Account.create().key.hex()
    keystore = tmp_path / "keystore.json"
    write_keystore(keystore, key, "the right one")
    database = tmp_path / "sender.db"
    database.write_bytes(sqlite_template.read_bytes())
    wrong = "hunter2-wrong-password"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    environ.update(
        AGENT_SERVER_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        AGENT_SERVER_EVM_RPC_URL="http://127.0.0.1:9",
        AGENT_SERVER_SENDER_KEYSTORE=str(keystore),
        AGENT_SERVER_SENDER_KEYSTORE_PASSWORD=wrong,
        AGENT_SERVER_LOG_FORMAT="json",
    )
    process = subprocess.Popen(
        [sys.executable, "-c", "from agent_server.cli import app; app()", "send-withdrawals"],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = ""
        assert process.stdout is not None
        for line in process.stdout:
            output += line
            if "withdrawals.sender_not_ready" in line:
                break
    finally:
        process.terminate()
        output += process.communicate(timeout=20)[0]
    assert "does not open with its password" in output
    for secret in (wrong, "the right one", key.removeprefix("0x")):
        assert secret not in output

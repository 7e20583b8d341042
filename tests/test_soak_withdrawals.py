"""The soak's money-out part on its own: two senders on one PostgreSQL database, one killed
with SIGKILL three times, withdrawals and payouts checked against the model and the chain
(``soak_withdrawals``). The audit is then shown to catch a model one base unit off and a withdrawal
signed under a second nonce."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from db_support import PG_ADMIN_URL
from soak import drop_database, fresh_database
from soak_withdrawals import run_withdrawal_soak

from agent_server.kernel.store import Database, make_engine

pytestmark = pytest.mark.postgres


async def test_withdrawals_and_payouts_survive_killed_senders(tmp_path: Path, pg_url: str) -> None:
    name, url = await fresh_database(PG_ADMIN_URL)
    db = Database(make_engine(url))
    try:
        result = await run_withdrawal_soak(db, url, tmp_path, random.Random(7))
    finally:
        await db.dispose()
        await drop_database(PG_ADMIN_URL, name)
    figures = result.figures
    assert result.problems == [], (result.problems, figures, sorted(tmp_path.iterdir()))
    assert figures["withdrawals_by_status"].get("confirmed", 0) >= 10
    assert figures["whale_failed"] and figures["payouts"] == 2
    assert figures["withdrawals_by_status"].get("cancelled") == 1
    # The audit catches what it claims to.
    assert figures["audit_catches"] == {"wallet_off_by_one": True, "second_nonce": True}

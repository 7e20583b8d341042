"""An agent's activation follows the deposits that fund it, also when a reorg's reversal and a
new deposit's credit run at the same moment."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from billing_support import pending_deposit
from chain_support import deposits, make_agent, status_of

from agent_server.kernel.store import Database, UnitOfWork
from agent_server.services.deposits import DEPOSIT_FOLLOW_UP
from wallets.crediting import credit_confirmed, orphan
from wallets.models import Deposit
from wallets.rates import FakeRateSource

Step = Callable[[UnitOfWork, Deposit], Awaitable[None]]
ACTIVATION = 20_000_000  # 20 USD
UNIT = 1_000_000  # base units per USDC or USDT


async def credit(uow: UnitOfWork, deposit: Deposit) -> None:
    fresh = await uow.session.get(Deposit, deposit.id)
    assert fresh is not None
    assert await credit_confirmed(
        uow,
        fresh,
        rates=FakeRateSource(),
        activation_usd_micros=ACTIVATION,
        confirmations=3,
        follow_up=DEPOSIT_FOLLOW_UP,
    )


async def reverse(uow: UnitOfWork, deposit: Deposit) -> None:
    gone = await uow.session.get(Deposit, deposit.id)
    assert gone is not None
    await orphan(uow, gone, "reorg", activation_usd_micros=ACTIVATION, follow_up=DEPOSIT_FOLLOW_UP)


async def committed(db: Database, step: Step, deposit: Deposit) -> None:
    async with db.uow() as uow:
        await step(uow, deposit)
        await uow.commit()


@pytest.mark.parametrize("first", ["credit", "reversal"])
async def test_a_credit_racing_the_reversal_of_the_activating_deposit_keeps_the_agent_active(
    db: Database, first: str
) -> None:
    agent = await make_agent(db)
    # Two currencies, two wallets: no wallet row lock orders the two transactions.
    activating = await pending_deposit(db, agent, "USDT", 30 * UNIT)
    await committed(db, credit, activating)
    assert await status_of(db, agent) == "active"
    another = await pending_deposit(db, agent, "USDC", 25 * UNIT)
    steps: list[tuple[Step, Deposit]] = [(credit, another), (reverse, activating)]
    (step, deposit), (then, other) = steps if first == "credit" else steps[::-1]

    async with db.uow() as uow:
        await step(uow, deposit)
        # Not committed yet: the other transaction runs meanwhile. Whichever decides second
        # must see what the first did.
        racing = asyncio.create_task(committed(db, then, other))
        await asyncio.sleep(0.3)
        await uow.commit()
    await asyncio.wait_for(racing, 30)
    assert await status_of(db, agent) == "active"
    assert [d.status for d in await deposits(db)] == ["orphaned", "credited"]

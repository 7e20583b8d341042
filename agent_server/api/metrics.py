"""``GET /metrics``: this process's Prometheus metrics, with the database's states read now."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

from agent_server.kernel.logs import get_logger
from agent_server.kernel.metrics import DB_POOL, DEPOSITS, WITHDRAWALS
from agent_server.runtime import Runtime
from wallets.models import Deposit
from wallets.withdrawal_models import Withdrawal

log = get_logger(__name__)


def _read_pool(runtime: Runtime) -> None:
    pool: Any = runtime.db.engine.pool
    for state, reading in (("checked_out", "checkedout"), ("idle", "checkedin"), ("size", "size")):
        method = getattr(pool, reading, None)
        if callable(method):
            DB_POOL.labels(state).set(int(method()))


async def _read_states(runtime: Runtime) -> None:
    """Deposits and withdrawals by currency and status, as the database has them now."""
    async with runtime.db.uow() as uow:
        for gauge, table in ((DEPOSITS, Deposit), (WITHDRAWALS, Withdrawal)):
            rows = await uow.session.execute(
                select(table.currency, table.status, func.count()).group_by(
                    table.currency, table.status
                )
            )
            gauge.clear()
            for currency, status, count in rows:
                gauge.labels(currency, status).set(int(count))


def metrics_endpoint(runtime: Runtime) -> Any:
    async def metrics(_request: Request) -> Response:
        _read_pool(runtime)
        try:
            await _read_states(runtime)
        except Exception as exc:  # the database is down: the process's own figures still count
            log.warning("metrics.database_unreachable", error=type(exc).__name__)
            DEPOSITS.clear()
            WITHDRAWALS.clear()
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return metrics

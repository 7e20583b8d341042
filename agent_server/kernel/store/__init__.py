"""The store layer: declarative base, engines and the unit of work."""

from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime
from agent_server.kernel.store.direct import Direct, column_binds, direct_execute, direct_rows
from agent_server.kernel.store.engine import is_sqlite, make_engine, make_sessionmaker
from agent_server.kernel.store.local_settings import (
    PLAN_EACH_TIME,
    plan_each_time,
    skipping_flush_wait,
)
from agent_server.kernel.store.uow import Database, UnitOfWork

__all__ = [
    "PLAN_EACH_TIME",
    "Base",
    "BigIntPK",
    "Database",
    "Direct",
    "UTCDateTime",
    "UnitOfWork",
    "column_binds",
    "direct_execute",
    "direct_rows",
    "is_sqlite",
    "make_engine",
    "make_sessionmaker",
    "plan_each_time",
    "skipping_flush_wait",
]

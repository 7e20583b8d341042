"""The store layer: declarative base, engines and the unit of work."""

from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime
from agent_server.kernel.store.direct import Direct, direct_execute, direct_rows, skip_flush_wait
from agent_server.kernel.store.engine import is_sqlite, make_engine, make_sessionmaker
from agent_server.kernel.store.uow import Database, UnitOfWork

__all__ = [
    "Base",
    "BigIntPK",
    "Database",
    "Direct",
    "UTCDateTime",
    "UnitOfWork",
    "direct_execute",
    "direct_rows",
    "is_sqlite",
    "make_engine",
    "make_sessionmaker",
    "skip_flush_wait",
]

"""The runtime: everything a request handler needs, built once per process.

Transports (REST, MCP, dashboard) receive a ``Runtime`` through the app's state or the MCP
lifespan context, never through module globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import agent_server.events  # noqa: F401  (registers the deposit-event hook with the wallets)
from agent_server.kernel.clock import Clock, SystemClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from billing.config import BillingConfig


@dataclass
class Runtime:
    """Settings, the database and the clock shared by every transport."""

    settings: Settings
    db: Database
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def clock(self) -> Clock:
        return self.db.clock

    @property
    def billing(self) -> BillingConfig:
        """Prices, rates and metering knobs, read once per process."""
        config = self.extras.get("billing")
        if not isinstance(config, BillingConfig):
            config = BillingConfig.from_settings(self.settings)
            self.extras["billing"] = config
        return config

    @classmethod
    def create(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        engine = make_engine(
            settings.database_url,
            echo=settings.database_echo,
            pool_size=settings.database_pool_size,
            pool_timeout=settings.database_pool_timeout,
            lock_timeout=settings.database_lock_timeout or None,
        )
        return cls(settings=settings, db=Database(engine, clock or SystemClock()))

    async def close(self) -> None:
        await self.db.dispose()

"""The runtime: everything a request handler needs, built once per process.

Transports (REST, MCP, dashboard) receive a ``Runtime`` through the app's state or the MCP
lifespan context, never through module globals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_server.kernel.clock import Clock, SystemClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from billing.config import BillingConfig
from wallets.network_fees import FeeSource, FixedFees, NodeFees
from wallets.rates import RateSource

if TYPE_CHECKING:
    from wallets.embedded import ChainServices


class Runtime:
    """Settings, the database, the clock, billing's configuration and the rate source shared
    by every transport.

    One rate source serves the whole process: the meter charges with ``billing.rates`` and
    every surface shows balances in USD with ``rates``, which is the same object. Give it as
    ``rates`` (tests give a fake one) or let billing's configuration choose it.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        rates: RateSource | None = None,
        billing: BillingConfig | None = None,
    ) -> None:
        if rates is not None and billing is not None and billing.rates is not rates:
            raise ValueError("give the rates in the billing configuration, not beside it")
        self.settings = settings
        self.db = db
        self._rates = rates
        self._billing = billing
        # The chain watchers and embedded nodes, while ``wallets.embedded`` runs them.
        self.chain_services: ChainServices | None = None
        self._network_fees: FeeSource | None = None

    @property
    def clock(self) -> Clock:
        return self.db.clock

    @property
    def billing(self) -> BillingConfig:
        """Prices, rates and metering knobs, read once per process (on first use)."""
        if self._billing is None:
            self._billing = BillingConfig.from_settings(self.settings, self._rates)
        return self._billing

    @property
    def rates(self) -> RateSource:
        """The rate source every charge and every shown USD figure uses."""
        return self.billing.rates

    def _evm_rpc_url(self) -> str | None:
        """The configured EVM node, else the embedded chain's while it runs."""
        if self.settings.evm_rpc_url:
            return self.settings.evm_rpc_url
        endpoint = self.chain_services.endpoint if self.chain_services else None
        url = (endpoint or {}).get("rpc_url")
        return str(url) if url else None

    @property
    def network_fees(self) -> FeeSource:
        """Where withdrawal quotes read fee levels: the configured nodes, else the fallbacks."""
        if self._network_fees is None:
            fallback = FixedFees(
                self.settings.fallback_gas_price_gwei * 10**9, self.settings.fallback_btc_fee_rate
            )
            self._network_fees = NodeFees(self._evm_rpc_url, self.settings.btc_rpc_url, fallback)
        return self._network_fees

    @network_fees.setter
    def network_fees(self, source: FeeSource) -> None:
        self._network_fees = source

    @classmethod
    def create(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        engine = make_engine(
            settings.database_url,
            echo=settings.database_echo,
            pool_size=settings.database_pool_size,
            pool_timeout=settings.database_pool_timeout,
            lock_timeout=settings.database_lock_timeout or None,
            shortcuts=settings.database_shortcuts,
        )
        db = Database(engine, clock or SystemClock(), shortcuts=settings.database_shortcuts)
        return cls(settings=settings, db=db)

    async def close(self) -> None:
        await self.db.dispose()

"""The runtime holds one rate source: what the meter charges with is what every surface shows."""

from __future__ import annotations

import pytest
from accounts_support import settings_for

from agent_server.kernel.store import Database
from agent_server.runtime import Runtime
from billing.config import BillingConfig
from wallets.rates import FakeRateSource, StaticRateSource, rate_source


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_rates_shown_are_the_rates_charged_whichever_is_asked_first(
    database_url: str, db: Database
) -> None:
    shown_first = Runtime(settings_for(database_url), db)
    assert rate_source(shown_first) is shown_first.billing.rates
    charged_first = Runtime(settings_for(database_url), db)
    assert charged_first.billing.rates is rate_source(charged_first)
    fake = FakeRateSource()
    given = Runtime(settings_for(database_url), db, rates=fake)
    assert rate_source(given) is fake and given.billing.rates is fake


@pytest.mark.parametrize("backend", ["sqlite"])
def test_rates_beside_a_billing_configuration_with_other_rates_are_refused(
    database_url: str, db: Database
) -> None:
    settings = settings_for(database_url)
    config = BillingConfig.from_settings(settings, StaticRateSource())
    with pytest.raises(ValueError, match="billing configuration"):
        Runtime(settings, db, rates=FakeRateSource(), billing=config)
    assert Runtime(settings, db, billing=config).rates is config.rates

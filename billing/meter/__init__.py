"""The meter: every priced tool call goes through ``run_metered``.

The transport's gate admits the call and hands the meter one ``Admission`` (who calls which
tool with what, and the gate's own hooks) with the tool's operation. The operation receives a
``MeteredCall`` (its unit of work, call id, and ``escrow``) and returns the tool's structured
result as a JSON-ready dict; it must not commit. A call that is refused or fails costs
nothing and writes nothing but a released hold's two entries; a successful one is charged
exactly once and its result comes with a ``Receipt`` (call id, tool, USD price, currency,
amount, balance after; ``free: true`` and a zero amount for a free-quota call).

One module per concern:

* ``pricing``: a call's price in a wallet currency (``price_in``), ``ExtraPrice``;
* ``payers``: which wallet pays, and the ``InsufficientFunds`` refusal;
* ``quota``: the free monthly quota;
* ``holds``: the two-phase hold, capture and release of side-effecting calls;
* ``admission``: the ``Admission`` and the protocols of the gate and the balance hook;
* ``calls``: ``MeteredCall``, ``Receipt``, ``Metered`` and the usage row;
* ``run``: ``run_metered``, which puts them together for read and held calls;
* ``quotes``: the ``quote`` tool, on the same payer choice.
"""

from billing.meter.admission import (
    Admission,
    BalanceLowHook,
    CallGate,
    PriceLookup,
    max_price_refused,
)
from billing.meter.calls import Metered, MeteredCall, Operation, Receipt
from billing.meter.holds import place_hold, release_hold, release_stale_holds
from billing.meter.payers import Payer, Wallets, choose_payer, insufficient_funds, read_wallets
from billing.meter.pricing import ExtraPrice, Price, price_in
from billing.meter.quota import free_quota_left, period_of
from billing.meter.quotes import Quote, quote, quote_in
from billing.meter.run import run_metered

__all__ = [
    "Admission",
    "BalanceLowHook",
    "CallGate",
    "ExtraPrice",
    "Metered",
    "MeteredCall",
    "Operation",
    "Payer",
    "Price",
    "PriceLookup",
    "Quote",
    "Receipt",
    "Wallets",
    "choose_payer",
    "free_quota_left",
    "insufficient_funds",
    "max_price_refused",
    "period_of",
    "place_hold",
    "price_in",
    "quote",
    "quote_in",
    "read_wallets",
    "release_hold",
    "release_stale_holds",
    "run_metered",
]

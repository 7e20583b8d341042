"""The service layer: one function per use case that moves money or crosses domains.

Transports (MCP tools, REST routes, dashboard pages, operator commands) and background jobs call
these functions; they never post ledger entries or call billing's escrow, refund or payout
themselves. A service function takes an entered ``UnitOfWork`` and does the domain change and
its money step in it, without committing: the caller commits once, so the booking's status,
its history line, its event and its ledger transaction land together or not at all.

* ``bookings``: book (after the meter admits the call), cancel, reject, complete, reschedule.
* ``deposits``: what a credited or reversed deposit does to the ledger, its agent's account
  and outbox (the wallets' ``DepositFollowUp``), given to every deposit watcher.
* ``wallets``: an agent's wallet view (ledger balances, pending deposits, addresses) and the
  choice of a deposit currency.
* ``funds``: operator credits and debits of a wallet, and the activation a credit brings.
* ``reviews``: the booker's review of a finished booking, and the provider's rating it sets.
* ``withdrawals``: money out: quote, request, address confirmation, cancel, approval,
  rejection, failure and settlement, scheduled payouts; ``withdrawal_jobs`` runs the due ones;
  ``withdrawal_limits`` the owner's daily and monthly limits on them.
* ``limits``: the owner's spending caps, withdrawal limits and low-balance threshold: the
  agent only tightens them, the owner loosens them (dashboard, or REST with a mailed code).
* ``withdrawal_sender``: runs the sender (``wallets.sending``) and gives it the ledger and
  event side of sent, confirmed and failed (the wallets' ``WithdrawalFollowUp``).
* ``registration``: a new agent with its deposit address and activation deposit.
* ``closing``: closing an account: what its money becomes, its schedules withdrawn, its
  personal data erased (``close_account``).

Layers, arrows pointing down only (checked by ``lint-imports``, see pyproject.toml):
transports → services and runtime → domain → kernel; inside the domain, booking → events →
accounts and billing → mail and wallets.
"""

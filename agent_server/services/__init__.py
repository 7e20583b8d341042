"""The service layer: one function per use case that moves money or crosses domains.

Transports (MCP tools, REST routes, dashboard pages, operator commands) and background jobs call
these functions; they never post ledger entries or call billing's escrow, refund or payout
themselves. A service function takes an entered ``UnitOfWork`` and does the domain change and
its money step in it, without committing: the caller commits once, so the booking's status,
its history line, its event and its ledger transaction land together or not at all.

* ``bookings``: book (after the meter admits the call), cancel, reject, complete, reschedule.
* ``deposits``: what a credited or reversed deposit does to its agent's account and outbox
  (the wallets' ``DepositFollowUp``), given to every deposit watcher.
* ``funds``: operator credits and debits of a wallet, and the activation a credit brings.
* ``reviews``: the booker's review of a finished booking, and the provider's rating it sets.
* ``withdrawals``: money out: quote, request, address confirmation, cancel, approval,
  rejection, failure and settlement, scheduled payouts; ``withdrawal_jobs`` runs the due ones.
* ``withdrawal_sender``: runs the sender (``wallets.sending``) and gives it the ledger and
  event side of sent, confirmed and failed (the wallets' ``WithdrawalFollowUp``).
* ``closing``: what an agent's money becomes when its account is closed.

Layers, arrows pointing down only (checked by ``lint-imports``, see pyproject.toml):
transports → services and runtime → domain (booking, accounts, events, billing, wallets) →
kernel.
"""

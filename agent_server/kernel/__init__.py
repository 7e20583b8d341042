"""The kernel every layer stands on: store, errors, clock, config, logs, money, inputs.

Nothing here imports a domain package (booking, accounts, events, billing, wallets), the
services or a transport; everything above may import from here.
"""

"""Sending withdrawals and payouts on chain, exactly once (``agent-server send-withdrawals``).

The only code of the product that reads a private key: ``keys`` (the EVM keystore and its
password, from ``SenderSettings``, read by the sender alone), ``evm`` and ``btc`` (sign,
broadcast, look up), ``sender`` (the state machine: record, broadcast, follow, replace).
"""

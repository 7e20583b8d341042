"""Prices, metering, the double-entry ledger and usage."""

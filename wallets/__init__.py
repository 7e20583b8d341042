"""Deposit addresses, chain watchers and exchange rates."""

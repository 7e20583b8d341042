"""Agent accounts: registration, API keys, email verification, statuses and the gate."""

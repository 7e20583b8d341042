"""Settings read from ``AGENT_SERVER_*`` environment variables and an optional ``.env``."""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _seconds(value: object) -> object:
    """A duration written as a number of seconds (``"90"``, ``"0.5"``), as environment
    variables carry it; anything else (``PT24H``, a timedelta) is pydantic's to read."""
    if isinstance(value, str):
        try:
            return timedelta(seconds=float(value))
        except ValueError:
            return value
    return value


Duration = Annotated[timedelta, BeforeValidator(_seconds)]
"""A duration: seconds, or ISO 8601 (``PT24H``)."""


class Settings(BaseSettings):
    """Operator configuration. Every field maps to ``AGENT_SERVER_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="AGENT_SERVER_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "sqlite+aiosqlite:///./agent_server.db"
    database_echo: bool = False
    # PostgreSQL: connections kept open, and as many more opened under load; how long a
    # request waits for one before it is answered SERVICE_UNAVAILABLE (retry later).
    database_pool_size: int = Field(default=10, ge=1)
    database_pool_timeout: float = Field(default=10.0, gt=0)
    # PostgreSQL: how long a statement waits for a lock another transaction holds before the
    # call is answered SERVICE_UNAVAILABLE (0: as long as it takes).
    database_lock_timeout: float = Field(default=10.0, ge=0)
    # The store's shortcuts past SQLAlchemy and aiosqlite (``kernel.store.shortcuts``); off:
    # every statement through the ORM session on stock aiosqlite (slower, same results).
    database_shortcuts: bool = True

    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""
    # Host headers the MCP endpoint accepts besides the bound host (for proxies).
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    # Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed: addresses or
    # networks, comma-separated ("*": any peer). Empty: none, so per-address limits count the
    # connecting peer itself.
    forwarded_allow_ips: str = ""
    # Every request body (REST, MCP, dashboard forms) is refused above this size (413), and a
    # JSON body nested deeper than max_json_depth arrays and objects is refused (422) before
    # any parser reads it.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_json_depth: int = Field(default=64, ge=2, le=500)
    # Emails that may sign in to the dashboard's operator pages (a JSON list).
    operator_emails: list[str] = Field(default_factory=list)

    log_level: str = "INFO"
    log_format: str = "auto"  # auto | json | console

    # Secret mixed into API-key and code hashes; set it in production.
    secret_pepper: SecretStr = SecretStr("dev-pepper-change-me")

    # Calls per minute per agent and MCP tool; a tool not listed here or in the gate's
    # defaults (search-specialists 100, book-slot 10) gets rate_limit_default.
    rate_limits: dict[str, int] = Field(default_factory=dict)
    rate_limit_default: int = 60
    # Whether a read-only tool call's transaction (its charge, usage row and rate count) waits
    # for PostgreSQL to flush it to disk before the call answers. Off: a crash of the database
    # server may lose the last fraction of a second of them, as SQLite's WAL mode may lose
    # any transaction; bookings, holds, deposits and every other write always wait.
    durable_read_charges: bool = False
    register_per_ip_per_hour: int = 20
    # verify-email and resend-verification; dashboard sign-in codes asked for, and tried
    email_checks_per_ip_per_hour: int = 60
    resend_per_hour: int = 3  # per email, registered or not
    # Tries of a mailed code (verify-email, dashboard sign-in) per email an hour, whether the
    # email is registered or not; each code also locks after 5 wrong tries.
    code_tries_per_email_per_hour: int = 20
    # iCal feeds: fetches an hour per feed (calendar clients poll every few minutes at most),
    # and lookups of tokens that open no feed per client address; 0 turns a limit off.
    calendar_feed_per_hour: int = 60
    calendar_misses_per_ip_per_hour: int = 60
    # OAuth dynamic client registrations (POST /register) an hour per client address.
    oauth_register_per_ip_per_hour: int = 20
    # OAuth clients named by the URL of their metadata document: http on 127.0.0.1 or
    # localhost is fetched only when this is true (development and tests only).
    oauth_client_documents_allow_loopback: bool = False

    smtp_url: str | None = None
    mail_from: str = "Agent Server <no-reply@agent-server.local>"

    evm_rpc_url: str | None = None
    btc_rpc_url: str | None = None
    wallet_xpub_eth: str | None = None
    wallet_xpub_btc: str | None = None
    btc_network: str = "regtest"
    confirmations: int = 3
    activation_usd_micros: int = 20_000_000

    price_list: Path | None = None
    api_key: SecretStr | None = None

    start_watchers: bool = True
    start_worker: bool = True
    # Whether ``serve`` also runs the withdrawal sender (``agent-server send-withdrawals``),
    # the only code that reads the hot wallet's key (``AGENT_SERVER_SENDER_*``).
    send_withdrawals: bool = False
    # Webhooks (agent_server.events): callback URLs on private, loopback or link-local
    # addresses are refused unless this is true (development and tests only).
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 3
    webhook_backoff_seconds: float = 30.0  # before the second attempt; doubles, with jitter
    # A wallet going below this (USD micro-dollars) after a charge emits balance.low.
    balance_low_usd_micros: int = 1_000_000
    demo_specialists: int = 1000

    # Withdrawals and payouts: a new destination address is confirmed by a code mailed to the
    # owner (valid withdrawal_code_ttl) and used only withdrawal_cooling_off after that; an
    # amount worth more than withdrawal_approval_usd_micros waits for an operator. Network
    # fees come from the nodes, or these fallbacks. Every payout_interval seconds (0: never)
    # a payout is requested for each payable balance worth payout_minimum_usd_micros or more
    # to the owner's confirmed address for that currency.
    withdrawal_code_ttl: timedelta = timedelta(minutes=30)
    withdrawal_cooling_off: timedelta = timedelta(hours=24)
    withdrawal_approval_usd_micros: int = Field(default=1_000_000_000, ge=0)
    fallback_gas_price_gwei: int = Field(default=20, ge=1)
    fallback_btc_fee_rate: int = Field(default=10, ge=1)
    payout_interval: float = Field(default=0.0, ge=0)
    payout_minimum_usd_micros: int = Field(default=50_000_000, ge=0)

    # The booking clock (agent_server.services.clock), run by ``worker`` and by ``serve`` when
    # start_worker is on: every clock_interval seconds (0: not at all) it expires pending
    # bookings not answered within booking_pending_ttl (and always at their start), completes
    # accepted ones auto_complete_after their end, releases the escrow of completed ones whose
    # dispute_window after the end passed without a dispute, and mails specialists their
    # reminder reminder_before the start. Durations: seconds or ISO 8601 (``PT24H``).
    booking_pending_ttl: Duration = timedelta(hours=24)
    auto_complete_after: Duration = timedelta(hours=2)
    dispute_window: Duration = timedelta(hours=72)
    reminder_before: Duration = timedelta(hours=24)
    clock_interval: float = Field(default=30.0, ge=0)


ENV_FILE_VARIABLE = "AGENT_SERVER_ENV_FILE"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once: from the environment, then from the file named
    by ``AGENT_SERVER_ENV_FILE`` (for a process a client starts in another directory), else
    from ``.env`` in the current directory."""
    return Settings(_env_file=os.environ.get(ENV_FILE_VARIABLE) or ".env")

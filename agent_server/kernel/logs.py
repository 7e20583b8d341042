"""Structured logs: JSON lines in production, readable console output in a terminal.

Each request binds ``request_id`` and the W3C ``traceparent`` (accepted from the caller or
generated) with structlog's contextvars, so every line logged while serving it carries them.
Secrets never reach a log line: ``redact`` masks the value under any key that names a secret
(``api_key``, ``authorization``, ``webhook_secret``, ``access_token``, ``secret_pepper``,
``verification_code``...), while ordinary fields that merely contain such a word, such as an
error's ``code`` or a ``key_prefix``, are shown.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any


@contextmanager
def rich_hidden() -> Iterator[None]:
    """Within: ``import rich`` fails unless rich is already loaded (then nothing changes).

    Two libraries load rich, when it is installed, for output this server never makes:
    structlog.dev for rich tracebacks (``configure_logging`` uses plain ones), and the MCP
    SDK's ``MCPServer`` for a ``logging.basicConfig`` handler that a configured root logger
    ignores. Built with rich hidden, a serving process holds neither rich nor attrs nor
    pygments: 3.7 MiB less resident. Whoever imports rich later (typer's help) gets it.
    """
    hide = "rich" not in sys.modules
    if hide:
        sys.modules["rich"] = None  # type: ignore[assignment]  # import rich: ImportError
    try:
        yield
    finally:
        if hide:
            del sys.modules["rich"]


with rich_hidden():
    import structlog

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

# A key names a secret when, lower-cased with "-" read as "_", it is one of these words or ends
# in "_" and one of them: ``webhook_secret``, ``access_token``, ``secret_pepper``, ``x_api_key``.
# Substrings do not count: ``code`` (an error code), ``key_prefix`` and ``claim_token_id`` show.
_MASKED_WORDS = (
    r"api_?key|authorization|cookie|password|passwd|passphrase|secret|token|pepper"
    r"|private_key|mnemonic|seed_phrase"
)
# The one-time codes mailed for sign-up and dashboard sign-in, under any name they could be
# logged by; a bare ``code`` is an error code (``tool.call code=RATE_LIMITED``).
_MASKED_CODES = r"(?:verification|verify|email|signin|sign_in|login|one_time|otp)_code|otp"
_MASKED_KEYS = re.compile(rf"^(?:\w*_)?(?:{_MASKED_WORDS})$|^(?:{_MASKED_CODES})$")


def is_secret_key(key: str) -> bool:
    """Whether a log field of this name holds a secret and must be masked."""
    return bool(_MASKED_KEYS.match(key.lower().replace("-", "_")))


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask the values of fields whose key names a secret (see ``is_secret_key``)."""
    for key in list(event):
        if key != "event" and is_secret_key(key):
            event[key] = "***"
    return event


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # Resolved at each use: whoever replaced sys.stderr (a test runner, a daemon) gets the lines.
    return structlog.PrintLogger(file=sys.stderr)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stdlib handler writing to whatever ``sys.stderr`` is at the time of the write."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str = "INFO", fmt: str = "auto", *, for_good: bool = False) -> None:
    """Set up structlog and route the standard library's logging through it.

    ``for_good``: this configuration lasts as long as the process (a server), so each logger
    is bound once, on first use, instead of on every call; a process that configures logging
    again (the tests) must leave it off, or loggers already used would keep the old setup.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        # Plain tracebacks: rich ones print local variables, which can hold secrets.
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=for_good,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # SQL parameters and rows carry emails, key hashes and outbox mail: never log them.
    for chatty in ("sqlalchemy", "aiosqlite"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # Lines that say nothing: Alembic's plugin set-up on every start, and the SDK's
    # "Terminating session: None" after every stateless MCP request.
    for quiet in ("alembic.runtime.plugins", "mcp.server.streamable_http"):
        logging.getLogger(quiet).setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)


def parse_or_make_traceparent(header: str | None) -> str:
    """The caller's valid W3C traceparent, or a new one with a fresh trace id."""
    if header:
        m = _TRACEPARENT.match(header.strip().lower())
        if m and m.group(1) != "0" * 32 and m.group(2) != "0" * 16:
            return header.strip().lower()
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def bind_request(request_id: str, traceparent: str) -> None:
    """Bind the request's ids to every log line until ``clear_request``."""
    structlog.contextvars.bind_contextvars(request_id=request_id, traceparent=traceparent)


def clear_request() -> None:
    structlog.contextvars.clear_contextvars()

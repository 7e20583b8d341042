"""Structured logs: JSON lines in production, readable console output in a terminal.

Each request binds ``request_id`` and the W3C ``traceparent`` (accepted from the caller or
generated) with structlog's contextvars, so every line logged while serving it carries them.
Secrets never reach a log line: ``redact`` masks any value under a secret-looking key.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(api_?key|authorization|code|secret|token|password|pepper)", re.I)
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask values whose key looks like a secret."""
    for key in list(event):
        if key != "event" and _SECRET_KEYS.search(key):
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


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Set up structlog and route the standard library's logging through it."""
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
        cache_logger_on_first_use=False,
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

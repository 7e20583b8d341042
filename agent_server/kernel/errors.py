"""The errors callers see, one class per SPEC error code.

Every expected failure in the product is one of these; transports turn them into the same
body, ``{"error": {"code", "status", "message", "details"}}``, with the HTTP status (REST) or
``isError: true`` (MCP). Anything else is a bug, logged and answered as a generic error.

    AgentServerError
    ├── Unauthorized            UNAUTHORIZED          401
    ├── InsufficientFunds       INSUFFICIENT_FUNDS    402
    ├── SpendingCapReached      SPENDING_CAP          402
    ├── EmailNotVerified        EMAIL_NOT_VERIFIED    403
    ├── AccountInactive         ACCOUNT_INACTIVE      403
    ├── Forbidden               FORBIDDEN             403
    ├── NotFound                NOT_FOUND             404
    ├── BookingConflict         BOOKING_CONFLICT      409
    ├── IdempotencyMismatch     IDEMPOTENCY_MISMATCH  409
    ├── ValidationFailed        VALIDATION_ERROR      422
    │   └── BodyTooLarge        VALIDATION_ERROR      413
    ├── RateLimited             RATE_LIMITED          429
    ├── ServiceUnavailable      SERVICE_UNAVAILABLE   503  (not a SPEC code: retry later)
    └── InternalError           INTERNAL_ERROR        500  (not a SPEC code: a bug, logged)

``ALL_ERRORS`` and ``ERROR_CODES`` hold SPEC's codes only; the last two say nothing about the
call itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

# An error body stays small whatever the input: at most this many ``details.fields`` entries
# (then one saying how many more), and no echoed name or message longer than MAX_ECHO_CHARS.
MAX_FIELD_ENTRIES = 20
MAX_ECHO_CHARS = 200
MAX_MESSAGE_CHARS = 1000


def clipped(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text``, cut to ``limit`` characters (marked with "...") when longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_names(names: Sequence[str]) -> str:
    """Field names for a message: the first MAX_FIELD_ENTRIES, then how many more."""
    shown = ", ".join(clipped(n) for n in names[:MAX_FIELD_ENTRIES])
    more = len(names) - MAX_FIELD_ENTRIES
    return f"{shown} and {more} more" if more > 0 else shown


def bounded_fields(fields: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """At most MAX_FIELD_ENTRIES entries with clipped texts, then one entry counting the rest."""
    kept = [{k: clipped(str(v)) for k, v in f.items()} for f in fields[:MAX_FIELD_ENTRIES]]
    more = len(fields) - MAX_FIELD_ENTRIES
    if more > 0:
        kept.append(
            {
                "field": "...",
                "message": f"{more} more fields are invalid; fix the ones listed and send again "
                "to see the rest",
            }
        )
    return kept


class AgentServerError(Exception):
    """Base of every error a caller may receive.

    A subclass names its code and HTTP status in its class line,
    ``class NotFound(AgentServerError, code="NOT_FOUND", status=404)``; one that leaves either
    out keeps its parent's."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500

    def __init_subclass__(
        cls, *, code: str | None = None, status: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if status is not None:
            cls.status = status

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_body(self) -> dict[str, Any]:
        """The wire body shared by REST and MCP."""
        return {
            "error": {
                "code": self.code,
                "status": self.status,
                "message": self.message,
                "details": self.details,
            }
        }


class Unauthorized(AgentServerError, code="UNAUTHORIZED", status=401):
    """The API key is missing or unknown."""


class InsufficientFunds(AgentServerError, code="INSUFFICIENT_FUNDS", status=402):
    """The wallet balance is below the price of the call."""


class SpendingCapReached(AgentServerError, code="SPENDING_CAP", status=402):
    """The owner's daily or monthly spending cap would be passed."""


class EmailNotVerified(AgentServerError, code="EMAIL_NOT_VERIFIED", status=403):
    """The agent has not verified its email yet."""


class AccountInactive(AgentServerError, code="ACCOUNT_INACTIVE", status=403):
    """The agent is pending its first deposit, suspended or banned."""


class Forbidden(AgentServerError, code="FORBIDDEN", status=403):
    """The resource belongs to someone else."""


class NotFound(AgentServerError, code="NOT_FOUND", status=404):
    """No resource has that id."""


class BookingConflict(AgentServerError, code="BOOKING_CONFLICT", status=409):
    """The slot is taken or outside the schedule's availability."""


class IdempotencyMismatch(AgentServerError, code="IDEMPOTENCY_MISMATCH", status=409):
    """The idempotency key was used with other arguments, or its first call is in flight."""


class ValidationFailed(AgentServerError, code="VALIDATION_ERROR", status=422):
    """The input is malformed; ``details.fields`` has one entry per bad field."""

    def __init__(
        self,
        message: str,
        fields: list[dict[str, str]] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        merged = dict(details or {})
        merged["fields"] = bounded_fields(fields or [])
        super().__init__(clipped(message, MAX_MESSAGE_CHARS), merged)

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        """One bad field, with a message that says how to fix it."""
        return cls(f"{field}: {message}", [{"field": field, "message": message}])


class BodyTooLarge(ValidationFailed, status=413):
    """The request body is larger than the server accepts: VALIDATION_ERROR with HTTP 413."""

    def __init__(self, limit: int) -> None:
        message = f"the request body is larger than {limit:,} bytes; send a smaller one"
        super().__init__(f"body: {message}", [{"field": "body", "message": message}])


class RateLimited(AgentServerError, code="RATE_LIMITED", status=429):
    """Too many calls; retry after ``details.retry_after`` seconds."""


class ServiceUnavailable(AgentServerError, code="SERVICE_UNAVAILABLE", status=503):
    """The server cannot serve the call right now (its database is unreachable, overloaded or
    chose this transaction as a deadlock's victim); retry after ``details.retry_after``
    seconds. Not one of SPEC's codes: it says nothing about the call itself."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"The server's database cannot serve this right now; try again in {retry_after} "
            "seconds.",
            {"retry_after": retry_after},
        )


class InternalError(AgentServerError, code="INTERNAL_ERROR", status=500):
    """An unexpected failure; the details stay in the server log."""


ALL_ERRORS: tuple[type[AgentServerError], ...] = (
    Unauthorized,
    InsufficientFunds,
    SpendingCapReached,
    EmailNotVerified,
    AccountInactive,
    Forbidden,
    NotFound,
    BookingConflict,
    IdempotencyMismatch,
    ValidationFailed,
    RateLimited,
)
ERROR_CODES: frozenset[str] = frozenset(e.code for e in ALL_ERRORS)

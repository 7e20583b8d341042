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
    """Base of every error a caller may receive."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500

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


class Unauthorized(AgentServerError):
    """The API key is missing or unknown."""

    code = "UNAUTHORIZED"
    status = 401


class InsufficientFunds(AgentServerError):
    """The wallet balance is below the price of the call."""

    code = "INSUFFICIENT_FUNDS"
    status = 402


class SpendingCapReached(AgentServerError):
    """The owner's daily or monthly spending cap would be passed."""

    code = "SPENDING_CAP"
    status = 402


class EmailNotVerified(AgentServerError):
    """The agent has not verified its email yet."""

    code = "EMAIL_NOT_VERIFIED"
    status = 403


class AccountInactive(AgentServerError):
    """The agent is pending its first deposit, suspended or banned."""

    code = "ACCOUNT_INACTIVE"
    status = 403


class Forbidden(AgentServerError):
    """The resource belongs to someone else."""

    code = "FORBIDDEN"
    status = 403


class NotFound(AgentServerError):
    """No resource has that id."""

    code = "NOT_FOUND"
    status = 404


class BookingConflict(AgentServerError):
    """The slot is taken or outside the schedule's availability."""

    code = "BOOKING_CONFLICT"
    status = 409


class IdempotencyMismatch(AgentServerError):
    """The idempotency key was used with other arguments, or its first call is in flight."""

    code = "IDEMPOTENCY_MISMATCH"
    status = 409


class ValidationFailed(AgentServerError):
    """The input is malformed; ``details.fields`` has one entry per bad field."""

    code = "VALIDATION_ERROR"
    status = 422

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


class BodyTooLarge(ValidationFailed):
    """The request body is larger than the server accepts: VALIDATION_ERROR with HTTP 413."""

    status = 413

    def __init__(self, limit: int) -> None:
        message = f"the request body is larger than {limit:,} bytes; send a smaller one"
        super().__init__(f"body: {message}", [{"field": "body", "message": message}])


class RateLimited(AgentServerError):
    """Too many calls; retry after ``details.retry_after`` seconds."""

    code = "RATE_LIMITED"
    status = 429


class ServiceUnavailable(AgentServerError):
    """The server cannot serve the call right now (its database is unreachable, overloaded or
    chose this transaction as a deadlock's victim); retry after ``details.retry_after``
    seconds. Not one of SPEC's codes: it says nothing about the call itself."""

    code = "SERVICE_UNAVAILABLE"
    status = 503

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"The server's database cannot serve this right now; try again in {retry_after} "
            "seconds.",
            {"retry_after": retry_after},
        )


class InternalError(AgentServerError):
    """An unexpected failure; the details stay in the server log."""

    code = "INTERNAL_ERROR"
    status = 500


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

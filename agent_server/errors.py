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
    └── RateLimited             RATE_LIMITED          429
"""

from __future__ import annotations

from typing import Any, ClassVar


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
        merged["fields"] = fields or []
        super().__init__(message, merged)

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        """One bad field, with a message that says how to fix it."""
        return cls(f"{field}: {message}", [{"field": field, "message": message}])


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

"""Each error's code and HTTP status, and the body callers receive, as SPEC's table says."""

from __future__ import annotations

import pytest

from agent_server.kernel import errors as e

TABLE = [
    (e.Unauthorized, "UNAUTHORIZED", 401),
    (e.InsufficientFunds, "INSUFFICIENT_FUNDS", 402),
    (e.SpendingCapReached, "SPENDING_CAP", 402),
    (e.EmailNotVerified, "EMAIL_NOT_VERIFIED", 403),
    (e.AccountInactive, "ACCOUNT_INACTIVE", 403),
    (e.Forbidden, "FORBIDDEN", 403),
    (e.NotFound, "NOT_FOUND", 404),
    (e.BookingConflict, "BOOKING_CONFLICT", 409),
    (e.IdempotencyMismatch, "IDEMPOTENCY_MISMATCH", 409),
    (e.ValidationFailed, "VALIDATION_ERROR", 422),
    (e.RateLimited, "RATE_LIMITED", 429),
    (e.InternalError, "INTERNAL_ERROR", 500),
]


@pytest.mark.parametrize(("kind", "code", "status"), TABLE)
def test_each_error_answers_its_code_and_status(
    kind: type[e.AgentServerError], code: str, status: int
) -> None:
    error = kind("what went wrong; what to do next", details={"id": 7})
    details = {"id": 7, "fields": []} if kind is e.ValidationFailed else {"id": 7}
    assert error.to_body() == {
        "error": {
            "code": code,
            "status": status,
            "message": "what went wrong; what to do next",
            "details": details,
        }
    }


def test_spec_codes_are_the_callers_codes_only() -> None:
    assert e.ERROR_CODES == {code for _, code, _ in TABLE} - {"INTERNAL_ERROR"}


def test_a_body_too_large_is_a_validation_error_with_413() -> None:
    body = e.BodyTooLarge(65536).to_body()["error"]
    message = "the request body is larger than 65,536 bytes; send a smaller one"
    assert body == {
        "code": "VALIDATION_ERROR",
        "status": 413,
        "message": f"body: {message}",
        "details": {"fields": [{"field": "body", "message": message}]},
    }
    assert isinstance(e.BodyTooLarge(1), e.ValidationFailed)


def test_service_unavailable_says_when_to_retry() -> None:
    assert e.ServiceUnavailable(3).to_body() == {
        "error": {
            "code": "SERVICE_UNAVAILABLE",
            "status": 503,
            "message": "The server's database cannot serve this right now; try again in 3 seconds.",
            "details": {"retry_after": 3},
        }
    }


def test_one_bad_field_names_it_in_the_message_and_the_details() -> None:
    body = e.ValidationFailed.field("currency", "one of BTC, ETH, USDT, USDC").to_body()
    assert body["error"]["message"] == "currency: one of BTC, ETH, USDT, USDC"
    assert body["error"]["details"] == {
        "fields": [{"field": "currency", "message": "one of BTC, ETH, USDT, USDC"}]
    }

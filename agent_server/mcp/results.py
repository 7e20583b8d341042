"""Tool results on the wire: structured content for successes, SPEC error bodies for failures.

A success carries its output model's JSON as structured content and a readable rendering of
it as text (``agent_server.mcp.text``). A failure is a result with ``isError: true``, the
``{"error": {code, status, message, details, next_step}}`` body as structured content (the
tool's output schema admits it, see ``agent_server.mcp.schemas``) and the same as text: the
code, the message, each invalid field and why, and the next step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from agent_server.kernel.errors import AgentServerError
from agent_server.mcp.text import error_text, receipt_text, render


@dataclass(frozen=True)
class JsonOutput:
    """A tool's output already in its JSON form (its output model's ``model_dump(mode="json")``,
    without a receipt) and its text (``text.render``): what a handler returns for an answer it
    serves many times, so that it is not serialised or rendered again on every call. Both are
    shared: never changed."""

    body: dict[str, Any]
    text: str


def success(tool: str, output: BaseModel | dict[str, Any]) -> CallToolResult:
    """A successful result of ``tool``: the output as structured content, rendered as text.

    A dict must already be the JSON form of the tool's output model: clients validate the
    structured content against the tool's output schema.
    """
    body = output.model_dump(mode="json") if isinstance(output, BaseModel) else output
    return CallToolResult(
        content=[TextContent(type="text", text=render(tool, body))], structured_content=body
    )


def prepared(
    output: JsonOutput, receipt: dict[str, Any] | None, *, has_receipt: bool
) -> CallToolResult:
    """A successful result from an output serialised and rendered before; a tool that
    ``has_receipt`` puts the call's receipt first in the body and in the text."""
    if not has_receipt:
        return CallToolResult(
            content=[TextContent(type="text", text=output.text)], structured_content=output.body
        )
    text = output.text if receipt is None else receipt_text(receipt) + "\n" + output.text
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"receipt": receipt, **output.body},
    )


class _Blank(dict[str, Any]):
    """Details for a next-step line; a missing one reads as a blank."""

    def __missing__(self, key: str) -> str:
        return "?"


# A BOOKING_CONFLICT about the booking itself, not its slot: searching again would not help.
_BOOKING_STATE_STEPS = {
    "invalid_status": "The booking is {status} now; get-booking shows what it allows.",
    "not_ended": "Call again after the session ends at {ends_at}.",
    "dispute_window_closed": (
        "The dispute window has closed and the escrow went to the provider; "
        "contact the operator if something is still wrong."
    ),
    "already_reviewed": "Nothing to do: a booking is reviewed once.",
    "changed_meanwhile": "Read the booking again (get-booking); retry if the change still applies.",
}


def next_step(error: AgentServerError) -> str:
    """One line that says what the agent should do about ``error``."""
    d = error.details
    match error.code:
        case "UNAUTHORIZED":
            return (
                "Send a valid API key as 'Authorization: Bearer <key>' "
                "(register at POST /api/agent/register)."
            )
        case "EMAIL_NOT_VERIFIED":
            return str(
                d.get("how_to_verify")
                or "Verify your email: POST /api/agent/verify-email with {email, code}."
            )
        case "ACCOUNT_INACTIVE":
            return str(d.get("unlock") or "Your account is not active; contact the operator.")
        case "INSUFFICIENT_FUNDS":
            address = d.get("deposit_address")
            where = f" to {address}" if address else ""
            return f"Top up your wallet{where}, then retry with the same idempotency key."
        case "SPENDING_CAP":
            resets = d.get("resets_at", "the next period")
            return f"Your owner's spending cap is reached; it resets at {resets}."
        case "RATE_LIMITED":
            wait = f"retry after {d.get('retry_after', 'a few')} seconds"
            # Without a limit, the server itself was too busy to finish the call.
            return f"Too many calls; {wait}." if "limit" in d else f"The server is busy; {wait}."
        case "BOOKING_CONFLICT":
            nxt = d.get("next_available_slot")
            if isinstance(nxt, dict) and nxt.get("slot_id"):
                return f"That slot cannot be booked; the next free one is slot_id {nxt['slot_id']}."
            reason = d.get("reason")
            if reason in _BOOKING_STATE_STEPS:
                return _BOOKING_STATE_STEPS[str(reason)].format_map(_Blank(d))
            return "That slot cannot be booked; search again for free slots."
        case "IDEMPOTENCY_MISMATCH":
            if d.get("retryable"):
                return "The first call with this idempotency key is still running; retry shortly."
            return "Use a new idempotency key for different arguments."
        case "VALIDATION_ERROR":
            fields = d.get("fields") or []
            names = ", ".join(str(f.get("field")) for f in fields if isinstance(f, dict))
            return f"Fix the arguments ({names}) and call again." if names else "Fix the arguments."
        case "NOT_FOUND":
            return "Check the id; list or search first to get a valid one."
        case "FORBIDDEN":
            return str(
                d.get("next_step") or "That resource belongs to someone else; use your own ids."
            )
        case "SERVICE_UNAVAILABLE":
            return (
                f"Retry in {d.get('retry_after', 'a few')} seconds, with the same "
                "idempotency_key if the call takes one, so that it cannot happen twice."
            )
        case _:
            return "Retry later; if it persists, contact the operator."


def failure(error: AgentServerError) -> CallToolResult:
    """An error result carrying SPEC's body and its next step, in structure and in text."""
    step = next_step(error)
    body: dict[str, Any] = error.to_body()
    body["error"]["next_step"] = step
    text = error_text(error.code, error.status, error.message, error.details, step)
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=body, is_error=True
    )

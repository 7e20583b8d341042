"""``tools/list`` over HTTP answered from the bytes the SDK wrote the first time.

The tool set is fixed when the server is built, yet the SDK builds, validates, dumps and
JSON-encodes the listing (about 23 KB) on every request. ``ListingReplay`` wraps the MCP
endpoint inside its bearer check (only authenticated requests reach it) and keeps, for each
distinct ``tools/list`` request (every header but the key, the length and the request's and
trace's ids, and the body without its id), the answer the SDK gave it; the same request again
gets the same bytes with its own id.

Only a successful JSON answer is kept, so whatever the SDK refuses (a bad header, a bad
cursor, a protocol version it does not speak) it refuses every time. At most ``KEPT`` requests
are remembered, the least recently used forgotten first.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHOD = b'"tools/list"'
SKIPPED_HEADERS = frozenset(
    {b"authorization", b"content-length", b"x-request-id", b"traceparent", b"tracestate"}
)
"""Headers that do not choose the answer: who asks (authenticated before this point), the
body's length (the body itself is part of the key) and the ids of the request and its trace,
new on every request (the server's own middleware, outside, answers them)."""

Key = tuple[tuple[tuple[bytes, bytes], ...], str]


class _Answer:
    """A kept answer: its status and headers, and its body around the request's id."""

    __slots__ = ("head", "headers", "result", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], result: bytes) -> None:
        self.status = status
        self.headers = headers
        self.head = b'{"jsonrpc":"2.0","id":'
        self.result = b',"result":' + result + b"}"

    def body(self, request_id: int | str) -> bytes:
        return self.head + json.dumps(request_id).encode() + self.result


class ListingReplay:
    """ASGI middleware answering a repeated ``tools/list`` request as it was answered."""

    KEPT = 64

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._answers: OrderedDict[Key, _Answer] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        first = await receive()
        request = None
        if first["type"] == "http.request" and not first.get("more_body", False):
            request = _listing_request(first.get("body", b""))
        if request is None:
            await self.app(scope, _replaying(first, receive), send)
            return
        request_id, rest = request
        key: Key = (
            tuple((k, v) for k, v in scope["headers"] if k not in SKIPPED_HEADERS),
            rest,
        )
        answer = self._answers.get(key)
        if answer is not None:
            self._answers.move_to_end(key)
            await _send(answer, request_id, send)
            return
        sent: list[Message] = []

        async def keep(message: Message) -> None:
            # As the SDK sent it: middleware further out may change the message it passes on.
            sent.append({**message, "headers": list(message.get("headers", []))})
            await send(message)

        await self.app(scope, _replaying(first, receive), keep)
        answer = _answer(sent, request_id)
        if answer is not None:
            self._answers[key] = answer
            while len(self._answers) > self.KEPT:
                self._answers.popitem(last=False)


def _replaying(first: Message, receive: Receive) -> Receive:
    """``receive`` giving back the message already read first."""
    kept: list[Message] = [first]

    async def again() -> Message:
        return kept.pop() if kept else await receive()

    return again


def _listing_request(body: bytes) -> tuple[int | str, str] | None:
    """For a ``tools/list`` request, its id and the rest of its body as canonical JSON."""
    if METHOD not in body:
        return None
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("method") != "tools/list":
        return None
    request_id = message.pop("id", None)
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None
    try:
        return request_id, json.dumps(message, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


def _answer(sent: list[Message], request_id: int | str) -> _Answer | None:
    """What the SDK sent, kept if it was one successful JSON answer to ``request_id``."""
    if len(sent) != 2 or sent[0]["type"] != "http.response.start":
        return None
    start, body = sent
    if start["status"] != 200 or body.get("more_body", False):
        return None
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    if dict(headers).get(b"content-type", b"").split(b";")[0].strip() != b"application/json":
        return None
    try:
        reply: Any = json.loads(body.get("body", b""))
    except (ValueError, RecursionError):
        return None
    if (
        not isinstance(reply, dict)
        or set(reply) != {"jsonrpc", "id", "result"}
        or reply["id"] != request_id
    ):
        return None
    result = json.dumps(reply["result"], separators=(",", ":")).encode()
    return _Answer(int(start["status"]), headers, result)


async def _send(answer: _Answer, request_id: int | str, send: Send) -> None:
    body = answer.body(request_id)
    headers = [*answer.headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""Request bodies bounded before any parser reads them.

``BodyLimits`` wraps the whole HTTP app (REST, dashboard forms, MCP, iCal) and reads each
request's body as it arrives:

- a ``Content-Length`` above ``max_bytes`` is refused at once, before any of the body is read;
  a body that grows past the limit while arriving (chunked, or longer than announced) is
  refused as soon as it does, so no body is ever held beyond the limit;
- a body nesting arrays and objects deeper than ``max_json_depth`` is refused: the JSON
  parsers recurse once per level, and a deep enough document exhausts the stack. Every body
  but ``multipart/form-data`` (whose parts may be files of any text) is checked: FastAPI reads
  a body without a content type as JSON, and a browser's url-encoded form escapes brackets;
- any other body is handed to the app in one message, as if it had just arrived.

A refusal is a ``ValidationFailed`` (``BodyTooLarge`` for the size) which ``refuse`` turns into
the answer the request's surface speaks: SPEC's error body, a JSON-RPC error or an HTML page.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_server.kernel.errors import BodyTooLarge, ValidationFailed

Refuse = Callable[[Scope, ValidationFailed], ASGIApp]

UNCHECKED_TYPE = "multipart/form-data"
# A backslash and the character it escapes, a quote, or a bracket: in valid JSON, the only
# bytes that change the nesting depth or whether a bracket is inside a string.
_JSON_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


def nesting_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text ``body`` nests arrays and objects deeper than ``limit`` levels
    (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    in_string = False
    for match in _JSON_TOKENS.finditer(body):
        token = match[0]
        if token == b'"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif depth:
            depth -= 1
    return False


def too_deep(limit: int) -> ValidationFailed:
    return ValidationFailed.field(
        "body", f"nests arrays and objects deeper than {limit} levels; send a flatter document"
    )


class _Replay:
    """A ``receive`` that hands the app the body read ahead, then the client's own events."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self.body: bytes | None = body
        self.receive = receive

    async def __call__(self) -> Message:
        if self.body is None:
            return await self.receive()
        body, self.body = self.body, None
        return {"type": "http.request", "body": body, "more_body": False}


class BodyLimits:
    """ASGI middleware refusing request bodies that are too large or nested too deep."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_json_depth: int, refuse: Refuse):
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_depth = max_json_depth
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self._announced_too_large(headers.get("content-length")):
            await self.refuse(scope, BodyTooLarge(self.max_bytes))(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client left before sending its whole body: no one to answer, and
                # ``RequestContext`` notes it as a disconnect, not as a failed request.
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.refuse(scope, BodyTooLarge(self.max_bytes))(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        content_type = headers.get("content-type", "").lower()
        if not content_type.startswith(UNCHECKED_TYPE) and nesting_exceeds(
            body, self.max_json_depth
        ):
            await self.refuse(scope, too_deep(self.max_json_depth))(scope, receive, send)
            return
        await self.app(scope, _Replay(body, receive), send)

    def _announced_too_large(self, length: str | None) -> bool:
        if length is None or not (length.isascii() and length.isdigit()):
            return False  # no length, or a malformed one the server itself refuses
        return len(length) > 18 or int(length) > self.max_bytes

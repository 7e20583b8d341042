"""Plumbing shared by the soak, the fuzzing and the security tests.

``Connection``: one MCP SDK client kept open between calls in a task of its own. The
client's anyio task group must be entered and left by one task, and a server dying under it
must not cancel the caller's task; so calls are handed to that task through a queue.

``LoopThread``: an event loop running in a thread, so synchronous code (hypothesis's
``@given``) can drive async clients and databases that live in that loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any, TypeVar

from mcp import Client
from mcp.types import CallToolResult

T = TypeVar("T")
Request = tuple[str, dict[str, Any], "asyncio.Future[CallToolResult]"]


class Connection:
    """An open client; ``broken`` after any failure (open a new one then)."""

    def __init__(self, make_client: Callable[[], Client]) -> None:
        self.broken = False
        self._requests: asyncio.Queue[Request | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._serve(make_client))

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        if self.broken:
            raise ConnectionError("the client is closed")
        done: asyncio.Future[CallToolResult] = asyncio.get_running_loop().create_future()
        self._requests.put_nowait((tool, arguments, done))
        return await done

    async def close(self) -> None:
        self._requests.put_nowait(None)
        with suppress(BaseException):
            await asyncio.wait_for(self._task, 10)

    async def _serve(self, make_client: Callable[[], Client]) -> None:
        current: Request | None = None
        try:
            async with make_client() as client:
                while (current := await self._requests.get()) is not None:
                    tool, arguments, done = current
                    result = await client.call_tool(tool, arguments)
                    if not done.done():
                        done.set_result(result)
        except BaseException as exc:
            self.broken = True
            failure = exc if isinstance(exc, Exception) else ConnectionError("client cancelled")
            waiting = [current] if current is not None else []
            while not self._requests.empty():
                queued = self._requests.get_nowait()
                if queued is not None:
                    waiting.append(queued)
            for request in waiting:
                if not request[2].done():
                    request[2].set_exception(failure)
            if not isinstance(exc, Exception):
                raise
        finally:
            self.broken = True


class LoopThread:
    """An event loop in a daemon thread; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 at a random port, in a
thread, recording every request it is sent and answering with a status of the test's choice.

A request whose body stops short of its Content-Length (the sender was killed while
sending) is no delivery: it is counted in ``cut``, not recorded, and gets no answer.

``hold=True`` keeps each request waiting (the sender sees no answer) until ``release()``;
tests use it to stop or kill a worker while its delivery is in flight.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, status: int = 200, *, hold: bool = False, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.requests: list[Received] = []
        self.cut = 0
        self._hold = hold
        self._released = threading.Event()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    with receiver._changed:
                        receiver.cut += 1
                    self.close_connection = True
                    return
                with receiver._changed:
                    receiver.requests.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    receiver._changed.notify_all()
                if receiver._hold:
                    receiver._released.wait(60)
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(receiver.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender went away

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/agent"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        self._hold = False
        self._released.set()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Block until ``count`` requests have arrived (raises on timeout)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"got {len(self.requests)} requests, expected {count}")

    def event_ids(self) -> Counter[str]:
        return Counter(r.json()["id"] for r in self.requests)

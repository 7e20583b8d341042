"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 at a free port, keeping what it gets."""

from __future__ import annotations

import email
import logging
import re
import socket
import threading
import time
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content)
        with self.sink.lock:
            self.sink.messages.append(message)
        return "250 Message accepted for delivery"


class SmtpSink:
    """Start with ``start()``; ``url`` is the ``smtp://`` URL to configure."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        # aiosmtpd tells of every connection at INFO (a test that sets up logging again
        # resets it); the tests read what was sent, not that.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    def latest_code(self, address: str, timeout: float = 5.0, *, after: int = 0) -> str:
        """The 6-digit code in the newest message to ``address``, once more than ``after``
        messages reached it (a code asked for just now may still be on its way)."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.to(address)
            if len(received) > after:
                body = received[-1].get_payload(decode=True)
                assert isinstance(body, bytes)
                match = re.search(r"\b(\d{6})\b", body.decode())
                assert match, "no 6-digit code in the message"
                return match.group(1)
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail reached {address}")
            time.sleep(0.01)

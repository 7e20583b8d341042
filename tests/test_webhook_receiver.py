"""The test webhook receiver records a delivery only when its whole body arrived: a sender
killed while sending (the soak's SIGKILL) leaves a request cut short, which is no delivery."""

from __future__ import annotations

import socket
import time

import httpx
from webhook_receiver import Receiver


def test_a_request_cut_short_is_counted_as_cut_and_a_whole_one_is_recorded() -> None:
    with Receiver() as receiver:
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as sock:
            sock.sendall(
                b"POST /hooks/agent HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Length: 100\r\n\r\n" + b'{"id": "evt_'
            )
        for _ in range(200):  # the handler thread sees the close within a moment
            if receiver.cut:
                break
            time.sleep(0.01)
        assert receiver.cut == 1
        assert receiver.requests == []

        answer = httpx.post(receiver.url, content=b'{"id": "evt_1"}', timeout=5)
        assert answer.status_code == 200
        assert [r.json() for r in receiver.requests] == [{"id": "evt_1"}]
        assert receiver.cut == 1

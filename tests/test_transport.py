"""gmail's HTTP exchange with the proxy: kept connections and the whole-answer deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from gaemail import transport
from gaemail.errors import TemporaryFailure

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))[15:]
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(10)
        yield sock


def endpoint(sock: socket.socket) -> transport.Endpoint:
    return transport.Endpoint.parse(f"http://127.0.0.1:{sock.getsockname()[1]}/")


def test_a_kept_connection_the_proxy_closed_is_replaced(listener: socket.socket) -> None:
    accepted: list[int] = []

    def serve() -> None:
        # First connection: one answer kept alive, then closed by the proxy.
        for _ in range(2):
            conn, _ = listener.accept()
            accepted.append(1)
            with conn:
                read_request(conn)
                conn.sendall(NO_CONTENT)
                if len(accepted) == 1:
                    time.sleep(0.1)  # the client holds the connection open meanwhile

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    connection = transport.Connection(endpoint(listener), timeout=5)
    try:
        assert connection.post(b"msg=a&signature=b").status == 204
        time.sleep(0.3)  # the proxy has closed the kept connection by now
        assert connection.post(b"msg=a&signature=b").status == 204
    finally:
        connection.close()
    thread.join(10)
    assert accepted == [1, 1]


def test_the_deadline_covers_the_whole_answer(listener: socket.socket) -> None:
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            read_request(conn)
            for byte in NO_CONTENT[:-1]:  # never quite finished, each byte in time
                if stop.wait(0.1):
                    return
                conn.sendall(bytes([byte]))

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    connection = transport.Connection(endpoint(listener), timeout=1)
    started = time.monotonic()
    try:
        with pytest.raises(TemporaryFailure, match="timed out"):
            connection.post(b"msg=a&signature=b")
    finally:
        connection.close()
        stop.set()
        thread.join(10)
    assert time.monotonic() - started < 3

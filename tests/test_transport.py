"""gmail's HTTP exchange with the proxy: kept connections and the whole-answer deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from gaemail import transport
from gaemail.errors import TemporaryFailure
from gaemail.protocol import v1

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"

# A v1 request as the pipeline builds it; the peers here never read it.
FORM = transport.Request(None, {"Content-Type": v1.CONTENT_TYPE}, b"msg=a&signature=b")


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
        assert connection.post(FORM).status == 204
        time.sleep(0.3)  # the proxy has closed the kept connection by now
        assert connection.post(FORM).status == 204
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
            connection.post(FORM)
    finally:
        connection.close()
        stop.set()
        thread.join(10)
    assert time.monotonic() - started < 3


# ---------------------------------------------------------------------------
# Both posters, gmail's http.client one and the Python API's httpx one, meet the
# same misbehaving peer: the same deadline, the same words, the cause kept.
# ---------------------------------------------------------------------------


def _reset(conn: socket.socket) -> None:
    import struct

    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


PEERS = {
    # behaviour -> what the client is told after "cannot reach the proxy at URL: "
    "hang": "timed out",
    "trickle": "timed out",
    "reset": "Connection reset by peer",
    "close": "the connection closed before a whole answer",
}


def misbehave(listener: socket.socket, behaviour: str, stop: threading.Event) -> None:
    conn, _ = listener.accept()
    with conn:
        read_request(conn)
        if behaviour == "hang":
            stop.wait(10)
        elif behaviour == "trickle":  # each byte in time, the whole never
            for byte in NO_CONTENT[:-1]:
                if stop.wait(0.1):
                    return
                conn.sendall(bytes([byte]))
        elif behaviour == "reset":
            _reset(conn)
        # close: end-of-file without an answer


def poster(kind: str, url: str, timeout: float) -> transport.Poster:
    endpoint = transport.Endpoint.parse(url)
    if kind == "http.client":
        return transport.Connection(endpoint, timeout)
    from gaemail.pooled import PooledConnection

    return PooledConnection(endpoint, timeout)


@pytest.mark.parametrize("kind", ["http.client", "httpx"])
@pytest.mark.parametrize("behaviour", sorted(PEERS))
def test_both_posters_fail_alike_within_the_deadline(
    listener: socket.socket, kind: str, behaviour: str
) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=misbehave, args=(listener, behaviour, stop), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    client = poster(kind, url, timeout=1)
    started = time.monotonic()
    try:
        with pytest.raises(TemporaryFailure) as caught:
            transport.send(client, b"To: a@example.com\n\nx\n", b"secret", fix_sender=False)
    finally:
        client.close()  # type: ignore[attr-defined]
        stop.set()
        thread.join(10)
    assert time.monotonic() - started < 3
    assert str(caught.value) == f"cannot reach the proxy at {url}: {PEERS[behaviour]}"
    assert caught.value.__cause__ is not None  # the library's own error, for a traceback
    assert "secret" not in str(caught.value)


def test_the_deadline_holds_through_an_http_proxy_from_the_environment(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "HTTP proxy" is our trickling peer; the proxy URL's host is never looked up.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    stop = threading.Event()
    thread = threading.Thread(target=misbehave, args=(listener, "trickle", stop), daemon=True)
    thread.start()
    client = poster("httpx", "http://gaemail-proxy.invalid/", timeout=1)
    started = time.monotonic()
    try:
        with pytest.raises(TemporaryFailure, match="timed out"):
            client.post(FORM)
    finally:
        client.close()  # type: ignore[attr-defined]
        stop.set()
        thread.join(10)
    assert time.monotonic() - started < 3

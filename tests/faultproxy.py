"""A loopback HTTP proxy that misbehaves on cue, in front of a real `gaemail serve`.

Each request the proxy receives takes the next behaviour from its script (then
the default once the script is used up):

    forward             pass the request on and the answer back
    slow-forward        the same after `delay` seconds
    status NNN          answer NNN itself; the server never sees the request
    hang                read the request, never answer
    reset               read the request, then reset the connection (RST)
    forward-then-hang   the server answers; the client never hears it
    forward-then-reset  the server answers; the client gets a reset instead
    forward-then-close  the server answers; the client gets end-of-file instead
    forward-then-trickle  the server answers; the client gets it a byte every `delay` s

Each exchange is one connection: the proxy asks the server and the client for
`Connection: close`, so a keep-alive client opens a new connection per request
and each request meets its own behaviour.  Everything is bounded: threads are
daemons, sockets time out, hangs end at close(), and close() joins every thread.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gaemail.protocol import v1

BEHAVIOURS = (
    "forward",
    "slow-forward",
    "hang",
    "reset",
    "forward-then-hang",
    "forward-then-reset",
    "forward-then-close",
    "forward-then-trickle",
)
_STATUS = re.compile(r"status (\d{3})$")
_REASONS = {500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Exchange:
    """One connection: what the proxy did and how far it got."""

    behaviour: str
    message_id: str | None = None  # of the message in the request
    upstream_status: int | None = None  # the server's answer, when it was asked
    settled: bool = False  # done with the server: finished, hanging or trickling


class FaultProxy:
    """Listens on 127.0.0.1; `url` is what gmail's GMAIL_PROXY_URL should be."""

    def __init__(
        self,
        target_port: int,
        script: Iterable[str] = (),
        *,
        default: str = "forward",
        delay: float = 0.05,
        timeout: float = 30.0,
    ) -> None:
        self.script = [_checked(b) for b in script]
        self.default = _checked(default)
        self.target_port = target_port
        self.delay = delay
        self.timeout = timeout
        self.exchanges: list[Exchange] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/"
        self._spawn(self._accept_loop)

    # -- what the tests use --------------------------------------------------------

    def wait(self, predicate: Callable[[list[Exchange]], bool], what: str) -> None:
        """Block until `predicate(exchanges)` holds; AssertionError after `timeout`."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.exchanges), self.timeout):
                raise AssertionError(f"fault proxy: timed out waiting for {what}")

    def wait_settled(self) -> None:
        """Until no exchange is still talking to the server or reading a request."""
        self.wait(lambda xs: all(x.settled for x in xs), "every exchange to settle")

    def close(self) -> None:
        self._stop.set()
        self._threads[0].join(self.timeout)  # the accept loop: no thread starts after it
        for thread in self._threads[1:]:
            thread.join(self.timeout)
        self._listener.close()
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"fault proxy threads still running: {alive}"

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the proxy -----------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.name = f"faultproxy-{len(self._threads)}"
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._changed:
                behaviour = self.script.pop(0) if self.script else self.default
                exchange = Exchange(behaviour)
                self.exchanges.append(exchange)
                self._changed.notify_all()
            self._spawn(self._serve, client, exchange)

    def _serve(self, client: socket.socket, exchange: Exchange) -> None:
        client.settimeout(self.timeout)
        try:
            self._exchange(client, exchange)
        except OSError:
            pass  # the client went away (or was killed): nothing more to do
        finally:
            client.close()
            self._update(exchange, settled=True)

    def _exchange(self, client: socket.socket, exchange: Exchange) -> None:
        request = _read_request(client)
        self._update(exchange, message_id=_message_id(request))
        behaviour = exchange.behaviour
        status = _STATUS.match(behaviour)
        if status:
            code = int(status.group(1))
            reason = _REASONS.get(code, "Fault")
            client.sendall(
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(reason) + 1}\r\nConnection: close\r\n\r\n"
                f"{reason}\n".encode()
            )
            return
        if behaviour == "hang":
            self._hang(exchange)
            return
        if behaviour == "reset":
            _reset(client)
            return
        if behaviour == "slow-forward":
            time.sleep(self.delay)
        answer = self._forward(request)
        self._update(exchange, upstream_status=_status_of(answer))
        if behaviour == "forward-then-hang":
            self._hang(exchange)
        elif behaviour == "forward-then-reset":
            _reset(client)
        elif behaviour == "forward-then-trickle":
            self._update(exchange, settled=True)
            for byte in answer:
                if self._stop.wait(self.delay):
                    return
                client.sendall(bytes([byte]))
        elif behaviour in ("forward", "slow-forward"):
            client.sendall(answer)
        # forward-then-close: the finally closes the connection, unanswered

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.target_port), self.timeout) as up:
            up.sendall(request)
            answer = b""
            while chunk := up.recv(65536):
                answer += chunk
        if not answer:
            raise ConnectionAbortedError("the server closed without answering")
        head, _, body = answer.partition(b"\r\n\r\n")
        return _closing(head) + b"\r\n\r\n" + body

    def _hang(self, exchange: Exchange) -> None:
        self._update(exchange, settled=True)
        self._stop.wait(self.timeout)

    def _update(self, exchange: Exchange, **changes: object) -> None:
        with self._changed:
            for name, value in changes.items():
                setattr(exchange, name, value)
            self._changed.notify_all()


def _checked(behaviour: str) -> str:
    if behaviour not in BEHAVIOURS and not _STATUS.match(behaviour):
        raise ValueError(f"unknown fault proxy behaviour {behaviour!r}")
    return behaviour


def _read_request(client: socket.socket) -> bytes:
    """One whole request (head and Content-Length body), asking for Connection: close."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            raise ConnectionAbortedError("the client closed before a whole request")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"^Content-Length:\s*(\d+)", head, re.I | re.M)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            raise ConnectionAbortedError("the client closed before a whole request")
        body += chunk
    return _closing(head) + b"\r\n\r\n" + body


def _closing(head: bytes) -> bytes:
    """An HTTP head with its Connection header replaced by `Connection: close`."""
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"])


def _message_id(request: bytes) -> str | None:
    head, _, body = request.partition(b"\r\n\r\n")
    if head.startswith(b"POST /v2/"):
        msg = body  # protocol v2 carries the message itself
    else:
        try:
            msg = v1.decode_request(body).msg
        except v1.RequestError:
            return None
    head = msg.partition(b"\n\n")[0]
    match = re.search(rb"^Message-ID:\s*(\S+)", head, re.I | re.M)
    return match.group(1).decode("ascii", "replace") if match else None


def _status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER {1, 0}: the peer gets RST, not end-of-file."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

"""A werkzeug server with a bounded pool of threads and a deadline for each request to arrive.

werkzeug's threaded server starts a thread per connection, and a client that
sends its headers or its body a byte at a time keeps its thread for as long as
it likes: sixty such clients pin sixty threads.  Here connections are served by
at most `threads` workers, and a request whose headers and body have not fully
arrived `request_timeout` seconds after it began (for the first request of a
connection: after the connection was accepted) is cut off: a watchdog shuts
the socket down, which ends the worker's blocked read.  Connections beyond the
pool wait in the pool's queue, holding a socket but no thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler

from gaemail.protocol import v2

DEFAULT_THREADS = 16
DEFAULT_REQUEST_TIMEOUT = 30.0
_WATCH_INTERVAL = 0.25  # seconds between the watchdog's looks
_PENDING = "gaemail.pending"  # environ key: the Pending entry of this request


class _Watchdog:
    """Shuts down the sockets of requests that are still arriving past their deadline."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._deadlines: dict[socket.socket, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gaemail-watchdog", daemon=True)
        self._thread.start()

    def arriving(self, sock: socket.socket) -> None:
        """Start the clock for `sock`, unless it runs already (since the connection came)."""
        with self._lock:
            self._deadlines.setdefault(sock, time.monotonic() + self.timeout)

    def arrived(self, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(sock, None)

    def _run(self) -> None:
        while not self._stop.wait(_WATCH_INTERVAL):
            now = time.monotonic()
            with self._lock:
                late = [s for s, deadline in self._deadlines.items() if deadline <= now]
                for sock in late:
                    del self._deadlines[sock]
            for sock in late:
                with contextlib.suppress(OSError):  # already closed by its worker
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(_WATCH_INTERVAL * 8)


class _ArrivalStream:
    """wsgi.input that tells the watchdog once Content-Length bytes have been read."""

    def __init__(self, stream: Any, length: int, done: Any) -> None:
        self._stream = stream
        self._left = length
        self._done = done
        if length <= 0:
            done()

    def _count(self, data: bytes) -> bytes:
        if self._left > 0:
            self._left -= len(data)
            if self._left <= 0 or not data:
                self._done()
        return data

    def read(self, size: int = -1) -> bytes:
        return self._count(self._stream.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._count(self._stream.readline(size))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self._count(line) for line in self._stream.readlines(hint)]

    def __iter__(self) -> Iterable[bytes]:
        return iter(self.readline, b"")


class BoundedRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler under the watchdog, without its access log (the app logs)."""

    server: BoundedWSGIServer

    def setup(self) -> None:
        # A read that waits longer than the deadline ends too (an idle keep-alive).
        self.timeout = self.server.request_timeout  # type: ignore[misc]
        super().setup()

    def handle_one_request(self) -> None:
        watchdog = self.server.watchdog
        watchdog.arriving(self.connection)
        try:
            super().handle_one_request()
        finally:
            watchdog.arrived(self.connection)

    def make_environ(self) -> Any:
        environ = super().make_environ()
        # The headers are in; the body is in once the app has read all of it.
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        sock = self.connection
        done = lambda: self.server.watchdog.arrived(sock)  # noqa: E731
        environ["wsgi.input"] = _ArrivalStream(environ["wsgi.input"], length, done)
        return environ

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, an over-long header) in
        the words of the protocol the path names, as the app answers: never an HTML page."""
        reason = " ".join((message or self.responses.get(code, ("Bad request",))[0]).split())
        path = getattr(self, "path", "") or ""
        if path.startswith("/v2/"):
            problem = v2.ProtocolError(code, "bad_request", reason)
            body, content_type = v2.problem_body(problem, reason), v2.PROBLEM_TYPE
        else:
            body, content_type = (reason + "\n").encode("utf-8", "replace"), "text/plain"
        self.log_error("code %d, message %s", code, message)
        # An unreadable request line leaves http.server at HTTP/0.9, which has no
        # status line: answer as HTTP/1.0, so the client sees the status and the type.
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self.close_connection = True
        self.send_response(code, message)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if getattr(self, "command", "") != "HEAD":
            self.wfile.write(body)


class BoundedWSGIServer(BaseWSGIServer):
    """BaseWSGIServer serving connections on a bounded pool, each request under a deadline."""

    multithread = True
    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        app: Any,
        *,
        fd: int,
        threads: int = DEFAULT_THREADS,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        # Before the base constructor, which calls server_close() on its way.
        self.request_timeout = request_timeout
        self.threads = threads
        self.watchdog = _Watchdog(request_timeout)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gaemail-http")
        self._closing = False
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(host, port, app, BoundedRequestHandler, fd=fd)
        self._closing = True

    def process_request(self, request: Any, client_address: Any) -> None:
        # The clock runs from the accept: time spent waiting for a worker counts, so
        # the slow connections ahead of a good one are cut in time, not in turn.
        self.watchdog.arriving(request)
        with self._open_lock:
            self._open.add(request)
        self._pool.submit(self._serve_connection, request, client_address)

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        if self._closing:  # not the base constructor's call
            self.watchdog.close()
            self._pool.shutdown(wait=False, cancel_futures=True)
            # Unblock the workers still reading, so that the process can exit now.
            with self._open_lock:
                still_open = list(self._open)
            for sock in still_open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

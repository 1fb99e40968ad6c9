"""The Python API's poster: httpx's connection pool, one deadline per exchange.

httpx bounds each connect, read and write by its timeout, not the exchange: a
proxy that trickles its answer a byte at a time keeps a caller waiting for as
long as it likes.  gmail's http.client poster shuts its socket down when the
time is up (gaemail.transport); here every socket operation httpx makes is
given only the time left until the exchange's deadline, and fails once none is
left.  That needs no watchdog thread and covers every step — connect, TLS,
request, status line, headers and body — through a pooled connection or an HTTP
proxy from the environment alike, which a watchdog armed from the response's
socket could not: the socket is known only once the headers are in.
"""

from __future__ import annotations

import contextvars
import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from gaemail import transport

# The monotonic time the exchange under way in this thread must end by.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "gaemail_deadline", default=None
)


def _bounded(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """`timeout`, shortened to what is left of the exchange; raises once nothing is."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired(transport.TIMED_OUT)
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _install_deadlines(client: httpx.Client) -> None:
    """Give every pool of `client` the deadline backend.

    httpx builds one transport for the proxy URL and one per HTTP proxy the
    environment names, and has no public way to choose their network backend;
    this is the one place that reaches inside, and it fails loudly (rather than
    leave an exchange unbounded) should httpx change.
    """
    for mounted in (client._transport, *client._mounts.values()):
        if not isinstance(mounted, httpx.HTTPTransport):
            continue  # a caller's own transport (httpx.MockTransport in tests)
        pool = getattr(mounted, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if not isinstance(backend, httpcore.NetworkBackend):
            raise RuntimeError(
                f"httpx {httpx.__version__} is not supported: gaemail cannot bound its exchanges"
            )
        if not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]


class PooledConnection:
    """Requests to the proxy over httpx's pool of kept connections; thread-safe.

    `timeout` bounds each whole exchange, as for gmail's `transport.Connection`.
    """

    def __init__(
        self,
        endpoint: transport.Endpoint,
        timeout: float,
        http_transport: httpx.BaseTransport | None = None,
        *,
        ca_file: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        verify: bool | ssl.SSLContext = endpoint.scheme == "https"
        if verify and ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            transport=http_transport,
            # Plain http needs no certificates; https verifies with the system's,
            # or with GMAIL_CA_FILE's.  HTTP proxies come from the environment.
            verify=verify,
            headers={"User-Agent": "gaemail"},
        )
        _install_deadlines(self._client)

    def post(self, request: transport.Request) -> transport.Response:
        """POST one request; network failures become TemporaryFailure."""
        url = self.endpoint.url if request.path is None else self.endpoint.origin + request.path
        token = _DEADLINE.set(time.monotonic() + self.timeout)
        try:
            answer = self._client.post(url, content=request.body, headers=request.headers)
        except httpx.HTTPError as exc:
            raise transport.unreachable(self.endpoint, describe(exc)) from exc
        finally:
            _DEADLINE.reset(token)
        return transport.Response.read(
            answer.status_code, answer.reason_phrase, dict(answer.headers), answer.content
        )

    def close(self) -> None:
        self._client.close()


def describe(exc: httpx.HTTPError) -> str:
    """Why an exchange failed, in the words gmail uses (transport.describe)."""
    if isinstance(exc, httpx.TimeoutException):
        return transport.TIMED_OUT
    cause: BaseException | None = exc
    while cause is not None:  # httpx <- httpcore <- the socket's OSError
        if isinstance(cause, OSError):
            return transport.describe(cause)
        cause = cause.__cause__ or cause.__context__
    # httpcore's words for a connection that ended early ("Server disconnected
    # without sending a response", "peer closed connection without sending
    # complete message body"); any other protocol error keeps its own.
    text = str(exc)
    if isinstance(exc, httpx.RemoteProtocolError) and ("disconnected" in text or "closed" in text):
        return transport.CLOSED_EARLY
    return text or type(exc).__name__

"""The send pipeline (encode, post, answer -> exception), and its http.client poster.

`send` is the one pipeline every client goes through: it encodes the request,
hands it to a poster, and turns the answer into the exception `protocol.KINDS`
names.  Posters differ only in how the bytes travel: `Connection` here with the
standard library's http.client, for gmail, which sends one message per process,
where importing httpx and building its client would cost more than the whole send
(see bench/); the Python API's poster uses httpx (gaemail.api).  Both bound the
whole exchange by one deadline and word their failures with `unreachable`.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from urllib.parse import urlsplit

from gaemail import protocol
from gaemail.errors import ConfigurationError, TemporaryFailure
from gaemail.protocol import v1

TYPE_CHECKING = False  # gmail imports this module per message: no typing at run time
if TYPE_CHECKING:
    from typing import Protocol

    class Poster(Protocol):
        """Carries one request body to the proxy and brings its answer back."""

        def post(self, body: bytes) -> Response: ...


class Response:
    __slots__ = ("kind", "reason", "status")

    def __init__(self, status: int, reason: str, kind: str | None) -> None:
        self.status = status
        self.reason = reason  # the body's first line, or the HTTP reason phrase
        self.kind = kind  # X-Gaemail-Error


class Endpoint:
    """A parsed proxy URL, without any user or password it carried."""

    __slots__ = ("host", "path", "port", "scheme")

    def __init__(self, scheme: str, host: str, port: int | None, path: str) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path  # with the query, as requested

    def __repr__(self) -> str:
        return f"Endpoint({self.shown!r})"

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "the proxy URL must look like https://PROJECT.appspot.com/ "
                f"(got scheme {parts.scheme or 'none'!r})"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError("the proxy URL has an invalid port") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port, path)

    @property
    def url(self) -> str:
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        if self.port:
            netloc += f":{self.port}"
        return f"{self.scheme}://{netloc}{self.path}"

    @property
    def shown(self) -> str:
        """The URL as it may appear in messages: no query, which may hold a token."""
        return self.url.partition("?")[0]


class Connection:
    """Requests to the proxy over one connection, kept open between them.

    `timeout` bounds each whole exchange, not only each socket read: a proxy that
    trickles its answer a byte at a time is cut off when the time is up.  One
    Connection serves one thread at a time.
    """

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._http: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> Response:
        """POST a v1 form body; network failures become TemporaryFailure.

        A kept connection the proxy has closed meanwhile fails at once; that
        request is made again on a new one.  Should the proxy have sent the
        message all the same, it knows the retry by its Message-ID.
        """
        if self._http is not None:
            try:
                return self._exchange(body, kept=True)
            except _Stale:
                pass
        return self._exchange(body, kept=False)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _open(self) -> http.client.HTTPConnection:
        endpoint, timeout = self.endpoint, self.timeout
        if endpoint.scheme == "https":
            import ssl

            return http.client.HTTPSConnection(
                endpoint.host, endpoint.port, timeout=timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)

    def _exchange(self, body: bytes, kept: bool) -> Response:
        import threading

        if self._http is None:
            self._http = self._open()
        connection = self._http
        expired = threading.Event()

        def cut_off() -> None:
            """The time is up: end the exchange, so a blocked read returns at once."""
            expired.set()
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        deadline = threading.Timer(self.timeout, cut_off)
        deadline.daemon = True
        deadline.start()
        try:
            connection.request(
                "POST",
                self.endpoint.path,
                body=body,
                headers={"Content-Type": v1.CONTENT_TYPE, "User-Agent": "gaemail"},
            )
            answer = connection.getresponse()
            text = answer.read().decode("utf-8", "replace")  # all of it, to reuse the connection
            if answer.will_close:
                self.close()
            reason = protocol.answer_reason(text, answer.reason)
            return Response(answer.status, reason, answer.getheader(protocol.ERROR_HEADER))
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if kept and not expired.is_set() and isinstance(exc, _CLOSED_BY_PEER):
                raise _Stale from None
            why = TIMED_OUT if expired.is_set() else describe(exc)
            raise unreachable(self.endpoint, why) from exc
        finally:
            deadline.cancel()


class _Stale(Exception):
    """The proxy had closed the kept connection before this request."""


_CLOSED_BY_PEER = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


TIMED_OUT = "timed out"
# The proxy ended the connection before a whole answer: http.client and httpx
# each have their own words for it, and both clients say this instead.
CLOSED_EARLY = "the connection closed before a whole answer"


def unreachable(endpoint: Endpoint, why: str) -> TemporaryFailure:
    """The failure every poster raises when no whole answer came back."""
    return TemporaryFailure(f"cannot reach the proxy at {endpoint.shown}: {why}")


def describe(exc: BaseException) -> str:
    """Why an exchange failed, in the words both clients use."""
    if isinstance(exc, socket.timeout | TimeoutError):
        return TIMED_OUT
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, http.client.RemoteDisconnected | http.client.IncompleteRead):
        return CLOSED_EARLY
    return str(exc) or type(exc).__name__


def send(connection: Poster, msg: bytes, secret: bytes, *, fix_sender: bool) -> None:
    """Sign and send one message; raises the MessageSendingFailure the answer means."""
    response = connection.post(v1.encode_request(msg, secret, fix_sender=fix_sender))
    failure = protocol.failure_for(response.status, response.reason, response.kind)
    if failure is not None:
        raise failure

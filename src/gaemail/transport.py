"""One signed POST to the proxy with the standard library's http.client.

gmail sends one message per process, where importing httpx and building its
client would cost more than the whole send (see bench/); http.client does it with
what the interpreter has already loaded.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from urllib.parse import urlsplit

from gaemail import protocol
from gaemail.errors import ConfigurationError, TemporaryFailure


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


def post(endpoint: Endpoint, body: bytes, timeout: float) -> Response:
    """POST a v1 form body; network failures become TemporaryFailure.

    `timeout` bounds the whole exchange, not only each socket read: a proxy that
    trickles its answer a byte at a time is cut off when the time is up.
    """
    import threading

    connection: http.client.HTTPConnection
    if endpoint.scheme == "https":
        import ssl  # only https pays for it

        connection = http.client.HTTPSConnection(
            endpoint.host, endpoint.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    expired = threading.Event()

    def cut_off() -> None:
        """The time is up: end the exchange, so a blocked read returns at once."""
        expired.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    deadline = threading.Timer(timeout, cut_off)
    deadline.daemon = True
    deadline.start()
    try:
        connection.request(
            "POST",
            endpoint.path,
            body=body,
            headers={"Content-Type": protocol.CONTENT_TYPE, "User-Agent": "gaemail"},
        )
        answer = connection.getresponse()
        text = answer.read(4096).decode("utf-8", "replace")
        reason = protocol.answer_reason(text, answer.reason)
        return Response(answer.status, reason, answer.getheader(protocol.ERROR_HEADER))
    except (OSError, http.client.HTTPException) as exc:
        why = "timed out" if expired.is_set() else _describe(exc)
        raise TemporaryFailure(f"cannot reach the proxy at {endpoint.shown}: {why}") from None
    finally:
        deadline.cancel()
        connection.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def send(
    endpoint: Endpoint, msg: bytes, secret: bytes, *, fix_sender: bool, timeout: float
) -> None:
    """Sign and send one message; raises the MessageSendingFailure the answer means."""
    body = protocol.encode_request(msg, secret, fix_sender=fix_sender)
    response = post(endpoint, body, timeout)
    failure = protocol.failure_for(response.status, response.reason, response.kind)
    if failure is not None:
        raise failure

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
import hashlib
import http.client
import socket
import time
from urllib.parse import urlsplit

from gaemail import protocol
from gaemail.config import Settings
from gaemail.errors import ConfigurationError, MessageError, MessageSendingFailure, TemporaryFailure
from gaemail.protocol import v1, v2
from gaemail.proxy_env import proxy_for

TYPE_CHECKING = False  # gmail imports this module per message: no typing at run time
if TYPE_CHECKING:
    from typing import Protocol

    class Poster(Protocol):
        """Carries one request body to the proxy and brings its answer back."""

        def post(self, request: Request) -> Response: ...


class Request:
    """One request to the proxy: `path` None posts to the proxy URL itself (v1)."""

    __slots__ = ("body", "headers", "path")

    def __init__(self, path: str | None, headers: dict[str, str], body: bytes) -> None:
        self.path = path
        self.headers = headers
        self.body = body


class Response:
    __slots__ = ("body", "headers", "kind", "reason", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        kind: str | None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        self.status = status
        self.reason = reason  # the body's first line, or the HTTP reason phrase
        self.kind = kind  # X-Gaemail-Error
        self.headers = headers or {}  # names in lower case
        self.body = body

    @classmethod
    def read(cls, status: int, phrase: str, headers: dict[str, str], body: bytes) -> Response:
        lowered = {name.lower(): value for name, value in headers.items()}
        reason = protocol.answer_reason(body.decode("utf-8", "replace"), phrase)
        return cls(status, reason, lowered.get(protocol.ERROR_HEADER.lower()), lowered, body)


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
        if parts.username is not None or parts.password is not None:
            # Never shown: the part before the @ may be a password.
            raise ConfigurationError(
                "the proxy URL carries a user or password, which gaemail never sends: "
                "remove the part before the @ (the signing secret is the credential)"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError("the proxy URL has an invalid port") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port, path)

    @property
    def origin(self) -> str:
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        if self.port:
            netloc += f":{self.port}"
        return f"{self.scheme}://{netloc}"

    @property
    def url(self) -> str:
        return self.origin + self.path

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

    def __init__(
        self,
        endpoint: Endpoint,
        timeout: float,
        *,
        via: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        """`via`: the URL of an HTTP proxy to go through (see gaemail.proxy_env);
        `ca_file`: the certificates to trust instead of the system's."""
        self.endpoint = endpoint
        self.timeout = timeout
        self.via = Endpoint.parse(via) if via else None
        if self.via is not None and self.via.scheme != "http":
            raise ConfigurationError("gmail reaches HTTP proxies over http:// only")
        self.ca_file = ca_file
        self._http: http.client.HTTPConnection | None = None

    def post(self, request: Request) -> Response:
        """POST one request; network failures become TemporaryFailure.

        A kept connection the proxy has closed meanwhile fails at once; that
        request is made again on a new one.  Should the proxy have sent the
        message all the same, it knows the retry by its Message-ID.
        """
        if self._http is not None:
            try:
                return self._exchange(request, kept=True)
            except _Stale:
                pass
        return self._exchange(request, kept=False)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _open(self) -> http.client.HTTPConnection:
        endpoint, timeout, via = self.endpoint, self.timeout, self.via
        host, port = (via.host, via.port) if via else (endpoint.host, endpoint.port)
        if endpoint.scheme == "https":
            import ssl

            context = ssl.create_default_context(cafile=self.ca_file)
            secure = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
            if via is not None:
                # CONNECT through the proxy, then TLS with (and checked against) the
                # proxy URL's own host name.
                secure.set_tunnel(endpoint.host, endpoint.port or 443)
            return secure
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _target(self, request: Request) -> str:
        """The request target: absolute-form through an HTTP proxy for plain http."""
        path = self.endpoint.path if request.path is None else request.path
        if self.via is not None and self.endpoint.scheme == "http":
            return self.endpoint.origin + path
        return path

    def _exchange(self, request: Request, kept: bool) -> Response:
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
                self._target(request),
                body=request.body,
                headers={**request.headers, "User-Agent": "gaemail"},
            )
            answer = connection.getresponse()
            body = answer.read()  # all of it, to reuse the connection
            if answer.will_close:
                self.close()
            return Response.read(answer.status, answer.reason, dict(answer.getheaders()), body)
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


def connection_for(settings: Settings) -> Connection:
    """A Connection to the proxy the settings name: its URL, timeout, CA file, and
    the HTTP proxy the environment names for it (as httpx would choose)."""
    endpoint = Endpoint.parse(settings.require("url").value)
    via = proxy_for(endpoint.scheme, endpoint.host, settings.environ)
    return Connection(endpoint, settings.timeout(), via=via, ca_file=settings.value("ca_file"))


def encode(
    msg: bytes,
    secret: bytes,
    *,
    fix_sender: bool,
    envelope: v2.Envelope,
    version: str,
    now: float,
) -> Request:
    """The signed request for `msg` in protocol `version`.

    v1 carries the recipients in the message's own headers; v2 signs `envelope`
    and an idempotency key that every retry of the same message repeats.
    """
    if version == "v1":
        body = v1.encode_request(msg, secret, fix_sender=fix_sender)
        return Request(None, {"Content-Type": v1.CONTENT_TYPE}, body)
    options = [v2.OPTION_FIX_SENDER] if fix_sender else []
    key = idempotency_key(msg, envelope, options)
    try:
        headers, body = v2.encode_send(
            msg, [v2.Key.from_secret(secret)], key, envelope, options, now=int(now)
        )
    except v2.ProtocolError as exc:
        raise MessageError(f"cannot send this message: {exc}") from None
    return Request(v2.SEND_PATH, headers, body)


def idempotency_key(msg: bytes, envelope: v2.Envelope, options: list[str]) -> str:
    """The message's v2 idempotency key, derived from what it is.

    The same message (bytes, envelope, options) gets the same key on every try,
    from the queue or from a caller such as Exim that runs gmail again, without
    storing it; a different message never shares one.
    """
    digest = hashlib.sha256()
    for part in (envelope.sender, ",".join(envelope.recipients), ",".join(sorted(options))):
        digest.update(part.encode("utf-8") + b"\0")
    digest.update(msg)
    return "gm-" + digest.hexdigest()[:48]


def judge(response: Response, version: str) -> MessageSendingFailure | None:
    """What the answer means: None when the proxy took the message."""
    if version == "v1":
        failure = protocol.failure_for(
            response.status, response.reason, response.kind, response.headers.get("location")
        )
        retry_after = None
    else:
        answer = v2.parse_answer(response.status, response.headers, response.body)
        failure, retry_after = answer.failure, answer.retry_after
    if failure is not None and retry_after is None:
        text = response.headers.get("retry-after", "").strip()
        retry_after = int(text) if text.isdigit() and len(text) <= 9 else None
    if failure is not None and retry_after is not None:
        failure.retry_after = retry_after
    return failure


def send(
    connection: Poster,
    msg: bytes,
    secret: bytes,
    *,
    fix_sender: bool,
    envelope: v2.Envelope | None = None,
    version: str = "v1",
    now: float | None = None,
) -> None:
    """Sign and send one message; raises the MessageSendingFailure the answer means.

    v2 needs the `envelope`; without one the message goes as v1, whose
    recipients are its headers.
    """
    if envelope is None:
        version = "v1"
        envelope = v2.Envelope(v2.NULL_SENDER, ())
    request = encode(
        msg,
        secret,
        fix_sender=fix_sender,
        envelope=envelope,
        version=version,
        now=time.time() if now is None else now,
    )
    failure = judge(connection.post(request), version)
    if failure is not None:
        raise failure

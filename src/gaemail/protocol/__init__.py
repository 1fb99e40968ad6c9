"""The wire protocol between a gaemail client and its proxy.  Standard library only.

Both ends import this package and nothing else of each other.  It holds what
every version of the protocol shares: the statuses, the settings both ends name
alike, and `KINDS`, the one table that ties each kind of refusal to its HTTP
status, the exception a client raises for it and so the exit status of `gmail`.
The server's refusals and the client's `failure_for` are both read off it.

Each version is a module of its own with its encode/decode pair: `v1` is
appengine-mailer's documented form interface, kept byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from gaemail.errors import (
    MessageRejected,
    MessageSendingFailure,
    ProxyURLError,
    SignatureRejected,
    TemporaryFailure,
)

# Settings both ends read, by the name of their variable and envdir file.
URL_VARIABLE = "GMAIL_PROXY_URL"
SECRET_VARIABLE = "GMAIL_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
ENVDIR_VARIABLE = "GMAIL_ENVDIR"
DEFAULT_ENVDIR = "/etc/envdir"

# The proxy names the kind of refusal in this header, so a client need not parse
# reason text; v1 clients of 2010 simply ignore it.
ERROR_HEADER = "X-Gaemail-Error"

# Statuses, named once.
SENT = 204
OK = 200
BAD_REQUEST = 400
UNAUTHORIZED = 401
NOT_FOUND = 404
CONFLICT = 409
TOO_LARGE = 413
UNSUPPORTED_MEDIA_TYPE = 415
UNPROCESSABLE = 422
TOO_MANY_REQUESTS = 429
SERVER_ERROR = 500
UNAVAILABLE = 503

# Reason texts of the 2010 server, kept so that old log watchers still match.
REASON_NO_MESSAGE = "No message found"
REASON_NO_SIGNATURE = "No signature found"
REASON_BAD_SIGNATURE = "Signature doesn't match"
REASON_NO_SENDER = "No sender specified"

# App Engine's Mail API takes at most 31.5 MB per message; a form-encoded message
# can be three times its size (every 8-bit byte becomes %XX), so the proxy reads
# bodies up to this size and judges the decoded message against MAX_MESSAGE_BYTES.
MAX_MESSAGE_BYTES = 31_500_000
MAX_REQUEST_BYTES = 3 * MAX_MESSAGE_BYTES + 4096


@dataclass(frozen=True)
class Kind:
    """One kind of refusal: its name on the wire, its status, what a client raises."""

    name: str
    status: int
    failure: type[MessageSendingFailure]

    @property
    def exit_code(self) -> int:
        """What `gmail` exits with when the proxy refuses a message this way."""
        return self.failure.exit_code


KIND_REQUEST = Kind("request", BAD_REQUEST, MessageRejected)  # a field is missing or malformed
KIND_SIGNATURE = Kind("signature", BAD_REQUEST, SignatureRejected)  # no configured key matches
KIND_MESSAGE = Kind("message", BAD_REQUEST, MessageRejected)  # the Mail API would not send it
KIND_TOO_LARGE = Kind("too-large", TOO_LARGE, MessageRejected)
KIND_TEMPORARY = Kind("temporary", UNAVAILABLE, TemporaryFailure)  # quota, deadline: retry
KIND_INTERNAL = Kind("internal", SERVER_ERROR, TemporaryFailure)  # the proxy is broken
# v2's statuses beyond v1's (their problem+json `code` says more).
KIND_UNAUTHORIZED = Kind("unauthorized", UNAUTHORIZED, SignatureRejected)  # clock, key, signature
KIND_IN_FLIGHT = Kind("in-flight", CONFLICT, TemporaryFailure)  # same key still being sent
KIND_UNSUPPORTED = Kind("unsupported", UNSUPPORTED_MEDIA_TYPE, MessageRejected)
KIND_KEY_REUSED = Kind("key-reused", UNPROCESSABLE, MessageRejected)  # a client bug
KIND_RATE_LIMITED = Kind("rate-limited", TOO_MANY_REQUESTS, TemporaryFailure)

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        KIND_REQUEST,
        KIND_SIGNATURE,
        KIND_MESSAGE,
        KIND_TOO_LARGE,
        KIND_TEMPORARY,
        KIND_INTERNAL,
        KIND_UNAUTHORIZED,
        KIND_IN_FLIGHT,
        KIND_UNSUPPORTED,
        KIND_KEY_REUSED,
        KIND_RATE_LIMITED,
    )
}


def answer_reason(body: str, phrase: str) -> str:
    """The reason a proxy gave: the first line of its answer, else the HTTP phrase."""
    text = body.strip()
    return text.splitlines()[0] if text else phrase


def failure_for(
    status: int, reason: str, kind: str | None = None, location: str | None = None
) -> MessageSendingFailure | None:
    """The exception a client raises for an answer, or None when it means sent.

    `kind` is the ERROR_HEADER; without it (a proxy of 2010) the status decides,
    and the 2010 reason text still tells a bad signature from a refused message.
    `location` is a redirect's Location header.
    """
    if status == SENT:
        return None  # only 204: a URL that reaches some web page answers 200
    reason = " ".join(reason.split()) or f"the proxy answered HTTP {status}"
    known = KINDS.get(kind or "")
    if known is not None and known.status == status:
        return known.failure(reason, status)
    if 300 <= status < 400:
        where = f"to {location}" if location else "elsewhere"
        return ProxyURLError(
            f"the proxy URL redirects {where}: set GMAIL_PROXY_URL to the URL it names", status
        )
    if reason.startswith("<"):  # an HTML page, not the proxy's one line
        if status in (500, 502, 503, 504):  # App Engine's front end in an outage, say
            return TemporaryFailure(f"the proxy answered HTTP {status}", status)
        return _not_a_proxy(status)
    if status == BAD_REQUEST:
        if reason == REASON_BAD_SIGNATURE:
            return SignatureRejected(reason, status)
        return MessageRejected(reason, status)
    if status == TOO_LARGE:
        return MessageRejected(reason, status)
    if status in (408, 429, 500, 502, 503, 504):
        return TemporaryFailure(reason, status)
    # A 200, 404, 405 or 501 means the URL points somewhere that is not the proxy.
    # The message is fine; keep it (queued, or deferred by Exim) until the setting is.
    return _not_a_proxy(status)


def _not_a_proxy(status: int) -> ProxyURLError:
    return ProxyURLError("that URL is not a gaemail proxy: check GMAIL_PROXY_URL", status)

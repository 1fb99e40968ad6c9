"""The wire protocol between a gaemail client and the proxy.  Standard library only.

Version 1 is appengine-mailer's documented interface, kept byte for byte so that
clients written for it keep working:

    POST <proxy URL>     Content-Type: application/x-www-form-urlencoded
      msg         the RFC 2822 message
      signature   base64(HMAC-SHA1(secret, msg)), no trailing newline
      fix_sender  optional; non-empty asks the proxy to send from its default
                  sender when the message's own sender is refused or missing

    204  sent                      400  refused, text/plain one-line reason
    413  too large                 500  anything else (503: try again later)

The proxy also names the kind of refusal in an `X-Gaemail-Error` header so a
client need not parse reason text; v1 clients simply ignore it.  A later version
lives beside this one as its own encode/decode pair, chosen by the request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from urllib.parse import unquote

from gaemail.errors import (
    MessageRejected,
    MessageSendingFailure,
    SignatureRejected,
    TemporaryFailure,
)

TYPE_CHECKING = False  # no run-time typing on gmail's start-up path (bench/)
if TYPE_CHECKING:
    from collections.abc import Iterable

FIELD_MSG = "msg"
FIELD_SIGNATURE = "signature"
FIELD_FIX_SENDER = "fix_sender"
CONTENT_TYPE = "application/x-www-form-urlencoded"
ERROR_HEADER = "X-Gaemail-Error"

# Statuses, named once.
SENT = 204
OK = 200
BAD_REQUEST = 400
TOO_LARGE = 413
SERVER_ERROR = 500
UNAVAILABLE = 503

# Kinds of refusal carried in ERROR_HEADER.
KIND_REQUEST = "request"  # a field is missing or malformed
KIND_SIGNATURE = "signature"  # no configured key matches
KIND_MESSAGE = "message"  # the Mail API would not send this message
KIND_TOO_LARGE = "too-large"
KIND_TEMPORARY = "temporary"  # quota, deadline: retry later
KIND_INTERNAL = "internal"  # the proxy itself is misconfigured or broken

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


def sign(secret: bytes, msg: bytes) -> str:
    """The v1 signature of `msg`: base64 of its HMAC-SHA1, no newline."""
    return base64.b64encode(hmac.new(secret, msg, hashlib.sha1).digest()).decode("ascii")


def verify(keys: Iterable[bytes], msg: bytes, signature: str) -> bool:
    """True when any key signed `msg`.

    Every key is tried and compared in constant time, so the answer's timing says
    neither which key matched nor how much of the signature was right.
    """
    offered = signature.strip().encode("ascii", "replace")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(sign(key, msg).encode("ascii"), offered)
    return matched


# What urllib.parse.quote_from_bytes(data, safe="") writes, looked up per byte in
# a table: 1.6 times as fast on a message, and a flush encodes thousands.
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_PERCENT = [chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256)]


def form_quote(data: bytes) -> str:
    """`data` percent-encoded for a form field: every byte but the unreserved ones."""
    return "".join(map(_PERCENT.__getitem__, data))


def encode_request(msg: bytes, secret: bytes, *, fix_sender: bool = False) -> bytes:
    """The v1 request body for `msg`, signed with `secret`."""
    fields = [
        (FIELD_MSG, form_quote(msg)),
        (FIELD_SIGNATURE, form_quote(sign(secret, msg).encode("ascii"))),
    ]
    if fix_sender:
        fields.append((FIELD_FIX_SENDER, "1"))
    return "&".join(f"{name}={value}" for name, value in fields).encode("ascii")


class SignedMessage:
    """A decoded v1 request: the message bytes exactly as signed."""

    __slots__ = ("fix_sender", "msg", "signature")

    def __init__(self, msg: bytes, signature: str, fix_sender: bool) -> None:
        self.msg = msg
        self.signature = signature
        self.fix_sender = fix_sender


class RequestError(ValueError):
    """A request that is not a well-formed v1 request; str() is the reason."""

    kind = KIND_REQUEST


def decode_request(body: bytes) -> SignedMessage:
    """Parse a v1 form body without losing a byte of `msg`.

    Form values are decoded as latin-1, which maps every byte to one code point,
    so an 8-bit message that is not UTF-8 survives and the signature is checked
    over exactly the bytes the client signed.
    """
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise RequestError("The form body is not URL-encoded") from None
    fields: dict[str, str] = {}
    # parse_qsl(text, keep_blank_values=True, encoding="latin-1"), faster.
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            fields.setdefault(_unquote_plus(name), _unquote_plus(value))
    msg = fields.get(FIELD_MSG, "")
    if not msg:
        raise RequestError(REASON_NO_MESSAGE)
    signature = fields.get(FIELD_SIGNATURE, "")
    if not signature:
        raise RequestError(REASON_NO_SIGNATURE)
    return SignedMessage(
        msg=msg.encode("latin-1"),
        signature=signature,
        fix_sender=bool(fields.get(FIELD_FIX_SENDER)),
    )


# A % that does not start an escape.  A pattern, compiled on first use: clients
# import this module on every start and never decode requests.
_BAD_ESCAPE = r"%(?![0-9A-Fa-f]{2})"


def _unquote_plus(text: str) -> str:
    """unquote_plus(text, encoding="latin-1") for ASCII text, in C when every % is %XX."""
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    if "=" in text or re.search(_BAD_ESCAPE, text):
        return unquote(text, encoding="latin-1")
    # The quoted-printable decoder reads =XX as unquote reads %XX, and nothing
    # else differs once the text has no = of its own: ~5x faster on a message.
    return binascii.a2b_qp(text.replace("%", "=")).decode("latin-1")


def answer_reason(body: str, phrase: str) -> str:
    """The reason a proxy gave: the first line of its answer, else the HTTP phrase."""
    text = body.strip()
    return text.splitlines()[0] if text else phrase


def failure_for(status: int, reason: str, kind: str | None = None) -> MessageSendingFailure | None:
    """The exception a client raises for a response, or None when it means sent.

    `kind` is the X-Gaemail-Error header; without it (an older proxy) the 2010
    reason text still tells a bad signature from a refused message.
    """
    if status == SENT:
        return None  # only 204: a URL that reaches some web page answers 200
    reason = " ".join(reason.split()) or f"the proxy answered HTTP {status}"
    if status == BAD_REQUEST:
        if kind == KIND_SIGNATURE or (kind is None and reason == REASON_BAD_SIGNATURE):
            return SignatureRejected(reason, status)
        return MessageRejected(reason, status)
    if status == TOO_LARGE:
        return MessageRejected(reason, status)
    if 500 <= status < 600 or status in (408, 429):
        return TemporaryFailure(reason, status)
    # A 200, a redirect, 404 or 405 means the URL points somewhere that is not the proxy.
    # The message is fine; keep it (queued, or deferred by Exim) until the setting is.
    return TemporaryFailure(f"unexpected answer from the proxy URL ({reason})", status)

"""Version 1: appengine-mailer's documented form interface, kept byte for byte.

POST <proxy URL>     Content-Type: application/x-www-form-urlencoded
  msg         the RFC 2822 message
  signature   base64(HMAC-SHA1(secret, msg)), no trailing newline
  fix_sender  optional; non-empty asks the proxy to send from its default
              sender when the message's own sender is refused or missing

204  sent                      400  refused, text/plain one-line reason
413  too large                 500  anything else (503: try again later)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from gaemail.protocol import REASON_NO_MESSAGE, REASON_NO_SIGNATURE

FIELD_MSG = "msg"
FIELD_SIGNATURE = "signature"
FIELD_FIX_SENDER = "fix_sender"
CONTENT_TYPE = "application/x-www-form-urlencoded"


def sign(secret: bytes, msg: bytes) -> str:
    """The v1 signature of `msg`: base64 of its HMAC-SHA1, no newline."""
    return base64.b64encode(hmac.new(secret, msg, hashlib.sha1).digest()).decode("ascii")


def verify(keys: Iterable[bytes], msg: bytes, signature: str) -> bool:
    """True when any key signed `msg`."""
    return matching_key(keys, msg, signature) is not None


def matching_key(keys: Iterable[bytes], msg: bytes, signature: str) -> bytes | None:
    """The key that signed `msg`, or None.

    Every key is tried and compared in constant time, so the answer's timing says
    neither which key matched nor how much of the signature was right.
    """
    offered = signature.strip().encode("ascii", "replace")
    matched = None
    for key in keys:
        if hmac.compare_digest(sign(key, msg).encode("ascii"), offered):
            matched = key
    return matched


# What urllib.parse.quote_from_bytes(data, safe="") writes, looked up per byte in
# a table (faster on a message, bench/), a slice at a time: a lookup list over the
# whole message cost the client ten times its size.
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_PERCENT = [chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256)]
_SLICE = 64 * 1024


def _write_quoted(out: io.BytesIO, data: bytes) -> None:
    lookup = _PERCENT.__getitem__
    view = memoryview(data)
    for start in range(0, len(data), _SLICE):
        out.write("".join(map(lookup, view[start : start + _SLICE])).encode("ascii"))


def form_quote(data: bytes) -> str:
    """`data` percent-encoded for a form field: every byte but the unreserved ones."""
    out = io.BytesIO()
    _write_quoted(out, data)
    return out.getvalue().decode("ascii")


def encode_request(msg: bytes, secret: bytes, *, fix_sender: bool = False) -> bytes:
    """The v1 request body for `msg`, signed with `secret`."""
    out = io.BytesIO()
    out.write(f"{FIELD_MSG}=".encode("ascii"))
    _write_quoted(out, msg)
    out.write(f"&{FIELD_SIGNATURE}=".encode("ascii"))
    _write_quoted(out, sign(secret, msg).encode("ascii"))
    if fix_sender:
        out.write(f"&{FIELD_FIX_SENDER}=1".encode("ascii"))
    # getvalue() hands over the buffer itself, no copy, once nothing more is written.
    return out.getvalue()


@dataclass(frozen=True)
class SignedMessage:
    """A decoded v1 request: the message bytes exactly as signed."""

    msg: bytes
    signature: str
    fix_sender: bool


class RequestError(ValueError):
    """A request that is not a well-formed v1 request; str() is the reason."""


def decode_request(body: bytes) -> SignedMessage:
    """Parse a v1 form body without losing a byte of `msg`.

    Fields are decoded as bytes (parse_qsl with latin-1, which maps every byte to
    one code point, gives the same), so an 8-bit message that is not UTF-8
    survives and the signature is checked over exactly the bytes the client
    signed.  A message is decoded a piece at a time: at most the body and the
    decoded values exist at once.
    """
    if not body.isascii():
        raise RequestError("The form body is not URL-encoded")
    spans: dict[str, tuple[int, int]] = {}
    start = 0
    while start <= len(body):
        end = body.find(b"&", start)
        end = len(body) if end < 0 else end
        if end > start:
            equals = body.find(b"=", start, end)
            stop = end if equals < 0 else equals
            name = _unquote_plus(body[start:stop]).decode("latin-1")
            # The first of a name wins, as in parse_qsl.
            spans.setdefault(name, (stop + 1, end) if equals >= 0 else (end, end))
        start = end + 1
    fields = _decode_values(body, spans)
    msg = fields.get(FIELD_MSG, b"")
    if not msg:
        raise RequestError(REASON_NO_MESSAGE)
    signature = fields.get(FIELD_SIGNATURE, b"").decode("latin-1")
    if not signature:
        raise RequestError(REASON_NO_SIGNATURE)
    return SignedMessage(
        msg=msg, signature=signature, fix_sender=bool(fields.get(FIELD_FIX_SENDER))
    )


# A % that does not start an escape.  A pattern, compiled on first use: clients
# import this module on every start and never decode requests.
_BAD_ESCAPE = rb"%(?![0-9A-Fa-f]{2})"
# The quoted-printable decoder reads =XX as unquote reads %XX, and nothing else
# differs once a value has no = of its own; + is a space in a form.
_AS_QP = bytes.maketrans(b"%+", b"= ")
_WANTED = (FIELD_MSG, FIELD_SIGNATURE, FIELD_FIX_SENDER)


def _decode_values(body: bytes, spans: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """The decoded value of each wanted field."""
    fields: dict[str, bytes] = {}
    for name in _WANTED:
        if name not in spans:
            continue
        start, end = spans[name]
        if body.find(b"%", start, end) < 0 and body.find(b"+", start, end) < 0:
            fields[name] = body[start:end]
        elif body.find(b"=", start, end) >= 0 or re.compile(_BAD_ESCAPE).search(body, start, end):
            fields[name] = _unquote_plus(body[start:end])
        else:
            fields[name] = _qp_decoded(body, start, end)
    return fields


_DECODE_PIECE = 64 * 1024


def _qp_decoded(body: bytes, start: int, end: int) -> bytes:
    """body[start:end] unquoted, through a2b_qp a piece at a time.

    Whole, the translation and a2b_qp's working buffer would be two more
    copies of the message.  Every % here starts an escape (_BAD_ESCAPE), so a
    piece that would end within one ends before its %.
    """
    out = io.BytesIO()
    at = start
    while at < end:
        stop = min(at + _DECODE_PIECE, end)
        cut = body.find(b"%", max(at + 1, stop - 2), stop)
        if cut > at and stop < end:
            stop = cut
        out.write(binascii.a2b_qp(body[at:stop].translate(_AS_QP)))
        at = stop
    return out.getvalue()  # the buffer itself, not a copy


def _unquote_plus(raw: bytes) -> bytes:
    """unquote_plus(raw, encoding="latin-1"), as bytes."""
    return unquote_to_bytes(raw.replace(b"+", b" "))

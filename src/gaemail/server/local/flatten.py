"""`as_bytes(msg)`: a compat32 message's bytes, as `msg.as_bytes()` writes them, for less.

Two parts of the standard generator cost more than the rest of writing an
outbox file together, and neither changes a byte of what is written:

- every header goes through `email.header.Header`, to fold and encode it, even
  a short ASCII one that comes out as it went in;
- a new multipart boundary is checked against the text by compiling a regex
  for it, a fresh one each message, so the regex cache never helps.

Here a header that needs neither folding nor encoding is written directly, and
a boundary is checked with a substring test first, the regex only when the test
finds it.  tests/test_server_outbox.py compares the results with as_bytes().

`Flattened` writes the same bytes in pieces, with each attachment's base64
made from its raw bytes as it is written: the standard generator would hold a
large message several times over (the base64 text, each part's buffer, their
join, the message's own buffer, the result).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.policy import Compat32, compat32
from io import BytesIO
from typing import BinaryIO

# Printable ASCII words separated by single spaces: Header.encode() returns
# such a value unchanged when it fits on the first line.
_UNFOLDED = re.compile(r"[!-~]+(?: [!-~]+)*")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # email.generator.NLCRE
# compat32's linesep, which _POLICY keeps: base64.encodebytes ends its lines so too.
_NL = b"\n"
# base64.encodebytes makes a 76-character line of each 57 bytes: chunks of
# whole lines encode to the lines the whole would.
_BASE64_CHUNK = 57 * 4096  # 233 KB in, 311 KB out


class _QuickFoldPolicy(Compat32):
    """compat32, writing a header that fits on one line as it is."""

    def fold_binary(self, name: str, value: object) -> bytes:
        text = _one_line(name, value, self.max_line_length)
        if text is not None:
            return f"{name}: {text}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)  # type: ignore[arg-type]


def _one_line(name: str, value: object, limit: int | None) -> str | None:
    """The header's value when Header.encode() would return it unchanged, else None."""
    if not limit or not name.isascii():
        return None
    if type(value) is str:
        # Encoded as Header(value, header_name=name): the name shares the first line.
        text, room = value, limit - len(name) - 2
    elif isinstance(value, Header):
        # The SDK's headers: Header(text, "us-ascii"), folded without the name.
        chunks = getattr(value, "_chunks", None)
        if not (isinstance(chunks, list) and len(chunks) == 1):
            return None
        text, charset = chunks[0]
        if not (type(text) is str and str(charset) == "us-ascii"):
            return None
        room = limit
    else:
        return None
    return text if len(text) <= room and _UNFOLDED.fullmatch(text) else None


_POLICY = _QuickFoldPolicy()


class _QuickBoundaryGenerator(BytesGenerator):
    """BytesGenerator, checking a new boundary against the text without a new regex."""

    # Neither method is in typeshed: both are the generator's internals.
    @classmethod
    def _make_boundary(cls, text: bytes | None = None) -> str:
        make = super()._make_boundary  # type: ignore[misc]
        boundary: str = make()
        if text is None or b"--" + boundary.encode("ascii") not in text:
            return boundary
        # The boundary's text is in the message: let the generator decide, its way.
        chosen: str = make(text)
        return chosen

    def _write_lines(self, lines: str) -> None:
        # Generator._write_lines writes line, newline, line...: one write instead.
        if lines:
            self.write(_NEWLINE.sub(self._NL, lines))  # type: ignore[attr-defined]


class _HeaderGenerator(_QuickBoundaryGenerator):
    """Writes a message's header block alone, blank line included, as flatten() writes it."""

    def _dispatch(self, msg: Message) -> None:
        """Write no body: flatten() writes the headers after it."""


def as_bytes(msg: Message) -> bytes:
    """What `msg.as_bytes()` returns for a compat32 message (boundaries are random)."""
    if msg.policy is not compat32:
        return msg.as_bytes()
    return _flat(msg)


def _flat(msg: Message, generator: type[BytesGenerator] = _QuickBoundaryGenerator) -> bytes:
    """as_bytes() of a compat32 message, or with _HeaderGenerator its header block."""
    out = BytesIO()
    generator(out, mangle_from_=False, policy=_POLICY).flatten(msg)
    return out.getvalue()


class Flattened:
    """What `as_bytes(msg)` returns once each `raw` part carries its bytes base64-encoded.

    With `raw`, `msg` is a compat32 multipart without preamble or epilogue,
    as the SDK makes them, and each of `raw` pairs one of its subparts,
    payload not yet set, with the bytes it carries.  Those parts get the header
    encoders.encode_base64 adds, and their base64 is made as it is written, a
    chunk at a time: the bytes are the only copy of an attachment held.
    `head` is what is written first, through the top-level header block: all
    that check_header_lines reads.
    """

    def __init__(self, msg: Message, raw: Sequence[tuple[Message, bytes]] = ()) -> None:
        self._rest: list[tuple[bytes, bytes]] = []  # text, then bytes to write as base64
        if not raw:
            self.head = as_bytes(msg)
            return
        parts: list[Message] = msg.get_payload()  # type: ignore[assignment]
        carried = {id(part): data for part, data in raw}
        data = [carried.get(id(part)) for part in parts]
        # Each part's text as the generator flattens it, but only the header
        # block of a raw part: base64 never contains "--", so checking a new
        # boundary against the rest is checking it against the whole text.
        texts = []
        for part, payload in zip(parts, data, strict=True):
            if payload is None:
                texts.append(_flat(part))
            else:
                part["Content-Transfer-Encoding"] = "base64"
                texts.append(_flat(part, _HeaderGenerator))
        boundary = msg.get_boundary()
        if not boundary:
            boundary = _QuickBoundaryGenerator._make_boundary(_NL.join(texts))
            msg.set_boundary(boundary)
        self.head = _flat(msg, _HeaderGenerator)
        delimiter = b"--" + boundary.encode("ascii", "surrogateescape")
        # _handle_multipart's layout, with each raw part's base64 after its headers.
        pending = delimiter + _NL
        for n, (text, payload) in enumerate(zip(texts, data, strict=True)):
            if n:
                pending += _NL + delimiter + _NL
            pending += text
            if payload is not None:
                self._rest.append((pending, payload))
                pending = b""
        self._rest.append((pending + _NL + delimiter + b"--" + _NL, b""))

    def write(self, out: BinaryIO) -> None:
        """Write the message into `out`."""
        out.write(self.head)
        for text, data in self._rest:
            out.write(text)
            _write_base64(data, out)


def _write_base64(data: bytes, out: BinaryIO) -> None:
    """Write `data` as encoders.encode_base64 encodes it (base64.encodebytes), a chunk at a time."""
    view = memoryview(data)
    for start in range(0, len(data), _BASE64_CHUNK):
        out.write(base64.encodebytes(view[start : start + _BASE64_CHUNK]))

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

`Flattened` writes the same bytes in pieces, each text's encoding and each
attachment's base64 made from the text or bytes as it is written: the standard
encoders and generator would hold a large message several times over (the
encoded payload, the line endings rewritten, each part's buffer, their join,
the message's own buffer, the result).
"""

from __future__ import annotations

import base64
import quopri
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
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
_TEXT_CHUNK = 1 << 18  # characters of a text encoded at a time


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
        return cls.draw_boundary(lambda needle: text is not None and needle in text, lambda: text)

    @classmethod
    def draw_boundary(cls, found: Callable[[bytes], bool], text: Callable[[], bytes | None]) -> str:
        """What _make_boundary(text()) draws, text() made only when `found` has the first draw."""
        make = super()._make_boundary  # type: ignore[misc]
        boundary: str = make()
        if not found(b"--" + boundary.encode("ascii")):
            return boundary
        # The boundary's text is in the message: let the generator decide, its way.
        chosen: str = make(text())
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
    """What `as_bytes(msg)` returns once each carried part has its payload, written in pieces.

    `msg` is a compat32 message as the SDK makes them (no preamble or epilogue),
    and each of `carried` pairs one of its parts (`msg` itself or a subpart at
    any depth), payload empty and headers final, with what it carries: a text
    part's text, an attachment's bytes.  Each payload is written as the
    generator writes what the standard encoder named by the part's
    Content-Transfer-Encoding makes of it, a chunk at a time: the texts and
    bytes are the only copy of the contents held.  `head` is what is written
    first, through the top-level header block: all that check_header_lines reads.
    """

    def __init__(self, msg: Message, carried: Sequence[tuple[Message, str | bytes]] = ()) -> None:
        payloads = {id(part): _Payload(part, content) for part, content in carried}
        self.head, self._rest = _pieces(msg, payloads)

    def write(self, out: BinaryIO) -> None:
        """Write the message into `out`."""
        out.write(self.head)
        for piece in self._rest:
            if isinstance(piece, bytes):
                out.write(piece)
            else:
                for chunk in piece.chunks():
                    out.write(chunk)


class _Payload:
    """A carried part's payload, as the generator writes what its encoder makes of the content.

    Bytes are base64 (an attachment's, or a text the protobuf could not
    decode, which the SDK's MIMEText base64-encodes as it is).  A text is
    base64 of its UTF-8, quoted-printable (encoders.encode_quopri) or 7bit,
    with the generator's line endings (_write_lines: CRLF, CR and LF become LF).
    """

    def __init__(self, part: Message, content: str | bytes) -> None:
        self.content = content
        self.encoding = str(part.get("Content-Transfer-Encoding", "")).lower()

    def chunks(self) -> Iterator[bytes]:
        content = self.content
        if isinstance(content, bytes):
            view = memoryview(content)
            step = _BASE64_CHUNK
            return (base64.encodebytes(view[i : i + step]) for i in range(0, len(view), step))
        if self.encoding == "base64":
            return _base64(piece.encode("utf-8") for piece in _slices(content))
        if self.encoding == "quoted-printable":
            return _quoted_printable(content)
        return (_newlines(piece.encode("ascii")) for piece in _slices(content))

    def may_contain(self, needle: bytes) -> bool:
        """Whether `needle`, "--" and a boundary as first drawn, is in what is written.

        7bit text is written with only its line endings changed, and the needle
        has none.  Base64 has no "-", and quoted-printable never writes "==",
        with which a boundary ends: every "=" it writes starts "=XX" or a soft
        line break.
        """
        if isinstance(self.content, bytes) or self.encoding in ("base64", "quoted-printable"):
            return False
        return needle.decode("ascii") in self.content

    def whole(self) -> bytes:
        """What chunks() writes, joined: only for drawing a boundary the text already has."""
        return b"".join(self.chunks())


_Piece = bytes | _Payload


def _pieces(msg: Message, payloads: dict[int, _Payload]) -> tuple[bytes, list[_Piece]]:
    """`msg` as the generator writes it: its header block, then its body in pieces.

    The generator's order: each part's body is made before its header block,
    so a multipart's boundary is drawn after its subparts' boundaries.
    """
    payload = payloads.get(id(msg))
    if payload is not None:
        return _flat(msg, _HeaderGenerator), [payload]
    if not msg.is_multipart():
        return _flat(msg), []
    subparts: list[Message] = msg.get_payload()  # type: ignore[assignment]
    texts = []
    for part in subparts:
        head, rest = _pieces(part, payloads)
        texts.append([head, *rest])
    boundary = msg.get_boundary()
    if not boundary:
        boundary = _draw_boundary(texts)
        msg.set_boundary(boundary)
    delimiter = b"--" + boundary.encode("ascii", "surrogateescape")
    # _handle_multipart's layout.
    body: list[_Piece] = [delimiter + _NL]
    for n, text in enumerate(texts):
        if n:
            body.append(_NL + delimiter + _NL)
        body += text
    body.append(_NL + delimiter + b"--" + _NL)
    return _flat(msg, _HeaderGenerator), body


def _draw_boundary(texts: list[list[_Piece]]) -> str:
    """A new boundary for the subparts `texts`, drawn as _QuickBoundaryGenerator draws it.

    The needle has no newline and every piece but a payload ends with one, and
    every payload is followed by a piece that starts with one: no needle spans
    two pieces, so each is checked alone.
    """

    def found(needle: bytes) -> bool:
        return any(
            needle in piece if isinstance(piece, bytes) else piece.may_contain(needle)
            for text in texts
            for piece in text
        )

    def joined() -> bytes:
        return _NL.join(
            b"".join(piece if isinstance(piece, bytes) else piece.whole() for piece in text)
            for text in texts
        )

    return _QuickBoundaryGenerator.draw_boundary(found, joined)


def _slices(text: str) -> Iterator[str]:
    """`text` in pieces of _TEXT_CHUNK characters or one more: none ends between CR and LF."""
    start = 0
    while start < len(text):
        end = start + _TEXT_CHUNK
        if text[end - 1 : end + 1] == "\r\n":
            end += 1
        yield text[start:end]
        start = end


def _newlines(data: bytes) -> bytes:
    """`data` with CRLF, CR and LF each made LF, as the generator's NLCRE does, but faster."""
    return data.replace(b"\r\n", _NL).replace(b"\r", _NL)


def _base64(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The base64 of `pieces` joined, as base64.encodebytes writes it, a piece at a time.

    Each piece but the last is encoded up to a multiple of 57 bytes, which
    encodebytes makes into whole 76-character lines; the rest goes with the next.
    """
    rest = b""
    for piece in pieces:
        data = memoryview(rest + piece)
        whole = len(data) - len(data) % 57
        if whole:
            yield base64.encodebytes(data[:whole])
        rest = bytes(data[whole:])
    if rest:
        yield base64.encodebytes(rest)


def _quoted_printable(text: str) -> Iterator[bytes]:
    """ASCII `text` as encode_quopri encodes it and the generator writes it, some lines at a time.

    binascii.b2a_qp keeps no state across a LF, so each piece ends with one
    (however long its last line).  It writes every line ending as the first
    LF of its input is written, CRLF or LF; each piece is encoded behind the
    whole text's, dropped after.  The choice shows through the generator's
    line endings: a CR left before a line ending makes one with LF, two with CRLF.
    """
    first = text.find("\n")
    ending = b"\r\n" if first > 0 and text[first - 1] == "\r" else b"\n"
    start = 0
    while start < len(text):
        end = text.find("\n", start + _TEXT_CHUNK - 1) + 1 or len(text)
        data = ending + text[start:end].encode("ascii")
        # encoders._qencode: quopri quoting tabs, then spaces as =20.
        encoded = quopri.encodestring(data, quotetabs=True).replace(b" ", b"=20")
        yield _newlines(encoded[len(ending) :])
        start = end

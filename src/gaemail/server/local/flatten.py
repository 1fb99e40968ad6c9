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
"""

from __future__ import annotations

import re
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.policy import Compat32, compat32
from io import BytesIO

# Printable ASCII words separated by single spaces: Header.encode() returns
# such a value unchanged when it fits on the first line.
_UNFOLDED = re.compile(r"[!-~]+(?: [!-~]+)*")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # email.generator.NLCRE


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


def as_bytes(msg: Message) -> bytes:
    """What `msg.as_bytes()` returns for a compat32 message (boundaries are random)."""
    if msg.policy is not compat32:
        return msg.as_bytes()
    out = BytesIO()
    _QuickBoundaryGenerator(out, mangle_from_=False, policy=_POLICY).flatten(msg)
    return out.getvalue()

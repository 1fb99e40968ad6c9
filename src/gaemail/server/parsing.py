"""Reading untrusted mail with the standard library: its failures refused, its output checked.

The email package raises many exception types on malformed input; raised there,
they are the message's fault (a 400), raised anywhere else a proxy bug (a 500).
What it decodes may still hold CR, LF or NUL from an encoded word, or lone
surrogates from 8-bit bytes: `checked_text` refuses those before the Mail API
sees them.
"""

from __future__ import annotations

import binascii
import email
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import Policy

from gaemail.server.refusals import MessageRefused

log = logging.getLogger("gaemail.server")

# Characters that must not reach the Mail API in a header once decoded (an
# encoded word can carry them), and lone surrogates, which the SDK cannot encode.
_UNSAFE_IN_HEADER = re.compile("[\r\n\x00\ud800-\udfff]")
SURROGATE = re.compile("[\ud800-\udfff]")

_EMAIL_PACKAGE = os.path.dirname(email.__file__)
_FEED = 64 * 1024


def parse_bytes(raw: bytes, parse_policy: Policy) -> Message:
    """BytesParser(policy=parse_policy).parsebytes(raw), a slice at a time.

    parsebytes decodes the whole message into one string and wraps that in a
    StringIO (four bytes a character): five times the message before parsing.
    The feed parser takes any slicing alike, which is what parsebytes does too.
    """
    parser = BytesFeedParser(policy=parse_policy)
    _feed(parser, raw, 0, len(raw))
    return parser.close()


def _feed(parser: BytesFeedParser, raw: bytes, start: int, end: int) -> None:
    view = memoryview(raw)
    for at in range(start, end, _FEED):
        parser.feed(bytes(view[at : min(at + _FEED, end)]))


# Where the parser may read header lines: from the start, and from a line that
# may be a multipart delimiter (it starts with "--"; a lone CR may start a line
# too), to the next empty line.  Everywhere else the parser is in a body, where
# a line matters only if it is a delimiter: every other line is taken as it is.
# (Runs are found by where they stop, not by a repeated pattern: Python's
# engine keeps a state per repetition, and its possessive forms misread
# lookaheads in 3.11.)
_EMPTY_LINE = re.compile(rb"\n\r?\n")
_BODY_STOP = re.compile(rb"^--|\r(?!\n)", re.M)
# A Content-Type that may make a body a message of its own (message/*, and the
# parts of multipart/digest): then only the lines inert anywhere are taken.
_CONTENT_TYPE = re.compile(rb"^content-type[ \t]*:", re.I | re.M)
_FIELD_END = re.compile(rb"\n(?![ \t])")
_ENCLOSING = re.compile(rb"message|digest", re.I)
# What makes a line matter anywhere, headers included: empty, a colon, leading
# white space, "From ", a leading "-", a lone CR.  Base64 has none of these.
_NOT_INERT = re.compile(rb"^(?:From |[\s:\-])|:|\r(?!\n)", re.M)
# Past this many header regions or lines that matter, the rest of a message
# is read line by line (and counted against max_parsed_lines).
_MAX_STOPS = 10_000
BLOB_MIN = 64 * 1024


def _body_runs(raw: bytes) -> list[tuple[int, int]] | None:
    """The runs of body lines of `raw`, or None when a body may be a message."""
    runs = []
    at = 0
    for _ in range(_MAX_STOPS):
        if at >= len(raw):
            break
        empty = _EMPTY_LINE.search(raw, at)
        start = empty.end() if empty else len(raw)
        if _may_enclose(raw, at, start):
            return None
        found = _BODY_STOP.search(raw, start)
        if found is not None and raw[found.start()] == ord("-"):
            stop = found.start()  # a line that may be a delimiter: a header region next
        else:
            stop = _line_start(raw, start, found.start() if found else len(raw))
        if stop > start:
            runs.append((start, stop))
        at = stop
    return runs


def _may_enclose(raw: bytes, start: int, end: int) -> bool:
    """Whether a Content-Type field in raw[start:end] may name an enclosed message."""
    for count, field in enumerate(_CONTENT_TYPE.finditer(raw, start, end)):
        if count == _MAX_STOPS:
            return True  # too many to read: assume the worst
        stop = _FIELD_END.search(raw, field.end(), end)
        if _ENCLOSING.search(raw, field.end(), stop.start() if stop else end):
            return True
    return False


def _inert_runs(raw: bytes) -> list[tuple[int, int]]:
    """The runs of lines of `raw` that are inert anywhere."""
    runs = []
    at = 0
    for _ in range(_MAX_STOPS):
        found = _NOT_INERT.search(raw, at)
        stop = _line_start(raw, at, found.start() if found else len(raw))
        if stop > at:
            runs.append((at, stop))
        if found is None:
            break
        after = raw.find(b"\n", found.start())
        if after < 0:
            break
        at = after + 1
    return runs


def _line_start(raw: bytes, start: int, position: int) -> int:
    """Where the line holding `position` starts, or after the last whole line; >= start."""
    return max(start, raw.rfind(b"\n", start, position) + 1)


class Blobs:
    """The long runs of body lines of a message, held aside while the parser reads the rest.

    The parser keeps a body as a list of its lines (a string each, ~50 bytes of
    overhead apiece) and then joins them: for a base64 attachment nearly three
    times its size, for short lines many times more.  Each run of at least
    `minimum` bytes is fed as one placeholder line instead, which the parser
    treats exactly as the lines it stands for: none of them is a delimiter or a
    header line.  `restore` puts the runs back into what was parsed, and
    `base64_data` decodes a part that is a run straight from the message.
    """

    def __init__(self, raw: bytes, minimum: int | None = None) -> None:
        """`minimum` 0: no run is held aside."""
        least = BLOB_MIN if minimum is None else minimum
        self.raw = raw
        self.runs: list[tuple[int, int]] = []
        if least:
            spans = _body_runs(raw)
            if spans is None:
                spans = _inert_runs(raw)
            self.runs = [(start, end) for start, end in spans if end - start >= least]
        self.nonce = os.urandom(8).hex()
        self._pattern = re.compile(rf"Gaemailblob{self.nonce}x(\d+)(\n)?")

    def parsed_lines(self) -> int:
        """How many lines the parser reads one by one: the message's, less the runs'."""
        raw = self.raw
        lines = raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n") + 1
        return lines - sum(raw.count(b"\n", start, end) - 1 for start, end in self.runs)

    def parse(self, parse_policy: Policy) -> Message:
        """`raw` parsed as parse_bytes would, each run a placeholder line."""
        parser = BytesFeedParser(policy=parse_policy)
        at = 0
        for number, (start, end) in enumerate(self.runs):
            _feed(parser, self.raw, at, start)
            parser.feed(f"Gaemailblob{self.nonce}x{number}\n".encode("ascii"))
            at = end
        _feed(parser, self.raw, at, len(self.raw))
        return parser.close()

    def restore(self, part: Message) -> None:
        """Put the runs back into `part`'s own text: its payload, preamble, epilogue."""
        if not self.runs:
            return
        payload = part._payload  # type: ignore[attr-defined]  # what set_payload sets
        if isinstance(payload, str):
            part._payload = self._restored(payload)  # type: ignore[attr-defined]
        for name in ("preamble", "epilogue"):
            text = getattr(part, name)
            if isinstance(text, str):
                setattr(part, name, self._restored(text))

    def restore_all(self, msg: Message) -> None:
        """`restore` for `msg` and every part inside it, enclosed messages included."""
        for part in msg.walk():
            self.restore(part)

    def run_of(self, part: Message) -> memoryview | None:
        """The bytes of `part`'s payload when all of it is one held-aside run, else None."""
        payload = part._payload  # type: ignore[attr-defined]
        if not (self.runs and isinstance(payload, str) and len(payload) < 80):
            return None
        found = self._pattern.fullmatch(payload)
        if found is None:
            return None
        start, end = self._span(found)
        return memoryview(self.raw)[start:end]

    def base64_data(self, part: Message) -> bytes | None:
        """The decoded data of a part whose whole payload is one ASCII run, else None."""
        run = self.run_of(part)
        if run is None or NON_ASCII.search(run):
            return None  # the email package's decoder decides, as for any 8-bit payload
        try:
            return binascii.a2b_base64(run)
        except binascii.Error:
            return None

    def _span(self, found: re.Match[str]) -> tuple[int, int]:
        start, end = self.runs[int(found.group(1))]
        if found.group(2) is None:  # the parser took the line ending before a delimiter
            end -= 2 if self.raw[end - 2 : end] == b"\r\n" else 1
        return start, end

    def _restored(self, text: str) -> str:
        if "Gaemailblob" not in text:
            return text

        def run(found: re.Match[str]) -> str:
            start, end = self._span(found)
            return self.raw[start:end].decode("ascii", "surrogateescape")

        return self._pattern.sub(run, text)


NON_ASCII = re.compile(rb"[\x80-\xff]")


@contextmanager
def parser_errors_refused() -> Iterator[None]:
    """An exception raised inside the standard library's email package is the message's fault.

    The parser raises many types on malformed input (IndexError, ValueError,
    HeaderParseError...); one raised from the proxy's own code is a proxy bug
    and passes through, to be answered 500 with its traceback logged.
    """
    try:
        yield
    except MessageRefused:
        raise
    except Exception as exc:
        if not raised_in_email_package(exc):
            raise
        log.warning("message refused: the email package raised", exc_info=True)
        raise MessageRefused(
            f"Cannot parse the message: the parser failed with {type(exc).__name__}"
        ) from None


def raised_in_email_package(exc: BaseException) -> bool:
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and os.path.dirname(last) == _EMAIL_PACKAGE


def checked_text(where: str, value: str) -> str:
    """`value`, when it holds no CR, LF, NUL or lone surrogate; else MessageRefused."""
    found = _UNSAFE_IN_HEADER.search(value)
    if found is not None:
        char = found.group()
        what = "an undecodable byte" if SURROGATE.match(char) else f"a {_CONTROL_NAMES[char]}"
        raise MessageRefused(f"{where}: contains {what} once decoded")
    return value


_CONTROL_NAMES = {"\r": "CR", "\n": "LF", "\x00": "NUL"}


def header_name(name: str) -> str:
    shown = name[:60]
    return shown if shown.isascii() and shown.isprintable() else repr(shown)

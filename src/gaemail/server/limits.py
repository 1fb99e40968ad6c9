"""The cheap look at a message that comes before the expensive parse.

The standard library's parser spends time quadratic in the encoded words of one
header, and linear but large in parameters, parts and recipients.  `check_shape`
scans the raw bytes with a few regular expressions (linear, no header decoded)
and refuses a message over any limit, naming the limit, before the parser runs.
Its counts are upper bounds: a message under them cannot make the parse costly.
`check_parsed_lines` follows once the runs of lines the parser will take whole
are known (gaemail.server.parsing.Blobs), still before the parse.
"""

from __future__ import annotations

import re

from gaemail.server.config import PARSED_LINE_BYTES, Limits
from gaemail.server.parsing import Blobs
from gaemail.server.refusals import MessageRefused

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"\r?\n(?![ \t])")
_BOUNDARY = re.compile(
    rb"""boundary[ \t\r\n]*=[ \t\r\n]*(?:"([^"\r\n]{1,200})"|([^ \t\r\n;"]{1,200}))""", re.I
)
_DELIMITER = re.compile(rb"^--([^\r\n]{0,202})", re.M)
_ENCODED_WORD = b"=?"
_RECIPIENT_FIELDS = (b"to", b"cc", b"bcc")
_PARAM_FIELDS = (b"content-type", b"content-disposition")
_EMBEDDED = re.compile(rb"^content-type[ \t]*:[ \t\r\n]*message/", re.I | re.M)


def check_shape(raw: bytes, limits: Limits, max_recipients: int) -> None:
    """Raises MessageRefused when `raw` is over one of `limits`."""
    top = header_block(raw, 0)
    _check_size(top, limits, "The message's header")  # before a copy of it is made
    check_header_block(raw[:top], limits, "The message's header")
    count = count_recipients(raw[:top])
    if count > max_recipients:
        # An upper bound, exact for lists of plain addresses.
        raise MessageRefused(
            f"Too many recipients: {count} in To, Cc and Bcc; this proxy sends to at most"
            f" {max_recipients} per message (limit max_recipients)"
        )
    _check_parts(raw, top, limits)


def header_block(raw: bytes, start: int) -> int:
    """Where the header block that begins at `start` ends (the whole rest if it never does)."""
    if raw.startswith((b"\n", b"\r\n"), start):
        return start  # no header at all
    end = _HEADER_END.search(raw, start)
    return end.start() if end else len(raw)


def _check_size(size: int, limits: Limits, where: str) -> None:
    if size > limits.max_header_bytes:
        raise MessageRefused(
            f"{where} block is {size} bytes; this proxy takes at most"
            f" {limits.max_header_bytes} (limit max_header_bytes)"
        )


def check_header_block(block: bytes, limits: Limits, where: str) -> None:
    _check_size(len(block), limits, where)
    if _ENCODED_WORD not in block and b";" not in block:
        return
    for field in _FIELD_START.split(block):
        name = field.split(b":", 1)[0].strip().lower()
        words = field.count(_ENCODED_WORD)
        if words > limits.max_encoded_words:
            raise MessageRefused(
                f"{_name(name)}: {words} encoded words; this proxy takes at most"
                f" {limits.max_encoded_words} in one header (limit max_encoded_words)"
            )
        if name in _PARAM_FIELDS:
            params = field.count(b";")
            if params > limits.max_params:
                raise MessageRefused(
                    f"{_name(name)}: {params} parameters; this proxy takes at most"
                    f" {limits.max_params} (limit max_params)"
                )


def count_recipients(block: bytes) -> int:
    """An upper bound of the addresses in To, Cc and Bcc: fewer than both commas and @s."""
    commas = ats = 0
    for field in _FIELD_START.split(block):
        name = field.split(b":", 1)[0].strip().lower()
        if name in _RECIPIENT_FIELDS:
            commas += field.count(b",") + 1
            ats += field.count(b"@")
    return min(commas, ats)


def _check_parts(raw: bytes, top: int, limits: Limits) -> None:
    """Counts the parts and the nesting of multiparts, checking each part's header."""
    boundaries = {m.group(1) or m.group(2) for m in _BOUNDARY.finditer(raw)}
    if not boundaries:
        return
    if len(boundaries) > limits.max_mime_parts:
        raise _too_many_parts(len(boundaries), limits)
    parts = 0
    open_boundaries: list[bytes] = []  # an upper bound of the nesting: every declared, unclosed
    declared = iter(sorted((m.start(), m.group(1) or m.group(2)) for m in _BOUNDARY.finditer(raw)))
    pending = next(declared, None)
    for match in _DELIMITER.finditer(raw, top):
        while pending is not None and pending[0] < match.start():
            open_boundaries.append(pending[1])
            if len(open_boundaries) > limits.max_depth:
                raise MessageRefused(
                    f"Multiparts nested more than {limits.max_depth} deep; this proxy takes"
                    f" at most {limits.max_depth} (limit max_depth)"
                )
            pending = next(declared, None)
        line = match.group(1).rstrip(b" \t")
        closing = line.endswith(b"--") and line[:-2] in boundaries
        name = line[:-2] if closing else line
        if name not in boundaries:
            continue
        if name in open_boundaries:
            # A delimiter closes what is nested in its multipart; a closing one, that too.
            del open_boundaries[open_boundaries.index(name) + (not closing) :]
        if closing:
            continue
        parts += 1
        if parts > limits.max_mime_parts:
            raise _too_many_parts(parts, limits)
        _check_part_header(raw, match.end(), limits, parts)


def _check_part_header(raw: bytes, line_end: int, limits: Limits, number: int) -> None:
    start = raw.find(b"\n", line_end)
    if start < 0:
        return
    end = header_block(raw, start + 1)
    _check_size(end - start - 1, limits, f"Part {number}'s header")
    block = raw[start + 1 : end]
    check_header_block(block, limits, f"Part {number}'s header")
    if _EMBEDDED.search(block):
        # An enclosed message: its own header is parsed too.
        body = _HEADER_END.match(raw, end)
        if body is not None:
            inner_end = header_block(raw, body.end())
            _check_size(inner_end - body.end(), limits, f"Part {number}'s enclosed message header")
            inner = raw[body.end() : inner_end]
            check_header_block(inner, limits, f"Part {number}'s enclosed message header")


def check_parsed_lines(blobs: Blobs, limits: Limits) -> None:
    """Refuses a message whose lines the parser would read one by one past max_parsed_lines.

    Counted once the long runs of body lines are known (parsing.Blobs): those
    the parser takes whole cost it nothing per line.
    """
    allowed = limits.max_parsed_lines + len(blobs.raw) // PARSED_LINE_BYTES
    lines = blobs.parsed_lines()
    if lines > allowed:
        raise MessageRefused(
            f"The message has {lines} lines the parser reads one by one (headers,"
            " delimiters, and short lines among them); this proxy takes at most"
            f" {allowed} for its size (limit max_parsed_lines)"
        )


def _too_many_parts(count: int, limits: Limits) -> MessageRefused:
    return MessageRefused(
        f"The message has more than {limits.max_mime_parts} MIME parts ({count} so far);"
        " this proxy takes at most that many (limit max_mime_parts)"
    )


def _name(raw_name: bytes) -> str:
    text = raw_name.decode("ascii", "replace")[:60]
    return "-".join(word.capitalize() for word in text.split("-")) or "A header"

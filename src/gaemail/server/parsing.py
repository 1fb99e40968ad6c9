"""Reading untrusted mail with the standard library: its failures refused, its output checked.

The email package raises many exception types on malformed input; raised there,
they are the message's fault (a 400), raised anywhere else a proxy bug (a 500).
What it decodes may still hold CR, LF or NUL from an encoded word, or lone
surrogates from 8-bit bytes: `checked_text` refuses those before the Mail API
sees them.
"""

from __future__ import annotations

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
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED):
        parser.feed(bytes(view[start : start + _FEED]))
    return parser.close()


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

"""Comparing the parser's reading of a message with runs held aside to its own reading."""

from __future__ import annotations

from collections.abc import Callable
from email import policy
from email.message import Message
from functools import partial

from gaemail.server.parsing import Blobs, parse_bytes, raised_in_email_package


def _tree(msg: Message) -> list[object]:
    """Everything the parser decided about `msg`, part by part, comparable."""
    return [
        (
            part.get_content_type(),
            part.raw_items() and list(part.raw_items()),
            part._payload if not part.is_multipart() else len(part._payload),  # type: ignore[attr-defined]
            part.preamble,
            part.epilogue,
            [type(defect) for defect in part.defects],
        )
        for part in msg.walk()
    ]


def _parsed(parse: Callable[[], Message], restore: Callable[[Message], None]) -> object:
    """The tree of what `parse` gives, or the type the email package raised."""
    try:
        msg = parse()
        restore(msg)
        return _tree(msg)
    except Exception as exc:
        if not raised_in_email_package(exc):
            raise
        return type(exc)


def assert_held_aside_parse_is_the_same(raw: bytes) -> None:
    for parse_policy in (policy.compat32, policy.default):
        blobs = Blobs(raw, minimum=1)
        held_aside = _parsed(partial(blobs.parse, parse_policy), blobs.restore_all)
        assert held_aside == _parsed(partial(parse_bytes, raw, parse_policy), lambda _: None)

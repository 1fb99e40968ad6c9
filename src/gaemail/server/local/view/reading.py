"""Reading the outbox Maildir for the view: summaries, one message, its parts.  No Flask.

The Maildir is the record: the view keeps no copy of a message, only small
summaries of files it has read (a delivered file never changes), at most
SUMMARY_CACHE of them.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from typing import Any

from gaemail.server.local.mime import ENVELOPE_HEADER, LOCAL_ANNOTATIONS, MESSAGE_ID_HEADER

SUMMARY_CACHE = 5000
_SUBDIRS = ("new", "cur")
# A Maildir file name: no path separators, no leading dot.
_NAME = re.compile(r"[^/\0.][^/\0]*")


@dataclass(frozen=True)
class Summary:
    """One line of the outbox list."""

    id: str
    sender: str
    to: str
    subject: str
    date: str
    timestamp: float
    size: int
    attachments: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender,
            "to": self.to,
            "subject": self.subject,
            "date": self.date,
            "size": self.size,
            "attachments": self.attachments,
        }


@dataclass(frozen=True)
class Attachment:
    index: int
    filename: str
    content_type: str
    size: int
    content_id: str | None


@dataclass(frozen=True)
class Envelope:
    """What App Engine would deliver: to whom (Bcc included), and the local labels."""

    recipients: tuple[str, ...]
    bcc: tuple[str, ...]
    message_id: str | None


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def header_text(message: EmailMessage, name: str) -> str:
    """A header's decoded value, '' when absent or unreadable."""
    try:
        value = message.get(name)
    except (ValueError, TypeError, IndexError):
        return ""
    return "" if value is None else " ".join(str(value).split())


def attachments(message: EmailMessage) -> list[Attachment]:
    found = []
    for index, part in enumerate(message.iter_attachments()):
        payload = part.get_payload(decode=True)
        content_id = part.get("Content-ID")
        found.append(
            Attachment(
                index,
                part.get_filename() or f"part-{index}",
                part.get_content_type(),
                len(payload) if isinstance(payload, bytes) else 0,
                str(content_id).strip().strip("<>") if content_id else None,
            )
        )
    return found


def attachment_part(message: EmailMessage, index: int) -> EmailMessage | None:
    parts = list(message.iter_attachments())
    return parts[index] if 0 <= index < len(parts) else None


def part_by_content_id(message: EmailMessage, content_id: str) -> EmailMessage | None:
    for part in message.walk():
        value = part.get("Content-ID")
        if value and str(value).strip().strip("<>") == content_id:
            assert isinstance(part, EmailMessage)
            return part
    return None


def envelope(message: EmailMessage) -> Envelope:
    recipients = tuple(a for _, a in getaddresses([header_text(message, ENVELOPE_HEADER)]) if a)
    visible = {
        address.lower()
        for _, address in getaddresses([header_text(message, "To"), header_text(message, "Cc")])
    }
    bcc = tuple(a for a in recipients if a.lower() not in visible)
    return Envelope(recipients, bcc, header_text(message, MESSAGE_ID_HEADER) or None)


def body_text(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body((subtype,))
    if part is None:
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else None


def headers(message: EmailMessage) -> list[dict[str, Any]]:
    """Every header as written, each marked when it is a local annotation."""
    local = {name.lower() for name in LOCAL_ANNOTATIONS}
    rows = []
    for name in message:
        rows.append(
            {"name": name, "value": header_text(message, name), "local": name.lower() in local}
        )
    return rows


class Outbox:
    """The Maildir at `path`, read for the view."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._summaries: OrderedDict[str, Summary] = OrderedDict()

    def names(self) -> list[str]:
        """Every message's file name, newest first (names begin with the delivery time)."""
        found: list[str] = []
        for sub in _SUBDIRS:
            try:
                found += [n for n in os.listdir(self.path / sub) if _NAME.fullmatch(n)]
            except FileNotFoundError:
                continue
        return sorted(found, reverse=True)

    def file(self, name: str) -> Path | None:
        """The file of message `name`, None unless it is a message in new/ or cur/."""
        if not _NAME.fullmatch(name):
            return None
        for sub in _SUBDIRS:
            path = self.path / sub / name
            if path.is_file():
                return path
        return None

    def read(self, name: str) -> bytes | None:
        path = self.file(name)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None  # deleted meanwhile

    def message(self, name: str) -> EmailMessage | None:
        data = self.read(name)
        return None if data is None else parse(data)

    def summaries(self, limit: int | None = None) -> list[Summary]:
        """The newest `limit` messages' summaries (all without a limit), newest first."""
        found = []
        for name in self.names()[:limit]:
            summary = self.summary(name)
            if summary is not None:
                found.append(summary)
        return found

    def summary(self, name: str) -> Summary | None:
        with self._lock:
            cached = self._summaries.get(name)
        if cached is not None:
            return cached
        data = self.read(name)
        if data is None:
            return None
        summary = _summarize(name, parse(data), len(data))
        with self._lock:
            self._summaries[name] = summary
            while len(self._summaries) > SUMMARY_CACHE:
                self._summaries.popitem(last=False)
        return summary

    def delete(self, name: str) -> bool:
        path = self.file(name)
        if path is None:
            return False
        path.unlink(missing_ok=True)
        with self._lock:
            self._summaries.pop(name, None)
        return True

    def clear(self) -> int:
        return sum(self.delete(name) for name in self.names())

    def state(self) -> str:
        """A tag that changes whenever a message arrives or leaves."""
        names = self.names()
        return f"{len(names)}-{names[0] if names else ''}"


def _summarize(name: str, message: EmailMessage, size: int) -> Summary:
    date = header_text(message, "Date")
    try:
        timestamp = parsedate_to_datetime(date).timestamp() if date else 0.0
    except (TypeError, ValueError):
        timestamp = 0.0
    return Summary(
        id=name,
        sender=header_text(message, "From"),
        to=header_text(message, "To"),
        subject=header_text(message, "Subject"),
        date=date,
        timestamp=timestamp,
        size=size,
        attachments=len(list(message.iter_attachments())),
    )

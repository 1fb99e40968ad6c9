"""RFC 2822 bytes to the keyword arguments of the Mail API's EmailMessage.  No I/O.

The SDK's own parser (`EmailMessage(mime_message=...)`) drops the headers the
API allows and garbles 8-bit bodies, so the message is parsed here with the
standard library and each field handed over already decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email import errors, policy
from email.message import Message, MIMEPart
from email.parser import BytesParser
from email.utils import formataddr, getaddresses
from typing import Any, TypedDict

from google.appengine.api import mail

from gaemail import protocol
from gaemail.server.refusals import MessageRefused

# The SDK checks header names case-sensitively against its whitelist.
_ALLOWED_HEADERS = {name.lower(): name for name in mail.HEADER_WHITELIST}

# Defects after which the parsed message no longer says what the sender meant.
_FATAL_DEFECTS = (
    errors.MissingHeaderBodySeparatorDefect,
    errors.NoBoundaryInMultipartDefect,
    errors.StartBoundaryNotFoundDefect,
)

# Where EXTENSION_MIME_MAP gives several extensions for a type, the usual one.
_PREFERRED_EXTENSIONS = {
    "text/plain": "txt",
    "text/html": "html",
    "image/jpeg": "jpg",
    "video/mpeg": "mpg",
    "audio/ogg": "ogg",
    "application/vnd.ms-powerpoint": "ppt",
}


def _extensions_by_type() -> dict[str, str]:
    extensions: dict[str, str] = {}
    for extension, mime_type in mail.EXTENSION_MIME_MAP.items():
        extensions.setdefault(mime_type, extension)
    return extensions | _PREFERRED_EXTENSIONS


_EXTENSIONS = _extensions_by_type()


class MailFields(TypedDict, total=False):
    """Keyword arguments for google.appengine.api.mail.EmailMessage; `sender` is always set."""

    sender: str
    to: list[str]
    cc: list[str]
    bcc: list[str]
    reply_to: str
    subject: str
    body: str
    html: str
    attachments: list[Any]  # mail.Attachment
    headers: dict[str, str]


@dataclass(frozen=True)
class Translation:
    """A message ready for the Mail API, and what the proxy logs about it."""

    fields: MailFields
    message_id: str | None

    @property
    def recipient_count(self) -> int:
        fields = self.fields
        return len(fields.get("to", [])) + len(fields.get("cc", [])) + len(fields.get("bcc", []))


def translate_message(raw: bytes, *, fallback_sender: str | None = None) -> Translation:
    """The EmailMessage fields for `raw`; raises MessageRefused when it cannot be sent.

    `fallback_sender` is used when the message has no From.
    """
    msg = parse_message(raw)
    fields = MailFields(sender=_sender(msg, fallback_sender))
    to, cc, bcc = (_addresses(msg, header) for header in ("To", "Cc", "Bcc"))
    if not (to or cc or bcc):
        raise MessageRefused("No recipients: the message has no To, Cc or Bcc address")
    # The SDK refuses empty lists, so a field is either filled or absent.
    if to:
        fields["to"] = to
    if cc:
        fields["cc"] = cc
    if bcc:
        fields["bcc"] = bcc
    reply_to = _addresses(msg, "Reply-To")
    if reply_to:
        fields["reply_to"] = ", ".join(reply_to)
    if "Subject" in msg:
        fields["subject"] = str(msg["Subject"])
    _add_contents(fields, msg)
    headers = _allowed_headers(msg)
    if headers:
        fields["headers"] = headers
    message_id = str(msg.get("Message-ID", "")).strip()
    return Translation(fields, message_id or None)


def parse_message(raw: bytes) -> MIMEPart:
    """`raw` parsed with the modern policy; raises MessageRefused for a broken structure."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    if not msg.keys():
        raise MessageRefused("Cannot parse the message: it has no header section")
    for part in _parts(msg):
        for defect in part.defects:
            if isinstance(defect, _FATAL_DEFECTS):
                raise MessageRefused(f"Cannot parse the message: {_describe_defect(defect)}")
    return msg


def _describe_defect(defect: errors.MessageDefect) -> str:
    if isinstance(defect, errors.MissingHeaderBodySeparatorDefect):
        return "a header line is malformed or the blank line after the headers is missing"
    return str(defect) or type(defect).__name__


def _parts(part: MIMEPart) -> Iterator[MIMEPart]:
    """`part` and everything inside it, not descending into enclosed messages."""
    yield part
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        for subpart in part.iter_parts():
            yield from _parts(subpart)


def _sender(msg: MIMEPart, fallback: str | None) -> str:
    senders = _addresses(msg, "From")
    if senders:
        return senders[0]
    if fallback:
        return fallback
    raise MessageRefused(protocol.REASON_NO_SENDER)


def _addresses(msg: MIMEPart, header: str) -> list[str]:
    """Each address in every `header` field, formatted on its own.

    The SDK splits a string of addresses at every comma, so a display name such
    as "Doe, John" must reach it as one list item.
    """
    values = [str(value) for value in msg.get_all(header, [])]
    try:
        return [formataddr(pair) for pair in getaddresses(values) if pair[1]]
    except UnicodeEncodeError:
        raise MessageRefused(f"{header}: the Mail API takes ASCII addresses only") from None


def _allowed_headers(msg: MIMEPart) -> dict[str, str]:
    """The headers the Mail API accepts, in its spelling; the first of each wins."""
    headers: dict[str, str] = {}
    for name, value in msg.items():
        canonical = _ALLOWED_HEADERS.get(name.lower())
        if canonical and canonical not in headers and str(value):
            headers[canonical] = str(value)
    return headers


def _add_contents(fields: MailFields, msg: MIMEPart) -> None:
    text_part = msg.get_body(("plain",))
    html_part = msg.get_body(("html",))
    body = _text(text_part) if text_part is not None else None
    html = _text(html_part) if html_part is not None else None
    if body is None and not html:
        raise MessageRefused("No body: the message has no text/plain or text/html part")
    if body is not None:
        fields["body"] = body
    if html:
        fields["html"] = html
    bodies = [part for part in (text_part, html_part) if part is not None]
    attachments = _attachments(msg, bodies)
    if attachments:
        fields["attachments"] = attachments


def _text(part: MIMEPart) -> str:
    if part.get_content_charset() is None:
        # No charset (mailutils, many scripts): RFC 2045 says ASCII, but an 8-bit
        # body is UTF-8 far more often than not, and latin-1 never fails.
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes) and not raw.isascii():
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
    try:
        content = part.get_content()
    except LookupError:
        charset = part.get_content_charset()
        raise MessageRefused(f"Unknown charset {charset!r} in a text part") from None
    return str(content)


def _attachments(msg: MIMEPart, bodies: list[MIMEPart]) -> list[Any]:
    attachments: list[Any] = []
    for part in _parts(msg):
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            continue
        if any(part is body for body in bodies):
            continue
        filename = part.get_filename() or _default_filename(part, len(attachments) + 1)
        content_id = str(part.get("Content-ID", "")).strip() or None
        attachments.append(mail.Attachment(filename, _data(part), content_id=content_id))
    return attachments


def _default_filename(part: MIMEPart, number: int) -> str:
    """A name for an unnamed part: the Mail API derives the MIME type from it."""
    content_type = part.get_content_type()
    extension = _EXTENSIONS.get(content_type)
    if extension is None:
        raise MessageRefused(
            f"Attachment {number} ({content_type}) has no file name, and the Mail API"
            " knows no file extension for its type: name the attachment"
        )
    return f"attachment{number}.{extension}"


def _data(part: MIMEPart) -> bytes:
    if part.is_multipart():  # message/rfc822 and kin: the enclosed message itself
        return b"".join(m.as_bytes() for m in part.get_payload() if isinstance(m, Message))
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""

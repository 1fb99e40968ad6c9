"""A sent MailMessage as the Mail API would deliver it: the SDK's one conversion, tidied.

The SDK's `mail_message_to_mime_message` always wraps the body in
multipart/mixed and labels ASCII text us-ascii.  Here a message without
attachments is its body part alone, and text is labelled UTF-8 (ASCII is UTF-8),
as the manual page promises.  Bcc leaves the headers; every recipient goes into
X-Envelope-To and the client's Message-ID into X-Gaemail-Message-Id: local
annotations, which App Engine does not add (the README and the outbox view say so).
"""

from __future__ import annotations

from email import encoders
from email.message import Message
from email.utils import formatdate, getaddresses
from typing import Any

from google.appengine.api import mail

from gaemail.server.local.rules import MAX_LINE, bare_address

ENVELOPE_HEADER = "X-Envelope-To"
MESSAGE_ID_HEADER = "X-Gaemail-Message-Id"
LOCAL_ANNOTATIONS = (ENVELOPE_HEADER, MESSAGE_ID_HEADER)
_BODY_HEADERS = ("content-type", "mime-version", "content-transfer-encoding")
# The text fields in the order of the SDK's parts, with their subtypes.
_TEXTS = {"TextBody": "plain", "AmpHtmlBody": "x-amp-html", "HtmlBody": "html"}
_LINE_CHUNK = 1 << 18  # characters searched for a long line at a time


def outbox_message(request: Any, message_id: str | None) -> Message:
    """The message written to the outbox for a sent MailMessage protobuf.

    The SDK's conversion of the whole texts: what outbox_parts and
    flatten.Flattened write is checked against it.
    """
    texts = [(name, getattr(request, name)) for name in _TEXTS if request.HasField(name)]
    mime, _, attached = _converted(_without_attachment_data(request), request, texts, message_id)
    for part, data in zip(attached, request.Attachment, strict=True):
        part.set_payload(data.Data)  # as the SDK's conversion sets it
        # The SDK leaves attachment bytes raw, with no transfer encoding, which
        # no file or transport keeps intact.
        encoders.encode_base64(part)
    return mime


def outbox_parts(
    request: Any, message_id: str | None
) -> tuple[Message, list[tuple[Message, str | bytes]]]:
    """outbox_message's message with empty text and attachment parts, each paired with its contents.

    For writing the outbox file with each part's payload made as it is written
    (flatten.Flattened): a text part with its text, an attachment part, its
    header saying base64 as encode_base64 would, with its bytes.  The SDK
    converts a copy of the request whose texts are stand-ins, ASCII or not as
    the texts are, so that it chooses the same charset and encoding, and whose
    attachments have no data: MIMEText would hold a text several times over
    as it encodes it, and set_payload attachment bytes as a str, twice their
    size once any byte is >= 0x80.
    """
    texts = [(name, getattr(request, name)) for name in _TEXTS if request.HasField(name)]
    stand_ins = {name: "" if text.isascii() else "\N{EURO SIGN}" for name, text in texts}
    copy = _skeleton(request, stand_ins)
    mime, text_parts, attached = _converted(copy, request, texts, message_id)
    carried: list[tuple[Message, str | bytes]] = []
    for part, (_, text) in zip(text_parts, texts, strict=True):
        part.set_payload("")
        carried.append((part, text))
    for part, attachment in zip(attached, request.Attachment, strict=True):
        part["Content-Transfer-Encoding"] = "base64"
        carried.append((part, attachment.Data))
    return mime, carried


def _converted(
    copy: Any, request: Any, texts: list[tuple[str, str | bytes]], message_id: str | None
) -> tuple[Message, list[Message], list[Message]]:
    """The SDK's conversion of `copy` (of `request`), tidied; with its text and attachment parts.

    The SDK's conversion has a known shape: multipart/mixed holding the body
    (one text part, or multipart/alternative) and then one part per attachment,
    in the request's order; that shape is used here rather than rediscovered.
    `texts` are the request's, which decide the text parts' labels.
    """
    mime: Message = mail.mail_message_to_mime_message(copy)
    if request.Bcc:
        del mime["Bcc"]
    if not request.ReplyTo:
        del mime["Reply-To"]  # the SDK writes an empty one
    parts: list[Message] = mime.get_payload()  # type: ignore[assignment]
    body, *attached = parts
    text_parts: list[Message] = body.get_payload() if body.is_multipart() else [body]  # type: ignore[assignment]
    for part, (name, text) in zip(text_parts, texts, strict=True):
        _label_utf8(part, text, _TEXTS[name])
    if not attached:
        mime = _unwrapped(mime, body)
    mime["Date"] = formatdate(localtime=True)
    mime[ENVELOPE_HEADER] = ", ".join(envelope_recipients(request))
    if message_id:
        mime[MESSAGE_ID_HEADER] = message_id
    return mime, text_parts, attached


def _without_attachment_data(request: Any) -> Any:
    """A copy of the MailMessage whose attachments have names but no data."""
    copy = type(request)()
    copy.CopyFrom(request)
    for attachment in copy.Attachment:
        attachment.ClearField("Data")
    return copy


def _skeleton(request: Any, texts: dict[str, str]) -> Any:
    """A copy of the MailMessage with `texts` for its texts, and attachments without data.

    Made field by field, reading neither texts nor data: CopyFrom would copy
    both, only for them to be cleared.
    """
    copy = _copy_without(request, {*_TEXTS, "Attachment"})
    for name, text in texts.items():
        setattr(copy, name, text)
    copy.Attachment.extend(_copy_without(a, {"Data"}) for a in request.Attachment)
    return copy


def _copy_without(message: Any, names: set[str]) -> Any:
    """A copy of a protobuf message of scalar and repeated fields, without the fields `names`."""
    copy = type(message)()
    for field in message.DESCRIPTOR.fields:
        if field.name in names:
            continue
        if field.is_repeated:
            getattr(copy, field.name).extend(getattr(message, field.name))
        elif message.HasField(field.name):
            setattr(copy, field.name, getattr(message, field.name))
    return copy


def _unwrapped(mixed: Message, body: Message) -> Message:
    """`body` with the message headers of its multipart/mixed wrapper."""
    for name, value in mixed.items():
        if name.lower() not in _BODY_HEADERS:
            body[name] = value
    return body


def _label_utf8(part: Message, text: str | bytes, subtype: str) -> None:
    """Label ASCII text UTF-8; 7bit text with over-long lines becomes quoted-printable.

    The SDK chose us-ascii and 7bit exactly when the text is ASCII.  A text
    the protobuf could not decode as UTF-8 comes as bytes, never ASCII, and
    the SDK base64-encodes it as it is.
    """
    if isinstance(text, bytes) or not text.isascii():
        return
    part.replace_header("Content-Type", f'text/{subtype}; charset="utf-8"')
    if len(text) > MAX_LINE and has_long_line(text):
        del part["Content-Transfer-Encoding"]
        encoders.encode_quopri(part)


def has_long_line(text: str) -> bool:
    """Whether ASCII `text` has a line of over MAX_LINE characters (CRLF, CR and LF end lines).

    What searching for [^\\r\\n]{999} answers, in one pass: the regex tries
    again from each character of a line, ~2 s for a 25 MB text of short lines.
    """
    run = 0  # the length of the line left open by the last piece
    for start in range(0, len(text), _LINE_CHUNK):
        piece = text[start : start + _LINE_CHUNK].encode("ascii")
        lengths = [len(line) for line in piece.splitlines()]  # bytes: CR, LF and CRLF only
        lengths[0] += run
        run = 0 if piece.endswith((b"\r", b"\n")) else lengths.pop()
        if run > MAX_LINE or max(lengths, default=0) > MAX_LINE:
            return True
    return False


def envelope_recipients(request: Any) -> list[str]:
    """The bare address of every To, Cc and Bcc recipient of a MailMessage."""
    found = []
    for entry in (*request.To, *request.Cc, *request.Bcc):
        address = bare_address(entry)
        if address is None:  # not checked (LocalRules(strict=False)): as the parser reads it
            found += [a for _, a in getaddresses([entry]) if a]
        else:
            found.append(address)
    return found

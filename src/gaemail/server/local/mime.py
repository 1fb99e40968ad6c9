"""A sent MailMessage as the Mail API would deliver it: the SDK's one conversion, tidied.

The SDK's `mail_message_to_mime_message` always wraps the body in
multipart/mixed and labels ASCII text us-ascii.  Here a message without
attachments is its body part alone, and text is labelled UTF-8 (ASCII is UTF-8),
as the manual page promises.  Bcc leaves the headers; every recipient goes into
X-Envelope-To and the client's Message-ID into X-Gaemail-Message-Id: local
annotations, which App Engine does not add (the README and the outbox view say so).
"""

from __future__ import annotations

import re
from email import encoders
from email.message import Message
from email.utils import formatdate, getaddresses
from typing import Any

from google.appengine.api import mail

from gaemail.server.local.rules import MAX_LINE, bare_address

ENVELOPE_HEADER = "X-Envelope-To"
MESSAGE_ID_HEADER = "X-Gaemail-Message-Id"
LOCAL_ANNOTATIONS = (ENVELOPE_HEADER, MESSAGE_ID_HEADER)
_LONG_LINE = re.compile(rf"[^\r\n]{{{MAX_LINE + 1}}}")
_BODY_HEADERS = ("content-type", "mime-version", "content-transfer-encoding")


def outbox_message(request: Any, message_id: str | None) -> Message:
    """The message written to the outbox for a sent MailMessage protobuf."""
    mime, attached = outbox_parts(request, message_id)
    for part, data in attached:
        part.set_payload(data)  # as the SDK's conversion sets it
        # The SDK leaves attachment bytes raw, with no transfer encoding, which
        # no file or transport keeps intact.
        encoders.encode_base64(part)
    return mime


def outbox_parts(
    request: Any, message_id: str | None
) -> tuple[Message, list[tuple[Message, bytes]]]:
    """outbox_message's message with empty attachment parts, each paired with its bytes.

    For writing the outbox file with the base64 made as it is written
    (flatten.Flattened).  The SDK converts the message without the attachments'
    data: its part would hold them as a str (set_payload decodes bytes with
    surrogateescape), twice their size once any byte is >= 0x80.

    The SDK's conversion has a known shape: multipart/mixed holding the body
    (one text part, or multipart/alternative) and then one part per attachment,
    in the request's order; that shape is used here rather than rediscovered.
    """
    mime: Message = mail.mail_message_to_mime_message(_without_attachment_data(request))
    if request.Bcc:
        del mime["Bcc"]
    if not request.ReplyTo:
        del mime["Reply-To"]  # the SDK writes an empty one
    parts: list[Message] = mime.get_payload()  # type: ignore[assignment]
    body, *attached = parts
    texts = [request.TextBody, request.AmpHtmlBody, request.HtmlBody]
    subtypes = ["plain", "x-amp-html", "html"]
    present = [i for i, field in enumerate(("TextBody", "AmpHtmlBody", "HtmlBody"))
               if request.HasField(field)]  # fmt: skip
    text_parts: list[Message] = body.get_payload() if body.is_multipart() else [body]  # type: ignore[assignment]
    for i, part in zip(present, text_parts, strict=True):
        _label_utf8(part, texts[i], subtypes[i])
    if not attached:
        mime = _unwrapped(mime, body)
    mime["Date"] = formatdate(localtime=True)
    mime[ENVELOPE_HEADER] = ", ".join(envelope_recipients(request))
    if message_id:
        mime[MESSAGE_ID_HEADER] = message_id
    return mime, [(part, a.Data) for part, a in zip(attached, request.Attachment, strict=True)]


def _without_attachment_data(request: Any) -> Any:
    """A copy of the MailMessage whose attachments have names but no data."""
    copy = type(request)()
    copy.CopyFrom(request)
    for attachment in copy.Attachment:
        attachment.ClearField("Data")
    return copy


def _unwrapped(mixed: Message, body: Message) -> Message:
    """`body` with the message headers of its multipart/mixed wrapper."""
    for name, value in mixed.items():
        if name.lower() not in _BODY_HEADERS:
            body[name] = value
    return body


def _label_utf8(part: Message, text: str, subtype: str) -> None:
    """Label ASCII text UTF-8; 7bit text with over-long lines becomes quoted-printable.

    The SDK chose us-ascii and 7bit exactly when the text is ASCII.
    """
    if not text.isascii():
        return
    part.replace_header("Content-Type", f'text/{subtype}; charset="utf-8"')
    if len(text) > MAX_LINE and _LONG_LINE.search(text):
        del part["Content-Transfer-Encoding"]
        encoders.encode_quopri(part)


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

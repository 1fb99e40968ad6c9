"""RFC 2822 bytes to the keyword arguments of the Mail API's EmailMessage.  No I/O.

The SDK's own parser (`EmailMessage(mime_message=...)`) drops the headers the
API allows and garbles 8-bit bodies, so the message is parsed here with the
standard library and each field handed over already decoded.

What a header or a part means is what `email.policy.default` says.  That policy
parses a header into a token tree every time it is read, which made it most of
the proxy's work, so a message whose MIME headers are all plain (tokens and
quoted strings, as nearly all mail has) is parsed with compat32, which keeps
headers as raw strings, and only the headers the Mail API takes are decoded, by
`decoded_header`.  Any other message is read with the modern policy throughout.
tests/test_translate.py checks that both readings give the same translation.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import errors, policy
from email.contentmanager import raw_data_manager
from email.message import EmailMessage, Message
from email.utils import parseaddr
from typing import Any, TypedDict, cast

from google.appengine.api import mail

from gaemail import protocol
from gaemail.server.addresses import read_addresses
from gaemail.server.config import Limits
from gaemail.server.headers import decoded_header
from gaemail.server.limits import check_parsed_lines
from gaemail.server.parsing import (
    NON_ASCII,
    SURROGATE,
    Blobs,
    checked_text,
    header_name,
    parse_bytes,
    parser_errors_refused,
    raised_in_email_package,
)
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
DEFAULT_LIMITS = Limits()


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


def translate_message(
    raw: bytes,
    *,
    fallback_sender: str | None = None,
    envelope: tuple[str, ...] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Translation:
    """The EmailMessage fields for `raw`; raises MessageRefused when it cannot be sent.

    `fallback_sender` is used when the message has no From.  With `envelope`
    (v2), the message goes to exactly those addresses: To and Cc keep the ones
    they name, every other one is a Bcc, and a header address outside the
    envelope is left out.
    """
    with parser_errors_refused():
        blobs = Blobs(raw)
        check_parsed_lines(blobs, limits)
        plain = _parse_plain(blobs)
        if plain is None:
            msg = blobs.parse(policy.default)
            return _translate(msg, MODERN, blobs, fallback_sender, envelope)
        return _translate(plain, PLAIN, blobs, fallback_sender, envelope)


def translate_modern(raw: bytes, *, fallback_sender: str | None = None) -> Translation:
    """translate_message's answer, reading `raw` with the modern policy alone: the reference.

    Nothing is held aside: the parser reads every line itself.
    """
    with parser_errors_refused():
        msg = parse_bytes(raw, policy.default)
        return _translate(msg, MODERN, Blobs(raw, minimum=0), fallback_sender, None)


@dataclass(frozen=True)
class Reading:
    """How a parsed message is read: what a header says, which part is a body."""

    decode: Callable[[str, str], str]  # (name, raw value) -> str() of the modern header
    body: Callable[[Message, str], Message | None]  # (message, "plain"/"html") -> part


def _modern_decode(name: str, raw: str) -> str:
    return str(policy.default.header_fetch_parse(name, raw))


def _modern_body(msg: Message, subtype: str) -> Message | None:
    assert isinstance(msg, EmailMessage)
    return msg.get_body((subtype,))


# For messages parsed with email.policy.default, which can mean anything.
MODERN = Reading(_modern_decode, _modern_body)


def _translate(
    msg: Message,
    reading: Reading,
    blobs: Blobs,
    fallback_sender: str | None,
    envelope: tuple[str, ...] | None = None,
) -> Translation:
    _check_structure(msg)
    fields = MailFields(sender=_sender(msg, reading, fallback_sender))
    to, cc, bcc = (_addresses(msg, reading, header) for header in ("To", "Cc", "Bcc"))
    if envelope is not None:
        to, cc, bcc = _to_envelope(envelope, to, cc)
    if not (to or cc or bcc):
        raise MessageRefused("No recipients: the message has no To, Cc or Bcc address")
    # The SDK refuses empty lists, so a field is either filled or absent.
    if to:
        fields["to"] = to
    if cc:
        fields["cc"] = cc
    if bcc:
        fields["bcc"] = bcc
    reply_to = _addresses(msg, reading, "Reply-To")
    if reply_to:
        fields["reply_to"] = ", ".join(reply_to)
    subjects = _header_values(msg, reading, "Subject")
    if subjects:
        fields["subject"] = subjects[0]
    _add_contents(fields, msg, reading, blobs)
    headers = _allowed_headers(msg, reading)
    if headers:
        fields["headers"] = headers
    message_ids = _header_values(msg, reading, "Message-ID")
    message_id = message_ids[0].strip() if message_ids else ""
    return Translation(fields, message_id or None)


def _to_envelope(
    envelope: tuple[str, ...], to: list[str], cc: list[str]
) -> tuple[list[str], list[str], list[str]]:
    """To, Cc and Bcc lists that reach exactly the envelope's recipients."""
    wanted = {address.lower() for address in envelope}
    kept_to = [item for item in to if _bare(item) in wanted]
    kept_cc = [item for item in cc if _bare(item) in wanted]
    shown = {_bare(item) for item in kept_to + kept_cc}
    bcc = [address for address in envelope if address.lower() not in shown]
    return kept_to, kept_cc, bcc


def _bare(formatted: str) -> str:
    return parseaddr(formatted)[1].lower()


def _check_structure(msg: Message) -> None:
    """Raises MessageRefused for a message whose structure is broken."""
    if not msg.keys():
        raise MessageRefused("Cannot parse the message: it has no header section")
    for part in _parts(msg):
        for defect in part.defects:
            if isinstance(defect, _FATAL_DEFECTS):
                raise MessageRefused(f"Cannot parse the message: {_describe_defect(defect)}")


def _describe_defect(defect: errors.MessageDefect) -> str:
    if isinstance(defect, errors.MissingHeaderBodySeparatorDefect):
        return "a header line is malformed or the blank line after the headers is missing"
    return str(defect) or type(defect).__name__


def _parts(part: Message) -> Iterator[Message]:
    """`part` and everything inside it, not descending into enclosed messages."""
    yield part
    if part.get_content_maintype() == "multipart" and part.is_multipart():
        for subpart in _subparts(part):
            yield from _parts(subpart)


def _subparts(part: Message) -> list[Message]:
    """The parts of a multipart, as EmailMessage.iter_parts() gives them."""
    return cast("list[Message]", part.get_payload()) if part.is_multipart() else []


def _header_values(msg: Message, reading: Reading, name: str) -> list[str]:
    """Every `name` field of `msg`, decoded: [str(v) for v in msg.get_all(name)]."""
    key = name.lower()
    return [_decode(reading, field, raw) for field, raw in msg.raw_items() if field.lower() == key]


def _decode(reading: Reading, name: str, raw: str) -> str:
    """One header decoded and checked safe for the Mail API, else MessageRefused naming it."""
    try:
        value = reading.decode(name, raw)
    except Exception as exc:  # the header parser raises many types on malformed input
        if not raised_in_email_package(exc):
            raise
        raise MessageRefused(
            f"{header_name(name)}: cannot be read ({type(exc).__name__} in the header parser)"
        ) from None
    return checked_text(header_name(name), value)


def _sender(msg: Message, reading: Reading, fallback: str | None) -> str:
    try:
        senders = _addresses(msg, reading, "From")
    except MessageRefused:
        if not fallback:
            raise
        # fix_sender: a From that is no address (cron's bare `root (Cron Daemon)`)
        # is replaced as a refused sender is.
        senders = []
    if senders:
        return senders[0]
    if fallback:
        return fallback
    raise MessageRefused(protocol.REASON_NO_SENDER)


def _addresses(msg: Message, reading: Reading, header: str) -> list[str]:
    """Each address in every `header` field, formatted on its own; none left out."""
    key = header.lower()
    raw_values = [raw for name, raw in msg.raw_items() if name.lower() == key]
    return read_addresses(header, raw_values, lambda item: _decode(reading, header, item))


def _allowed_headers(msg: Message, reading: Reading) -> dict[str, str]:
    """The headers the Mail API accepts, in its spelling; the first of each wins.

    Only those are decoded: the rest never reach the Mail API.
    """
    headers: dict[str, str] = {}
    for name, raw in msg.raw_items():
        canonical = _ALLOWED_HEADERS.get(name.lower())
        if canonical and canonical not in headers:
            value = _decode(reading, name, raw)
            if value:
                headers[canonical] = value
    return headers


def _add_contents(fields: MailFields, msg: Message, reading: Reading, blobs: Blobs) -> None:
    text_part = reading.body(msg, "plain")
    html_part = reading.body(msg, "html")
    body = _text(text_part, blobs) if text_part is not None else None
    html = _text(html_part, blobs) if html_part is not None else None
    if body is None and not html:
        raise MessageRefused("No body: the message has no text/plain or text/html part")
    if body is not None:
        fields["body"] = body
    if html:
        fields["html"] = html
    bodies = [part for part in (text_part, html_part) if part is not None]
    attachments = _attachments(msg, reading, bodies, blobs)
    if attachments:
        fields["attachments"] = attachments


# Transfer encodings that leave the bytes as they are (get_payload(decode=True)).
_IDENTITY_ENCODINGS = {"", "7bit", "8bit", "binary"}


def _text(part: Message, blobs: Blobs) -> str:
    run = None
    declared = part.get_param("charset", "ASCII")
    identity = str(part.get("Content-Transfer-Encoding", "")).lower() in _IDENTITY_ENCODINGS
    if identity and isinstance(declared, str):
        run = blobs.run_of(part)  # the decoded payload is the run's bytes as they are
    if run is None:
        blobs.restore(part)
    charset = part.get_content_charset()
    if charset is None:
        # No charset (mailutils, many scripts): RFC 2045 says ASCII, but an 8-bit
        # body is UTF-8 far more often than not, and latin-1 never fails.
        raw = part.get_payload(decode=True) if run is None else run
        if isinstance(raw, bytes | memoryview) and NON_ASCII.search(raw):
            try:
                return str(raw, "utf-8")
            except UnicodeDecodeError:
                return str(raw, "latin-1")
    try:
        # What EmailMessage.get_content() does, for either kind of message.
        if run is None:
            content = raw_data_manager.get_content(part)
        else:  # raw_data_manager's get_text_content, on the run
            content = str(run, str(declared), "replace")
    except (LookupError, UnicodeError, ValueError) as exc:
        # An unknown name, a codec that cannot decode (idna, punycode), a NUL in the name.
        charset = part.get_content_charset()
        what = "Unknown charset" if isinstance(exc, LookupError) else "Unusable charset"
        raise MessageRefused(f"{what} {str(charset)[:60]!r} in a text part") from None
    text = str(content)
    if SURROGATE.search(text):
        raise MessageRefused("A text part holds bytes its charset cannot decode")
    return text


def _attachments(msg: Message, reading: Reading, bodies: list[Message], blobs: Blobs) -> list[Any]:
    attachments: list[Any] = []
    for part in _parts(msg):
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            continue
        if any(part is body for body in bodies):
            continue
        number = len(attachments) + 1
        filename = part.get_filename() or _default_filename(part, number)
        checked_text(f"Attachment {number}'s file name", filename)
        content_ids = _header_values(part, reading, "Content-ID")
        content_id = content_ids[0].strip() if content_ids else ""
        attachments.append(
            mail.Attachment(filename, _data(part, blobs), content_id=content_id or None)
        )
    return attachments


def _default_filename(part: Message, number: int) -> str:
    """A name for an unnamed part: the Mail API derives the MIME type from it.

    The Mail API knows no type of enclosed message and few of text: a forwarded
    message, a delivery report or the headers of a returned message (the parts
    of every bounce Exim writes) travel as text attachments, their text intact,
    rather than not at all.
    """
    content_type = part.get_content_type()
    extension = _EXTENSIONS.get(content_type)
    if extension is None and part.get_content_maintype() in ("message", "text"):
        extension = "txt"
    if extension is None:
        raise MessageRefused(
            f"Attachment {number} ({content_type}) has no file name, and the Mail API"
            " knows no file extension for its type: name the attachment"
        )
    return f"attachment{number}.{extension}"


def _data(part: Message, blobs: Blobs) -> bytes:
    if part.is_multipart():  # message/rfc822 and kin: the enclosed message itself
        blobs.restore_all(part)
        return b"".join(m.as_bytes() for m in part.get_payload() if isinstance(m, Message))
    base64 = part.get("Content-Transfer-Encoding", "").strip().lower() == "base64"
    if base64:
        held = blobs.base64_data(part)  # an attachment read from the message as it is
        if held is not None:
            return held
    blobs.restore(part)
    # As parsed: get_payload() would decode 8-bit text by the part's charset,
    # and some codecs (punycode) raise on it.
    payload = part._payload  # type: ignore[attr-defined]
    if isinstance(payload, str) and base64:
        # get_payload(decode=True) splits the payload into lines and joins them
        # again: three copies of a large attachment where the decoder needs one.
        # When the decoder accepts the payload as it is, the result is the same.
        try:
            return binascii.a2b_base64(payload)  # takes ASCII text as it is: no copy
        except (binascii.Error, ValueError):
            pass  # odd padding or bytes: the email package's lenient decoder decides
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


# --- The plain reading: compat32, for messages whose MIME headers are plain. ---

# An RFC 2045 token; parameter names without "*", so RFC 2231 forms go to the
# modern reading, as do comments, encoded words and 8-bit bytes.
_WORD = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_ATTRIBUTE = r"[!#$%&'+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"[ !#-\[\]-~]*"'
_WS = r"[ \t\r\n]*"
_PARAMS = rf"(?:{_WS};{_WS}{_ATTRIBUTE}{_WS}={_WS}(?:{_WORD}|{_QUOTED}))*{_WS}"
_PLAIN_MIME_HEADERS = {
    "content-type": re.compile(rf"{_WS}{_WORD}/{_WORD}{_PARAMS}"),
    "content-disposition": re.compile(rf"{_WS}{_WORD}{_PARAMS}"),
    "content-transfer-encoding": re.compile(rf"{_WS}{_WORD}{_WS}"),
}


def _parse_plain(blobs: Blobs) -> Message | None:
    """The message parsed with compat32 when every part's MIME headers are plain, else None.

    With plain MIME headers, compat32 and the modern policy take every decision
    of the parse (content types, boundaries) alike, so both build the same tree.
    """
    try:
        msg = blobs.parse(policy.compat32)
    except Exception:  # whatever failed here, the modern reading decides
        return None
    for part in msg.walk():
        for name, value in part.raw_items():
            pattern = _PLAIN_MIME_HEADERS.get(name.lower())
            if pattern is not None and (not pattern.fullmatch(value) or "=?" in value):
                return None  # "=?": the modern policy decodes encoded words in parameters
        if part.get_content_maintype() == "message":
            return None  # enclosed messages are written back with the modern policy
        if part.get_content_type() == "multipart/related" and part.get_param("start"):
            return None
    return msg


def _plain_body(msg: Message, subtype: str) -> Message | None:
    """EmailMessage.get_body((subtype,)) for a message from _parse_plain."""
    return next(_plain_bodies(msg, msg, subtype), None)


def _plain_bodies(root: Message, part: Message, subtype: str) -> Iterator[Message]:
    # email.message.MIMEPart._find_body, for one preferred subtype.
    if part.get_content_disposition() == "attachment":
        return
    maintype, part_subtype = part.get_content_type().split("/")
    if maintype == "text":
        if part_subtype == subtype:
            yield part
        return
    if maintype != "multipart" or not root.is_multipart():
        return
    subparts = _subparts(part)
    if part_subtype == "related":
        subparts = subparts[:1]  # its root part: no start parameter names another
    for subpart in subparts:
        yield from _plain_bodies(root, subpart, subtype)


PLAIN = Reading(decoded_header, _plain_body)

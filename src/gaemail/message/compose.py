"""From what a caller hands over to the message that goes on the wire.  Pure: no I/O.

Two entry points, one per personality:
- `compose_mail`: mail(1) style, builds a new message around a body.
- `prepare_message`: sendmail style, takes a whole RFC 2822 message and edits only
  its header block, so the body reaches the proxy byte for byte.

Both return an `Outgoing`: the bytes to sign and the envelope.  Version 1 of the
protocol carries recipients in the To, Cc and Bcc headers, so the envelope is
written into them: header recipients that are in the envelope stay where they
are, and every other envelope recipient travels as Bcc, which the proxy never
shows in a delivered header.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gaemail.errors import MessageError, UsageError
from gaemail.message.envelope import Envelope, RecipientResolver, address_key, unique_addresses
from gaemail.message.rfc5322 import formataddr, formatdate, getaddresses

# email.policy and email.message load only when a message needs them (a header to
# fold or encode, a mail(1) body): they are a large part of gmail's start-up (bench/).
if TYPE_CHECKING:
    from email.message import EmailMessage
    from email.policy import EmailPolicy

# A header field that needs neither folding nor encoding: printable ASCII, no
# encoded-word look-alike, within the 78 characters of RFC 5322's line limit.
_PLAIN_VALUE = re.compile(r"[ -~]*")
_LINE_LIMIT = 78
_FIELD_NAME = re.compile(rb"^[!-9;-~]+$")
# An mbox separator as Exim's pipe transport writes it ("From sender Sat Nov 21
# 12:41:23 2026"); Exim's own uucp_from_pattern.  Any other first line that
# starts with "From " is the message's text.
_MBOX_FROM = re.compile(
    rb"From[ \t]+\S+[ \t]+(?:[a-zA-Z]{3},?[ \t]+)?[a-zA-Z]{3}[ \t]+\d?\d[ \t]+\d?\d:\d\d"
)
_RECIPIENT_FIELDS = ("to", "cc", "bcc")


@dataclass(frozen=True)
class Outgoing:
    """A message ready to sign: its bytes, envelope and the id that names it."""

    data: bytes = dataclasses.field(repr=False)
    envelope: Envelope
    message_id: str
    fix_sender: bool


@dataclass(frozen=True)
class Defaults:
    """What the caller's settings and account add to messages that lack it.

    `user` and `user_name` are the calling account's login and full name (GECOS):
    as with sendmail, a message without From is from user@maildomain.
    """

    sender: str | None = None  # GMAIL_FROM
    hostname: str = "localhost"
    clock: Callable[[], float] = time.time
    user: str | None = None
    user_name: str | None = None

    def local_from(self, resolver: RecipientResolver) -> tuple[str, str | None] | None:
        """(user@maildomain, full name) of the calling account, when there is a mail domain."""
        address = resolver.qualify_sender(self.user) if self.user else None
        return (address, self.user_name or None) if address else None


@functools.cache
def wire_policy() -> EmailPolicy[EmailMessage]:
    """email.policy.default with LF line ends: what gmail puts on the wire."""
    import email.policy

    return email.policy.default.clone(linesep="\n")


def read_input(raw: bytes, dot_ends: bool) -> bytes:
    """The message as sendmail reads it: LF line ends, no mbox 'From ' line.

    Without -i, a line holding a single dot ends the message, as in sendmail.
    """
    data = raw.replace(b"\r\n", b"\n")
    if _MBOX_FROM.match(data):  # Exim's default message_prefix
        data = data.partition(b"\n")[2]
    if dot_ends:
        if data.startswith(b".\n") or data == b".":
            return b""
        end = data.find(b"\n.\n")
        if end >= 0:
            data = data[: end + 1]
        elif data.endswith(b"\n."):
            data = data[:-1]
    return data


class HeaderBlock:
    """A message split into raw header fields and an untouched body."""

    def __init__(self, fields: list[bytes], body: bytes) -> None:
        self.fields = fields
        self.body = body

    @classmethod
    def split(cls, data: bytes) -> HeaderBlock:
        fields: list[bytes] = []
        lines = data.splitlines(keepends=True)
        i = 0
        for i, line in enumerate(lines):  # noqa: B007 - i is the body's start
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1] += line if line.endswith(b"\n") else line + b"\n"
                continue
            name, colon, _ = line.partition(b":")
            if not colon or not _FIELD_NAME.match(name.rstrip()):
                break
            fields.append(line if line.endswith(b"\n") else line + b"\n")
        else:
            i = len(lines)
        rest = lines[i:]
        if rest and rest[0].strip() == b"":
            rest = rest[1:]  # the blank separator line
        return cls(fields, b"".join(rest))

    @staticmethod
    def name_of(field: bytes) -> str:
        return field.partition(b":")[0].strip().decode("ascii").lower()

    def values(self, name: str) -> list[str]:
        """Unfolded values of every field called `name` (any case)."""
        found = []
        for field in self.fields:
            if self.name_of(field) == name:
                value = field.partition(b":")[2].decode("utf-8", "replace")
                found.append(" ".join(value.split()))
        return found

    def has(self, name: str) -> bool:
        return any(self.name_of(f) == name for f in self.fields)

    def replace(self, name: str, rendered: bytes | None) -> None:
        """Put `rendered` where the first `name` field was; drop every other one."""
        kept: list[bytes] = []
        placed = rendered is None
        for field in self.fields:
            if self.name_of(field) != name:
                kept.append(field)
            elif not placed and rendered is not None:
                kept.append(rendered)
                placed = True
        if not placed and rendered is not None:
            kept.append(rendered)
        self.fields = kept

    def to_bytes(self) -> bytes:
        return b"".join(self.fields) + b"\n" + self.body


def render_field(name: str, value: str) -> bytes:
    """One header field, folded and RFC 2047-encoded as needed, LF-terminated."""
    if "\n" in value or "\r" in value:
        raise UsageError(f"the {name} header value contains a line break")
    line = f"{name}: {value}"
    if len(line) <= _LINE_LIMIT and "=?" not in value and _PLAIN_VALUE.fullmatch(value):
        return line.encode("ascii") + b"\n"  # what the policy would write, without loading it
    return wire_policy().fold_binary(name, value)


Pair = tuple[str, str]  # (display name, address)


def _parse_pairs(values: list[str]) -> list[Pair]:
    """The (name, address) pairs of address-list values; empty groups give none."""
    pairs: list[Pair] = []
    for value in values:
        if "\n" in value or "\r" in value:
            raise MessageError(f"address {value.strip()!r} contains a line break")
        found = [(n, a) for n, a in getaddresses([value]) if a]
        if not found and value.strip(" ,") and not value.strip().endswith(";"):
            raise MessageError(f"cannot read an address in {value.strip()!r}")
        pairs += found
    return pairs


def _resolve(pairs: list[Pair], resolver: RecipientResolver) -> list[Pair]:
    """Qualify and expand each address, keeping the display names of those unchanged."""
    out: list[Pair] = []
    for display, address in pairs:
        resolved = resolver.resolve(address)
        out += [(display, address)] if resolved == [address] else [("", a) for a in resolved]
    return out


def _unique(pairs: list[Pair], exclude: set[str] | None = None) -> list[Pair]:
    seen = set(exclude or ())
    out = []
    for pair in pairs:
        key = address_key(pair[1])
        if key not in seen:
            seen.add(key)
            out.append(pair)
    return out


def _format(pairs: list[Pair]) -> str:
    return ", ".join(formataddr(p) for p in pairs)


def new_message_id(domain: str, clock: Callable[[], float]) -> str:
    stamp = int(clock() * 1_000_000)
    return f"<{stamp}.{os.getpid()}.{os.urandom(6).hex()}@{domain}>"


def _domain_of(address: str | None, fallback: str) -> str:
    if address and "@" in address:
        return address.rsplit("@", 1)[1].strip("<> ") or fallback
    return fallback


def prepare_message(
    raw: bytes,
    *,
    recipients: list[str],
    read_headers: bool,
    dot_ends: bool,
    sender: str | None,
    full_name: str | None,
    resolver: RecipientResolver,
    defaults: Defaults,
    fix_sender: bool = False,
) -> Outgoing:
    """sendmail style: a whole message from stdin, recipients from the envelope.

    The envelope is the argument recipients, plus with `read_headers` (-t) the To,
    Cc and Bcc headers.  Adds Date, Message-ID and, from -f or GMAIL_FROM, From
    when the message has none; never touches the body.
    """
    block = HeaderBlock.split(read_input(raw, dot_ends))
    written = {name: _parse_pairs(block.values(name)) for name in _RECIPIENT_FIELDS}
    headers = {name: _resolve(pairs, resolver) for name, pairs in written.items()}
    to_deliver = [a for _, a in _resolve(_parse_pairs(recipients), resolver)]
    if read_headers:
        to_deliver += [a for name in _RECIPIENT_FIELDS for _, a in headers[name]]
    envelope_recipients = unique_addresses(to_deliver)
    if not envelope_recipients:
        raise MessageError("no recipients: none in the arguments nor in To, Cc or Bcc")
    in_envelope = {address_key(a) for a in envelope_recipients}

    to = _unique([p for p in headers["to"] if address_key(p[1]) in in_envelope])
    cc = _unique(
        [p for p in headers["cc"] if address_key(p[1]) in in_envelope],
        {address_key(a) for _, a in to},
    )
    shown = {address_key(a) for _, a in to + cc}
    hidden = [("", a) for a in envelope_recipients if address_key(a) not in shown]
    for name, pairs in (("to", to), ("cc", cc)):
        if pairs != written[name]:
            block.replace(name, render_field(name.capitalize(), _format(pairs)) if pairs else None)
    block.replace("bcc", render_field("Bcc", _format(hidden)) if hidden else None)

    envelope_sender = resolver.qualify_sender(sender)
    null_sender = sender is not None and sender.strip() in ("", "<>")
    author = envelope_sender or defaults.sender
    local = None if author or null_sender else defaults.local_from(resolver)
    if local is not None:  # nothing names a sender: the calling user at the mail domain
        author, full_name = local[0], full_name or local[1]
    _ensure_from(block, author, full_name, resolver)
    from_values = block.values("from")
    if envelope_sender is None and not null_sender:
        # As sendmail: without -f the envelope sender is the message's author,
        # who is the one to tell if it cannot be delivered.
        envelope_sender = resolver.qualify_sender(_first_address(from_values))
    if not block.has("date"):
        block.replace("date", render_field("Date", formatdate(defaults.clock(), localtime=True)))
    ids = block.values("message-id")
    message_id = ids[0] if ids and ids[0] else ""
    if not message_id:
        domain = _domain_of(_first_address(from_values), defaults.hostname)
        message_id = new_message_id(domain, defaults.clock)
        block.replace("message-id", render_field("Message-ID", message_id))
    envelope = Envelope(envelope_recipients, envelope_sender)
    return Outgoing(block.to_bytes(), envelope, message_id, fix_sender)


def _ensure_from(
    block: HeaderBlock, sender: str | None, full_name: str | None, resolver: RecipientResolver
) -> None:
    """Add From when missing; qualify a bare local name in it ('root (Cron Daemon)')."""
    written = _parse_pairs(block.values("from"))
    if not written:
        if sender:
            block.replace("from", render_field("From", _with_name(sender, full_name)))
        return
    display, address = written[0]
    if "@" not in address:
        qualified = resolver.qualify_sender(address)
        if qualified:
            block.replace("from", render_field("From", formataddr((display, qualified))))


def _first_address(values: list[str]) -> str | None:
    found = [a for _, a in getaddresses(values) if a]
    return found[0] if found else None


def _with_name(address: str, full_name: str | None) -> str:
    if full_name and "<" not in address:
        if "\n" in full_name or "\r" in full_name:
            raise UsageError("the value of -F contains a line break")
        return formataddr((full_name, address))
    return address


def compose_mail(
    body: bytes,
    *,
    to: list[str],
    cc: list[str],
    bcc: list[str],
    subject: str | None,
    sender: str | None,
    extra_headers: list[str],
    resolver: RecipientResolver,
    defaults: Defaults,
    fix_sender: bool = False,
) -> Outgoing:
    """mail(1) style: a new text message around `body`, UTF-8 encoded."""
    to_pairs = _unique(_resolve(_parse_pairs(to), resolver))
    cc_pairs = _unique(_resolve(_parse_pairs(cc), resolver), {address_key(a) for _, a in to_pairs})
    bcc_pairs = _unique(
        _resolve(_parse_pairs(bcc), resolver), {address_key(a) for _, a in to_pairs + cc_pairs}
    )
    from email.message import EmailMessage

    msg = EmailMessage(policy=wire_policy())
    from_value = resolver.qualify_sender(sender) or defaults.sender
    try:
        for name, value in _extra_headers(extra_headers):
            if name.lower() == "from" and not from_value:
                from_value = value
            elif name.lower() != "from":
                msg[name] = value
        local = None if from_value else defaults.local_from(resolver)
        if local is not None:  # the calling user at the mail domain, as mail(1) does
            from_value = _with_name(*local)
        if from_value:
            msg["From"] = from_value
        for name, pairs in (("To", to_pairs), ("Cc", cc_pairs), ("Bcc", bcc_pairs)):
            if pairs:
                msg[name] = _format(pairs)
        if subject:
            msg["Subject"] = subject
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot use that header: {exc}") from None
    msg["Date"] = formatdate(defaults.clock(), localtime=True)
    message_id = new_message_id(_domain_of(from_value, defaults.hostname), defaults.clock)
    msg["Message-ID"] = message_id
    msg.set_content(_decode_text(body))
    envelope = Envelope(
        unique_addresses(a for _, a in to_pairs + cc_pairs + bcc_pairs),
        _first_address([from_value]) if from_value else None,
    )
    # A sender gmail chose (none, or the local user) is rarely one App Engine
    # accepts: let the proxy fall back to its own, keeping this one as Reply-To.
    fixable = fix_sender or not from_value or local is not None
    return Outgoing(msg.as_bytes(), envelope, message_id, fixable)


def _extra_headers(lines: list[str]) -> list[tuple[str, str]]:
    """-a 'Name: value' options, checked so that none can add a second header."""
    out = []
    for line in lines:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _FIELD_NAME.match(name.encode("utf-8", "replace")):
            raise UsageError(f"-a {line!r} is not a header line of the form 'Name: value'")
        if name.lower() in ("to", "cc", "bcc"):
            raise UsageError(f"give {name} recipients as arguments, -c or -b, not with -a")
        if name.lower() in ("date", "message-id", "subject"):
            raise UsageError(f"gmail sets {name} itself; use -s for the subject")
        out.append((name, value.strip()))
    return out


def _decode_text(body: bytes) -> str:
    """The body as text: UTF-8 if it is, else latin-1 (which never fails)."""
    text = body.replace(b"\r\n", b"\n")
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        return text.decode("latin-1")

"""translate_message: RFC 2822 bytes to EmailMessage keyword arguments, no I/O."""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Callable
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from google.appengine.api import mail

from gaemail import protocol
from gaemail.server import parsing
from gaemail.server.headers import decoded_header
from gaemail.server.parsing import Blobs
from gaemail.server.refusals import MessageRefused
from gaemail.server.translate import (
    Translation,
    _parse_plain,
    translate_message,
    translate_modern,
)
from parse_support import assert_held_aside_parse_is_the_same

PDF = b"%PDF-1.4\n" + bytes(range(256)) + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(64)


def _message(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hello.\n")
    return msg


def test_plain_message() -> None:
    raw = _message(
        From="Sender <s@example.com>", To="r@example.org", Subject="Hi", Message_ID="<1@x>"
    ).as_bytes()
    translation = translate_message(raw)
    assert translation.fields == {
        "sender": "Sender <s@example.com>",
        "to": ["r@example.org"],
        "subject": "Hi",
        "body": "Hello.\n",
    }
    assert translation.message_id == "<1@x>"
    assert translation.recipient_count == 1


def test_fields_are_accepted_by_the_sdk() -> None:
    raw = _message(From="s@example.com", To="r@example.org", Cc="c@example.org").as_bytes()
    mail.EmailMessage(**translate_message(raw).fields).check_initialized()


def test_comma_in_display_name_stays_one_recipient() -> None:
    raw = b'From: s@x.com\nTo: "Doe, John" <j@x.com>, k@x.com\nTo: l@x.com\n\nbody\n'
    assert translate_message(raw).fields["to"] == ['"Doe, John" <j@x.com>', "k@x.com", "l@x.com"]


def test_cc_stays_cc_and_bcc_stays_bcc() -> None:
    raw = _message(From="s@x.com", To="t@x.com", Cc="c1@x.com, c2@x.com", Bcc="b@x.com")
    fields = translate_message(raw.as_bytes()).fields
    assert (fields["to"], fields["cc"], fields["bcc"]) == (
        ["t@x.com"],
        ["c1@x.com", "c2@x.com"],
        ["b@x.com"],
    )
    assert translate_message(raw.as_bytes()).recipient_count == 4


def test_utf8_display_names_and_subject() -> None:
    raw = _message(From="Sénder Näme <s@x.com>", To="Jöhn Dœ <j@x.com>", Subject="Grüße, 世界")
    fields = translate_message(raw.as_bytes()).fields
    assert fields["subject"] == "Grüße, 世界"
    # RFC 2047 words keep the address itself plain for the Mail API to parse.
    assert fields["sender"].endswith(" <s@x.com>")
    assert fields["sender"].isascii()
    assert str(make_header(decode_header(fields["to"][0]))) == "Jöhn Dœ <j@x.com>"


def test_groups_and_empty_groups_give_their_members() -> None:
    raw = b"From: s@x.com\nTo: undisclosed-recipients:;\nCc: team: a@x.com, b@x.com;\n\nbody\n"
    fields = translate_message(raw).fields
    assert "to" not in fields
    assert fields["cc"] == ["a@x.com", "b@x.com"]


def test_reply_to() -> None:
    raw = _message(From="s@x.com", To="t@x.com", Reply_To="Help <help@x.com>")
    assert translate_message(raw.as_bytes()).fields["reply_to"] == "Help <help@x.com>"


def test_only_whitelisted_headers_pass_in_the_sdks_spelling() -> None:
    raw = (
        b"From: s@x.com\nTo: t@x.com\nlist-unsubscribe: <mailto:u@x.com>\n"
        b"LIST-ID: News <news.x.com>\nIn-Reply-To: <0@x.com>\nReferences: <0@x.com>\n <1@x.com>\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\nX-Custom: 1\n"
        b"Message-ID: <2@x.com>\n\nbody\n"
    )
    assert translate_message(raw).fields["headers"] == {
        "List-Unsubscribe": "<mailto:u@x.com>",
        "List-Id": "News <news.x.com>",
        "In-Reply-To": "<0@x.com>",
        "References": "<0@x.com> <1@x.com>",
    }


def test_text_and_html_alternative() -> None:
    msg = _message(From="s@x.com", To="t@x.com")
    msg.add_alternative("<p>Hello.</p>\n", subtype="html")
    fields = translate_message(msg.as_bytes()).fields
    assert (fields["body"], fields["html"]) == ("Hello.\n", "<p>Hello.</p>\n")
    assert "attachments" not in fields


def test_html_only_sends_html_without_body() -> None:
    msg = EmailMessage()
    msg["From"], msg["To"] = "s@x.com", "t@x.com"
    msg.set_content("<p>Only HTML</p>\n", subtype="html")
    fields = translate_message(msg.as_bytes()).fields
    assert fields["html"] == "<p>Only HTML</p>\n"
    assert "body" not in fields


def test_pdf_attachment_bytes_are_exact() -> None:
    msg = _message(From="s@x.com", To="t@x.com")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    (attachment,) = translate_message(msg.as_bytes()).fields["attachments"]
    assert (attachment.filename, attachment.payload, attachment.content_id) == (
        "report.pdf",
        PDF,
        None,
    )


def test_inline_image_keeps_its_content_id() -> None:
    msg = _message(From="s@x.com", To="t@x.com")
    msg.add_alternative('<img src="cid:logo@x.com">\n', subtype="html")
    html_part = msg.get_payload()[1]
    html_part.add_related(PNG, maintype="image", subtype="png", cid="<logo@x.com>")
    fields = translate_message(msg.as_bytes()).fields
    (image,) = fields["attachments"]
    assert image.content_id == "<logo@x.com>"
    assert image.payload == PNG
    assert image.filename == "attachment1.png"  # unnamed: named after its type
    assert fields["html"] == '<img src="cid:logo@x.com">\n'


def test_unnamed_attachment_of_unknown_type_is_refused() -> None:
    msg = _message(From="s@x.com", To="t@x.com")
    msg.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream")
    with pytest.raises(MessageRefused, match=r"Attachment 1 \(application/octet-stream\)"):
        translate_message(msg.as_bytes())


def test_latin1_8bit_body_is_decoded_by_its_charset() -> None:
    raw = (
        b"From: s@x.com\nTo: t@x.com\nSubject: =?iso-8859-1?q?Gr=FC=DFe?=\n"
        b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
        b"Gr\xfc\xdfe aus K\xf6ln\n"
    )
    fields = translate_message(raw).fields
    assert fields["body"] == "Grüße aus Köln\n"
    assert fields["subject"] == "Grüße"


def test_unknown_charset_is_refused() -> None:
    raw = b"From: s@x.com\nTo: t@x.com\nContent-Type: text/plain; charset=x-no-such\n\nbody\n"
    with pytest.raises(MessageRefused, match="Unknown charset 'x-no-such'"):
        translate_message(raw)


def test_no_recipients_is_refused() -> None:
    with pytest.raises(MessageRefused, match="No recipients"):
        translate_message(b"From: s@x.com\nSubject: lost\n\nbody\n")


def test_no_sender_is_refused_unless_there_is_a_fallback() -> None:
    raw = b"To: t@x.com\n\nbody\n"
    with pytest.raises(MessageRefused, match=f"^{protocol.REASON_NO_SENDER}$"):
        translate_message(raw)
    fields = translate_message(raw, fallback_sender="app@x.appspotmail.com").fields
    assert fields["sender"] == "app@x.appspotmail.com"


def test_own_from_beats_the_fallback() -> None:
    fields = translate_message(b"From: s@x.com\nTo: t@x.com\n\nb\n", fallback_sender="f@x").fields
    assert fields["sender"] == "s@x.com"


@pytest.mark.parametrize(
    "raw",
    [
        b"this is not a message at all\nsecond line\n",
        b"From: s@x.com\nthis line is no header\nTo: t@x.com\n\nbody\n",
        b"From: s@x.com\nTo: t@x.com\nContent-Type: multipart/mixed\n\nno boundary\n",
    ],
)
def test_unparseable_message_is_refused(raw: bytes) -> None:
    with pytest.raises(MessageRefused, match="Cannot parse the message"):
        translate_message(raw)


def test_message_without_any_text_part_is_refused() -> None:
    msg = EmailMessage()
    msg["From"], msg["To"] = "s@x.com", "t@x.com"
    msg.set_content(PDF, maintype="application", subtype="pdf", filename="only.pdf")
    with pytest.raises(MessageRefused, match="No body"):
        translate_message(msg.as_bytes())


def test_headers_only_message_has_an_empty_body() -> None:
    assert translate_message(b"From: s@x.com\nTo: t@x.com\n").fields["body"] == ""


def test_non_ascii_address_is_refused() -> None:
    raw = "From: s@x.com\nTo: jöhn@x.com\n\nbody\n".encode()
    with pytest.raises(MessageRefused, match="ASCII addresses only"):
        translate_message(raw)


def test_eight_bit_body_without_charset_is_read_as_utf8_else_latin1() -> None:
    utf8 = "Grüße aus Köln, ½ € ✓\n"
    raw = b"From: a@example.com\nTo: b@example.com\nContent-Type: text/plain\n\n"
    assert translate_message(raw + utf8.encode()).fields["body"] == utf8
    assert translate_message(raw + "Grüße\n".encode("latin-1")).fields["body"] == "Grüße\n"


# ---------------------------------------------------------------------------
# Two readings, one answer.  Most messages are read with compat32 and decode
# only the headers the Mail API takes (fast); the rest with email.policy.default
# throughout (translate_modern, the reference).  Both must always agree.
# ---------------------------------------------------------------------------

CRON = (
    b"From: root@web1.example.com (Cron Daemon)\nTo: ops@example.com\n"
    b"Subject: Cron <root@web1> /usr/local/sbin/nightly-backup --verbose\n"
    b"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
    b"Content-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n\n"
    b"backup done\n"
)


def _outcome(translate: Callable[..., Translation], raw: bytes, fallback: str | None) -> object:
    """What a translation gives, comparable: fields (attachments as tuples) or the refusal."""
    try:
        translation = translate(raw, fallback_sender=fallback)
    except MessageRefused as refusal:
        return ("refused", str(refusal))
    fields: dict[str, object] = dict(translation.fields)
    if "attachments" in fields:
        fields["attachments"] = [
            (a.filename, a.payload, a.content_id) for a in translation.fields["attachments"]
        ]
    return ("sent", fields, translation.message_id)


def _assert_same_reading(raw: bytes, fallback: str | None = None) -> None:
    assert _outcome(translate_message, raw, fallback) == _outcome(translate_modern, raw, fallback)


def _multipart(*parts: bytes, subtype: str = "mixed", boundary: str = "b0") -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\n" + part + b"\n" for part in parts)
    head = f"Content-Type: multipart/{subtype}; boundary={boundary}\n\n".encode()
    return head + body + b"--" + boundary.encode() + b"--\n"


PLAIN_MESSAGES = {
    "cron": CRON,
    "crlf": CRON.replace(b"\n", b"\r\n"),
    "no content type": b"From: a@x.com\nTo: b@x.com\n\n8-bit \xc3\xa9 body\n",
    "folded headers": (
        b"From: Sender Name\n <s@x.com>\nTo: a@x.com,\n\tb@x.com\nSubject: one\n two\n"
        b'Content-Type: text/plain;\n charset="utf-8"; format=flowed\n\nbody\n'
    ),
    "comma lists": (
        b'From: s@x.com\nTo: "Doe, John" <j@x.com>, k@x.com\nTo: l@x.com\n'
        b"Cc: A B <a@x.com>, <c@x.com>, d@x.com (Dee)\nBcc: e@x.com\n\nbody\n"
    ),
    "quoted-printable": (
        b"From: s@x.com\nTo: t@x.com\nContent-Type: text/plain; charset=iso-8859-1\n"
        b"Content-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe\n"
    ),
    "alternative with attachment": b"From: s@x.com\nTo: t@x.com\nMessage-ID: <1.2@x.com>\n"
    + _multipart(
        _multipart(
            b"Content-Type: text/plain; charset=utf-8\n\ntext\n",
            b"Content-Type: text/html; charset=utf-8\n\n<p>html</p>\n",
            subtype="alternative",
            boundary="b1",
        ),
        b'Content-Type: application/pdf; name="r.pdf"\nContent-Transfer-Encoding: base64\n'
        b'Content-Disposition: attachment; filename="report 1.pdf"\n\nJVBERi0xLjQK\n',
        b"Content-Type: image/png\nContent-ID: <logo@x.com>\nContent-Transfer-Encoding: base64\n"
        b"\niVBORw0KGgo=\n",
    ),
    "related": b"From: s@x.com\nTo: t@x.com\n"
    + _multipart(
        b"Content-Type: text/html\n\n<img src=cid:i>\n",
        b"Content-Type: image/gif\nContent-ID: <i>\n\nGIF89a\n",
        subtype="related",
    ),
    "text attachment is not the body": b"From: s@x.com\nTo: t@x.com\n"
    + _multipart(
        b"Content-Type: text/plain\nContent-Disposition: attachment; filename=log.txt\n\nlog\n",
        b"Content-Type: text/plain\n\nthe body\n",
    ),
    "unknown charset": b"From: s@x.com\nTo: t@x.com\nContent-Type: text/plain; charset=x-no\n\nb\n",
    "no boundary": b"From: s@x.com\nTo: t@x.com\nContent-Type: multipart/mixed\n\nb\n",
    "no recipients": b"From: s@x.com\nSubject: x\n\nb\n",
    "whitelisted headers": (
        b"From: s@x.com\nTo: t@x.com\nlist-unsubscribe: <mailto:u@x.com>\nLIST-ID: News <n.x.com>\n"
        b"References: <0@x.com>\n <1@x.com>\nAuto-Submitted: auto-generated\nList-Id: second\n"
        b"Resent-Date: Mon, 1 Jan 2024 00:00:00 +0000\nResent-From: r@x.com\n\nb\n"
    ),
}

MODERN_MESSAGES = {
    "rfc 2231 filename": b"From: s@x.com\nTo: t@x.com\n"
    + _multipart(
        b"Content-Type: text/plain\n\nbody\n",
        b"Content-Type: application/pdf\n"
        b"Content-Disposition: attachment; filename*=utf-8''Gr%C3%BC%C3%9Fe.pdf\n\n%PDF\n",
    ),
    "encoded-word filename": b"From: s@x.com\nTo: t@x.com\n"
    + _multipart(
        b"Content-Type: text/plain\n\nbody\n",
        b'Content-Type: application/pdf\nContent-Disposition: attachment; filename="=?utf-8?q?'
        b'Gr=C3=BC=C3=9Fe?=.pdf"\n\n%PDF\n',
    ),
    "comment in content type": (
        b"From: s@x.com\nTo: t@x.com\nContent-Type: text/plain; charset=utf-8 (yes)\n\nb\n"
    ),
    "8-bit content type": b"From: s@x.com\nTo: t@x.com\nContent-Type: text/plain; name=\xe9\n\nb\n",
    "enclosed message": b"From: s@x.com\nTo: t@x.com\n"
    + _multipart(
        b"Content-Type: text/plain\n\nsee below\n",
        b"Content-Type: message/rfc822\n\nFrom: x@y.com\nSubject: inner\n\ninner body\n",
    ),
    "related with start": b"From: s@x.com\nTo: t@x.com\n"
    + _multipart(
        b"Content-Type: text/plain\nContent-ID: <a>\n\nfirst\n",
        b"Content-Type: text/html\nContent-ID: <b>\n\n<p>second</p>\n",
        subtype='related; start="<b>"',
    ),
}

ODD_HEADERS = {
    # Encoded words, 8-bit bytes, groups, comments and quoting: decoded by the
    # modern policy even in a message read with compat32.
    "encoded words": "From: =?utf-8?q?J=C3=B6rg?= <j@x.com>\nSubject: =?utf-8?b?R3LDvMOfZQ==?= x\n",
    "raw utf-8": "From: Jörg Müller <j@x.com>\nSubject: Grüße aus Köln\n",
    "raw latin-1": "From: s@x.com\nSubject: Gr\udcfc\udcdfe\nTo: M\udcfcller <m@x.com>\n",
    "groups": "From: s@x.com\nCc: team: a@x.com, b@x.com;\nBcc: undisclosed-recipients:;\n",
    "comments and quotes": (
        'From: "a\\"b" <ab@x.com> (c)\nReply-To: (c) r@x.com\nCc: "J. Q." <jq@x.com>\n'
        "Cc: John Q. Public <jqp@x.com>, Name <n@x.com> (comment)\n"
    ),
    "odd spacing": 'From: A  B <ab@x.com>\nCc: "  spaced  " <s@x.com>, A\t<t@x.com>\n',
    "broken lists": "From: s@x.com\nCc: a@x.com,\nBcc: ,b@x.com, bad<@x.com>, root\n",
    "odd message ids": "From: s@x.com\nMessage-ID:  <a@b> junk\n",
    "non-ascii address": "From: s@x.com\nCc: jöhn@x.com\n",
}


@pytest.mark.parametrize("name", sorted(PLAIN_MESSAGES))
def test_plain_messages_are_read_plainly_with_the_same_answer(name: str) -> None:
    raw = PLAIN_MESSAGES[name]
    assert _parse_plain(Blobs(raw)) is not None
    _assert_same_reading(raw)
    _assert_same_reading(raw, "fallback@x.appspotmail.com")


@pytest.mark.parametrize("name", sorted(MODERN_MESSAGES))
def test_other_messages_are_read_with_the_modern_policy(name: str) -> None:
    raw = MODERN_MESSAGES[name]
    assert _parse_plain(Blobs(raw)) is None
    _assert_same_reading(raw)


@pytest.mark.parametrize("name", sorted(ODD_HEADERS))
def test_odd_headers_read_the_same_in_a_plain_message(name: str) -> None:
    raw = (ODD_HEADERS[name] + "To: t@x.com\n\nbody\n").encode("utf-8", "surrogateescape")
    assert _parse_plain(Blobs(raw)) is not None
    _assert_same_reading(raw)


def test_cron_message_as_the_modern_policy_reads_it() -> None:
    fields = translate_message(CRON).fields
    # The comment is no display name to the modern policy: the From is the address.
    assert fields["sender"] == "root@web1.example.com"
    assert fields["subject"] == "Cron <root@web1> /usr/local/sbin/nightly-backup --verbose"
    assert "headers" not in fields  # X-Cron-Env is not for the Mail API


def test_a_broken_header_the_mail_api_never_takes_is_not_read() -> None:
    # email.policy.default raises TypeError parsing this Sender; it is never decoded.
    raw = b"From: s@x.com\nTo: t@x.com\nSender: @{#-   ,\t<\n\nbody\n"
    assert translate_message(raw).fields["sender"] == "s@x.com"
    assert translate_modern(raw).fields["sender"] == "s@x.com"


def _random_message(rnd: random.Random) -> bytes:
    """A message built from plain and odd pieces, for the two readings to disagree on."""
    addresses = [
        *("a@x.com", "Bob <b@x.org>", '"Doe, J" <j@x.com>', "r@x.com (Cron)", "<c@x.com>"),
        *("=?utf-8?q?J=C3=B6?= <j@x.com>", "team: a@x.com;", "root", "x@[1.2.3.4]", ""),
    ]
    types = [
        *("text/plain", "text/plain; charset=utf-8", 'text/html; charset="iso-8859-1"'),
        *("text/plain; charset=x-no", "text/plain; charset*=utf-8''x", "image/png", "text"),
    ]
    encodings = ["7bit", "8bit", "base64", "quoted-printable", "Base64 ", "x-uuencode"]
    dispositions = ["inline", "attachment", "attachment; filename=a.pdf", 'inline; filename="b c"']
    headers = [f"From: {rnd.choice(addresses)}", f"To: {rnd.choice(addresses)}"]
    if rnd.random() < 0.5:
        headers.append(f"Cc: {rnd.choice(addresses)}, {rnd.choice(addresses)}")
    headers.append(f"Subject: {rnd.choice(['x', '=?utf-8?q?=C3=A9?=', 'a  b ', ''])}")

    def leaf() -> str:
        lines = [f"Content-Type: {rnd.choice(types)}"]
        encoding = rnd.choice(encodings)
        lines.append(f"Content-Transfer-Encoding: {encoding}")
        if rnd.random() < 0.4:
            lines.append(f"Content-Disposition: {rnd.choice(dispositions)}")
        body = "SGVsbG8K" if "64" in encoding else rnd.choice(["hi", "Gr=FC=DFe", "é"])
        return "\n".join(lines) + "\n\n" + body + "\n"

    if rnd.random() < 0.5:
        headers.append(leaf())
        return "\n".join(headers).encode()
    subtype = rnd.choice(["mixed", "alternative", "related"])
    parts = "".join(f"--B\n{leaf()}\n" for _ in range(rnd.randint(1, 3)))
    headers.append(f"Content-Type: multipart/{subtype}; boundary=B\n\n{parts}--B--\n")
    return "\n".join(headers).encode()


def test_random_messages_read_the_same() -> None:
    rnd = random.Random(2822)
    plain = 0
    for _ in range(400):
        raw = _random_message(rnd)
        plain += _parse_plain(Blobs(raw)) is not None
        _assert_same_reading(raw)
    assert plain > 100  # the plain reading was put to the test


HEADER_VALUES = [
    *("a@x.com", "Bob <b@x.org>", "Bob  Smith <b@x.org>", '"Doe, John" <j@x.com>'),
    *('"John" <j@x.com>', "<c@x.com>", "root@h.example.com (Cron Daemon)", "a@x.com, b@x.com"),
    *("a@x.com,\r\n b@x.com", "=?utf-8?q?J=C3=B6rg?= <j@x.com>", "J\udcc3\udcb6rg <j@x.com>"),
    *("team: a@x.com, b@x.com;", "John Q. Public <j@x.com>", '"a\\"b" <a@x.com>', ""),
    *("<1.2@x.com>", " <1@x.com>", "<1@x.com> trailing", "<a@[1.2.3.4]>", "a =?x", "tab\there"),
    *("Cron <root@web1> /usr/bin/x --verbose", "folded\r\n line", "trailing  ", "\x00\x7f ctl"),
]


@pytest.mark.parametrize("name", ["From", "to", "CC", "Bcc", "Reply-To", "Subject", "Message-ID"])
@pytest.mark.parametrize("value", HEADER_VALUES)
def test_decoded_header_is_what_the_modern_policy_says(name: str, value: str) -> None:
    assert decoded_header(name, value) == str(policy.default.header_fetch_parse(name, value))


def test_random_header_values_decode_as_the_modern_policy_says() -> None:
    rnd = random.Random(5322)
    pieces = [
        *("a", "b.c", "x-y", "é", "=?", "?=", "@", "<", ">", ",", ";", ":", '"', "\\", "(", ")"),
        *(" ", "  ", "\t", "\r\n ", ".", "[", "]", "!#$%&'*+/=?^_`{|}~", "Na me", "@x.com"),
    ]
    for _ in range(3000):
        value = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12)))
        name = rnd.choice(["From", "To", "Subject", "Message-ID", "List-Id"])
        try:
            want: object = str(policy.default.header_fetch_parse(name, value))
        except Exception as exc:  # the policy's own parser fails on some junk
            want = type(exc)
        try:
            got: object = decoded_header(name, value)
        except Exception as exc:
            got = type(exc)
        assert got == want, (name, value)


# ---------------------------------------------------------------------------
# Long inert runs (a base64 attachment) are held aside while the parser reads
# the rest (gaemail.server.parsing.Blobs).  With every run held aside, however
# short, the parse and the translation must be what the parser alone gives.
# ---------------------------------------------------------------------------


def _every_message() -> list[bytes]:
    rnd = random.Random(2045)
    return [
        *PLAIN_MESSAGES.values(),
        *MODERN_MESSAGES.values(),
        *[
            (v + "To: t@x.com\n\nbody\n").encode("utf-8", "surrogateescape")
            for v in ODD_HEADERS.values()
        ],
        *[_random_message(rnd) for _ in range(200)],
        CRON,
    ]


def test_every_run_held_aside_parses_and_translates_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parsing, "BLOB_MIN", 1)
    messages = _every_message()
    held = 0
    for raw in messages:
        held += bool(Blobs(raw).runs)
        assert_held_aside_parse_is_the_same(raw)
        _assert_same_reading(raw)
        _assert_same_reading(raw, "fallback@x.appspotmail.com")
    assert held > 0.8 * len(messages)  # runs were held aside in nearly every message


def test_a_large_attachment_is_decoded_from_the_message_as_it_is() -> None:
    data = os.urandom(300_000)
    for newline in (b"\n", b"\r\n"):
        encoded = base64.encodebytes(data).replace(b"\n", newline)
        raw = newline.join([
            b"From: s@x.com", b"To: t@x.com", b"Content-Type: multipart/mixed; boundary=B", b"",
            b"--B", b"Content-Type: text/plain", b"", b"see the attachment",
            b"--B", b"Content-Type: application/pdf; name=a.pdf",
            b"Content-Transfer-Encoding: base64", b"",
        ]) + newline + encoded + b"--B--" + newline  # fmt: skip
        blobs = Blobs(raw)
        assert len(blobs.runs) == 1
        (part,) = [p for p in blobs.parse(policy.compat32).walk() if p.get_filename()]
        assert blobs.base64_data(part) == data  # straight from the held-aside run
        (attachment,) = translate_message(raw).fields["attachments"]
        assert attachment.payload == data
        assert translate_message(raw).fields["body"] == "see the attachment"
        _assert_same_reading(raw)


def test_a_long_text_body_and_preamble_held_aside_come_back_whole() -> None:
    text = "".join(f"line {i} of a long report, nothing special\n" for i in range(5_000))
    raw = (
        "From: s@x.com\nTo: t@x.com\nContent-Type: multipart/mixed; boundary=B\n\n"
        f"{text}--B\nContent-Type: text/plain; charset=utf-8\n\n{text}--B--\n\n{text}"
    ).encode()
    blobs = Blobs(raw)
    assert len(blobs.runs) == 3
    assert translate_message(raw).fields["body"] == text.removesuffix("\n")
    assert_held_aside_parse_is_the_same(raw)
    _assert_same_reading(raw)


def test_held_aside_runs_hold_only_lines_the_parser_takes_as_they_are() -> None:
    # Checked line by line, in Python, on messages built from the pieces that matter.
    rnd = random.Random(3211)
    pieces = [b"a", b"From ", b"-", b"--", b":", b" ", b"\n", b"\r\n", b"\r", b"x", b"=?"]
    pieces += [b"Content-Type: message/rfc822\n", b"--b\n", b"\n\n"]
    held = inert = 0
    for _ in range(20_000):
        raw = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 30)))
        anywhere = parsing._body_runs(raw) is None  # a body may be a message: inert lines only
        inert += anywhere
        for start, end in Blobs(raw, minimum=1).runs:
            held += 1
            run = raw[start:end]
            assert start == 0 or raw[start - 1 : start] == b"\n", raw
            assert run.endswith(b"\n"), raw
            lines = run.splitlines(keepends=True)
            assert len(lines) == run.count(b"\n"), raw  # no lone CR starts a line inside
            for line in lines:
                assert not line.startswith(b"--"), raw
                if anywhere:
                    assert line.strip(b"\r\n") and b":" not in line, raw
                    assert not line.startswith((b" ", b"\t", b"-", b"From ")), raw
    assert held > 5_000
    assert inert > 500  # the messages that may enclose one were put to the test too


def test_unnamed_enclosed_messages_reports_and_text_parts_travel_as_text() -> None:
    inner = b"From: x@y.com\nSubject: inner\n\ninner body\n"
    report = (
        b"Reporting-MTA: dns; mx.example.org\n\n"
        b"Final-Recipient: rfc822; a@example.com\nAction: failed\n"
    )
    raw = b"From: s@x.com\nTo: t@x.com\n" + _multipart(
        b"Content-Type: text/plain\n\nsee below\n",
        b"Content-Type: message/delivery-status\n\n" + report,
        b"Content-Type: message/rfc822\n\n" + inner,
        b"Content-Type: text/rfc822-headers\n\nFrom: x@y.com\n",
        subtype="report; report-type=delivery-status",
    )
    fields = translate_message(raw).fields
    assert fields["body"] == "see below\n"
    status, enclosed, headers = fields["attachments"]
    assert (headers.filename, headers.payload) == ("attachment3.txt", b"From: x@y.com\n")
    assert status.filename == "attachment1.txt"
    assert b"Final-Recipient: rfc822; a@example.com" in status.payload
    assert b"Reporting-MTA: dns; mx.example.org" in status.payload
    assert enclosed.filename == "attachment2.txt"
    assert enclosed.payload == inner
    _assert_same_reading(raw)


def test_a_subject_that_says_message_leaves_the_body_runs_alone() -> None:
    # Only a Content-Type that may enclose a message makes colons and indented lines count.
    log = b"".join(b"ERROR: job %d failed: see the message above\n  at line %d\n" % (i, i)
                   for i in range(3_000))  # fmt: skip
    raw = b"From: s@x.com\nTo: t@x.com\nSubject: Error message from cron\n\n" + log
    assert Blobs(raw).runs == [(raw.index(log), len(raw))]
    enclosing = raw.replace(b"Subject:", b"Content-Type: multipart/digest; boundary=b\nSubject:")
    assert Blobs(enclosing).runs == []  # every line has a colon or leading white space
    folded = raw.replace(b"Subject:", b"Content-Type:\n message/rfc822\nSubject:")
    assert Blobs(folded).runs == []


def test_an_8bit_attachment_in_a_charset_that_cannot_decode_it_is_sent_as_bytes() -> None:
    # Found by the longer fuzz run: get_payload() decoded it with punycode, which raised.
    raw = (
        b"From: a@b.org\r\nTo: a@b.org\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\n\r\nhello\r\n--B\r\nContent-Type: text/plain; charset=punycode\r\n\r\n"
        b"Gr\xfc\xdfe\r\n--B--\r\n"
    )
    (attachment,) = translate_message(raw).fields["attachments"]
    assert (attachment.filename, attachment.payload) == ("attachment1.txt", b"Gr\xfc\xdfe")
    _assert_same_reading(raw)

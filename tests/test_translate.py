"""translate_message: RFC 2822 bytes to EmailMessage keyword arguments, no I/O."""

from __future__ import annotations

import os
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from google.appengine.api import mail

from gaemail import protocol
from gaemail.server.refusals import MessageRefused
from gaemail.server.translate import translate_message

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

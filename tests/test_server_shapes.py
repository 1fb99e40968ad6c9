"""Each message shape through the app, the SDK's EmailMessage and the SDK's mail stub."""

from __future__ import annotations

import os
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import TYPE_CHECKING

from gaemail import protocol

if TYPE_CHECKING:
    from flask.testing import FlaskClient

    from conftest import PostMessage
    from gaemail.server.local import OutboxMailStub

PDF = b"%PDF-1.4\n" + bytes(range(256)) + b"\n%%EOF\n"


def _send(post_message: PostMessage, msg: EmailMessage | bytes) -> None:
    raw = msg if isinstance(msg, bytes) else msg.as_bytes()
    response = post_message(raw)
    assert response.status_code == protocol.SENT, response.get_data(as_text=True)
    assert response.get_data() == b""


def _refused(post_message: PostMessage, msg: EmailMessage | bytes, reason: str) -> str:
    raw = msg if isinstance(msg, bytes) else msg.as_bytes()
    response = post_message(raw)
    text = response.get_data(as_text=True)
    assert response.status_code == protocol.BAD_REQUEST, text
    assert response.headers[protocol.ERROR_HEADER] == protocol.KIND_MESSAGE.name
    assert reason in text
    assert text.endswith("\n")
    assert "\n" not in text[:-1]
    return text


def test_get_root_answers_uptime_checks(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == protocol.OK
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True).strip()


def test_plain_text(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    _send(post_message, plain_message)
    (sent,) = mail_stub.get_sent_messages()
    assert sent.sender == "Sender <sender@example.com>"
    assert sent.to == "rcpt@example.org"
    assert sent.subject == "Test message"
    assert sent.body.decode() == "Hello.\n"


def test_utf8_subject_and_display_names(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    plain_message.replace_header("From", "Sénder Näme <sender@example.com>")
    plain_message.replace_header("To", "Jöhn Dœ <j@example.org>")
    plain_message.replace_header("Subject", "Grüße aus Köln ☃")
    _send(post_message, plain_message)
    (request,) = mail_stub.requests
    assert request.Subject == "Grüße aus Köln ☃"
    assert str(make_header(decode_header(request.Sender))) == "Sénder Näme <sender@example.com>"
    assert str(make_header(decode_header(request.To[0]))) == "Jöhn Dœ <j@example.org>"


def test_comma_in_display_name_is_one_recipient(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    plain_message.replace_header("To", '"Doe, John" <j@example.org>')
    _send(post_message, plain_message)
    (request,) = mail_stub.requests
    assert list(request.To) == ['"Doe, John" <j@example.org>']


def test_cc_is_cc_and_bcc_is_bcc(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    plain_message["Cc"] = "c@example.org"
    plain_message["Bcc"] = "b@example.org"
    _send(post_message, plain_message)
    (request,) = mail_stub.requests
    assert (list(request.To), list(request.Cc), list(request.Bcc)) == (
        ["rcpt@example.org"],
        ["c@example.org"],
        ["b@example.org"],
    )


def test_reply_to(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    plain_message["Reply-To"] = "Help Desk <help@example.com>"
    _send(post_message, plain_message)
    assert mail_stub.get_sent_messages()[0].reply_to == "Help Desk <help@example.com>"


def test_text_and_html_alternative(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    plain_message.add_alternative("<p>Hello.</p>\n", subtype="html")
    _send(post_message, plain_message)
    (sent,) = mail_stub.get_sent_messages()
    assert sent.body.decode() == "Hello.\n"
    assert sent.html.decode() == "<p>Hello.</p>\n"


def test_html_only(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    plain_message.set_content("<p>Only HTML</p>\n", subtype="html")
    _send(post_message, plain_message)
    (request,) = mail_stub.requests
    assert request.HtmlBody == "<p>Only HTML</p>\n"
    assert not request.HasField("TextBody")


def test_pdf_attachment(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    plain_message.add_attachment(PDF, maintype="application", subtype="pdf", filename="r.pdf")
    _send(post_message, plain_message)
    (request,) = mail_stub.requests
    (attachment,) = request.Attachment
    assert (attachment.FileName, attachment.Data) == ("r.pdf", PDF)


def test_inline_image_with_content_id(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(100)
    plain_message.add_alternative('<img src="cid:logo@example.com">\n', subtype="html")
    plain_message.get_payload()[1].add_related(
        png, maintype="image", subtype="png", cid="<logo@example.com>", filename="logo.png"
    )
    _send(post_message, plain_message)
    (request,) = mail_stub.requests
    (image,) = request.Attachment
    assert (image.FileName, image.Data, image.ContentID) == ("logo.png", png, "<logo@example.com>")


def test_latin1_8bit_body(post_message: PostMessage, mail_stub: OutboxMailStub) -> None:
    raw = (
        b"From: s@example.com\nTo: t@example.org\nSubject: Umlaute\n"
        b"Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
        b"Gr\xfc\xdfe aus K\xf6ln\n"
    )
    _send(post_message, raw)
    assert mail_stub.get_sent_messages()[0].body.decode() == "Grüße aus Köln\n"


def test_list_unsubscribe_kept_custom_header_dropped(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    plain_message["list-unsubscribe"] = "<mailto:unsubscribe@example.com>"
    plain_message["X-Custom"] = "dropped"
    _send(post_message, plain_message)
    (request,) = mail_stub.requests
    assert {h.name: h.value for h in request.Header} == {
        "List-Unsubscribe": "<mailto:unsubscribe@example.com>"
    }


def test_blocked_attachment_type_is_refused(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    plain_message.add_attachment(
        b"MZ\x90\x00", maintype="application", subtype="x-msdownload", filename="setup.EXE"
    )
    _refused(post_message, plain_message, "InvalidAttachmentTypeError")
    assert mail_stub.get_sent_messages() == []


def test_no_recipients_is_refused(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    del plain_message["To"]
    _refused(post_message, plain_message, "No recipients")
    assert mail_stub.get_sent_messages() == []


def test_unparseable_message_is_refused(post_message: PostMessage) -> None:
    _refused(post_message, b"this is not an RFC 2822 message\n", "Cannot parse the message")


def test_message_without_body_is_refused(post_message: PostMessage) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"] = "s@example.com", "t@example.org"
    msg.set_content(PDF, maintype="application", subtype="pdf", filename="only.pdf")
    _refused(post_message, msg, "No body")


def test_too_many_recipients_is_refused(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    plain_message.replace_header("To", ", ".join(f"r{i}@example.org" for i in range(300)))
    plain_message["Bcc"] = ", ".join(f"b{i}@example.org" for i in range(201))
    text = _refused(post_message, plain_message, "Too many recipients: 501")
    assert "at most 500" in text
    assert mail_stub.get_sent_messages() == []


def test_exactly_the_recipient_limit_is_sent(
    post_message: PostMessage, plain_message: EmailMessage
) -> None:
    plain_message.replace_header("To", ", ".join(f"r{i}@example.org" for i in range(500)))
    _send(post_message, plain_message)

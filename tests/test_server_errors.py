"""The 413, 500 and 503 answers, the SDK error table, and the fix_sender paths."""

from __future__ import annotations

from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import pytest
from google.appengine.api import apiproxy_stub_map, mail_errors, mail_service_pb2
from google.appengine.runtime import apiproxy_errors

from gaemail import protocol
from gaemail.protocol import v1
from gaemail.server import ServerConfig
from gaemail.server.local import OutboxMailStub, create_local_app
from gaemail.server.local.outbox import Maildir
from gaemail.server.refusals import refusal_for
from gaemail.server.sending import SMTP_MODE_VARIABLE
from smtp_receiver import smtp_receiver

if TYPE_CHECKING:
    from pathlib import Path

    from flask.testing import FlaskClient

    from conftest import PostMessage

ErrorCode = mail_service_pb2.MailServiceError


def _assert_refused(response: Any, status: int, kind: str) -> str:
    text: str = response.get_data(as_text=True)
    assert (response.status_code, response.headers.get(protocol.ERROR_HEADER)) == (status, kind), (
        text
    )
    assert response.mimetype == "text/plain"
    assert text.count("\n") == 1
    assert text.endswith("\n")
    return text


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [
        (apiproxy_errors.OverQuotaError(), "3600"),
        (apiproxy_errors.DeadlineExceededError(), "60"),
        (apiproxy_errors.RPCFailedError("connection reset"), "60"),
        (apiproxy_errors.CancelledError(), "60"),
        (apiproxy_errors.CapabilityDisabledError(), "60"),
        (apiproxy_errors.ApplicationError(ErrorCode.INTERNAL_ERROR, "backend"), "60"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value,
)
def test_transient_api_errors_answer_503_with_retry_after(
    post_message: PostMessage,
    mail_stub: OutboxMailStub,
    plain_message: EmailMessage,
    error: apiproxy_errors.Error,
    retry_after: str,
) -> None:
    mail_stub.SetError(error, method="Send")
    response = post_message(plain_message.as_bytes())
    _assert_refused(response, protocol.UNAVAILABLE, protocol.KIND_TEMPORARY.name)
    assert response.headers["Retry-After"] == retry_after
    assert mail_stub.get_sent_messages() == []


@pytest.mark.parametrize(
    "error",
    [
        apiproxy_errors.FeatureNotEnabledError(),
        apiproxy_errors.CallNotFoundError(),
        apiproxy_errors.RPCFailedError("Attempted RPC call without active security ticket"),
    ],
    ids=lambda value: type(value).__name__,
)
def test_server_misconfiguration_answers_500(
    post_message: PostMessage,
    mail_stub: OutboxMailStub,
    plain_message: EmailMessage,
    error: apiproxy_errors.Error,
) -> None:
    mail_stub.SetError(error, method="Send")
    response = post_message(plain_message.as_bytes())
    _assert_refused(response, protocol.SERVER_ERROR, protocol.KIND_INTERNAL.name)
    assert "Retry-After" not in response.headers


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (ErrorCode.BAD_REQUEST, "BadRequestError"),
        (ErrorCode.INVALID_ATTACHMENT_TYPE, "InvalidAttachmentTypeError"),
        (ErrorCode.INVALID_HEADER_NAME, "InvalidHeaderNameError"),
        (ErrorCode.INVALID_CONTENT_ID, "ApplicationError: 6"),
    ],
)
def test_callers_fault_api_errors_answer_400(
    post_message: PostMessage,
    mail_stub: OutboxMailStub,
    plain_message: EmailMessage,
    code: int,
    reason: str,
) -> None:
    mail_stub.SetError(apiproxy_errors.ApplicationError(code, "detail"), method="Send")
    text = _assert_refused(
        post_message(plain_message.as_bytes()), protocol.BAD_REQUEST, protocol.KIND_MESSAGE.name
    )
    assert reason in text


def test_api_request_too_large_answers_413(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    mail_stub.SetError(apiproxy_errors.RequestTooLargeError(), method="Send")
    response = post_message(plain_message.as_bytes())
    _assert_refused(response, protocol.TOO_LARGE, protocol.KIND_TOO_LARGE.name)


def test_request_body_over_the_limit_answers_413_unread(client: FlaskClient) -> None:
    assert client.application.config["MAX_CONTENT_LENGTH"] == protocol.MAX_REQUEST_BYTES
    # The declared length decides: nothing of the body is read.
    response = client.post(
        "/",
        data=b"msg=x&signature=y",
        content_type=v1.CONTENT_TYPE,
        environ_overrides={"CONTENT_LENGTH": str(protocol.MAX_REQUEST_BYTES + 1)},
    )
    text = _assert_refused(response, protocol.TOO_LARGE, protocol.KIND_TOO_LARGE.name)
    assert str(protocol.MAX_REQUEST_BYTES) in text


def test_message_over_the_mail_api_limit_answers_413(
    post_message: PostMessage, mail_stub: OutboxMailStub
) -> None:
    head = b"From: s@example.com\nTo: t@example.org\n\n"
    raw = head + b"a" * (protocol.MAX_MESSAGE_BYTES + 1 - len(head))
    response = post_message(raw)
    text = _assert_refused(response, protocol.TOO_LARGE, protocol.KIND_TOO_LARGE.name)
    assert f"{protocol.MAX_MESSAGE_BYTES + 1} bytes" in text
    assert mail_stub.get_sent_messages() == []


def test_unexpected_exception_answers_500_text(
    post_message: PostMessage, plain_message: EmailMessage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_send(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    # A bug on the way to the Mail API: neither an SDK error nor the message's fault.
    monkeypatch.setattr(OutboxMailStub, "_Dynamic_Send", broken_send)
    response = post_message(plain_message.as_bytes())
    text = _assert_refused(response, protocol.SERVER_ERROR, protocol.KIND_INTERNAL.name)
    assert "a bug" not in text


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (mail_errors.Error("Failed to send email via SMTP: refused"), protocol.UNAVAILABLE),
        (mail_errors.MissingBodyError(), protocol.BAD_REQUEST),
        (mail_errors.UnknownCharsetError("x"), protocol.BAD_REQUEST),
        (ValueError("May not set empty value for 'html'"), protocol.BAD_REQUEST),
        (apiproxy_errors.InterruptedError(RuntimeError(), None), protocol.UNAVAILABLE),
        (apiproxy_errors.ArgumentError(), protocol.SERVER_ERROR),
        (apiproxy_errors.ApplicationError(99), protocol.SERVER_ERROR),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_error_table_for_errors_the_stub_cannot_raise(error: Exception, status: int) -> None:
    assert refusal_for(error).status == status


def test_sdk_error_reasons_name_the_error_on_one_line() -> None:
    refusal = refusal_for(
        mail_errors.InvalidAttachmentTypeError("Extension exe\nis not supported.")
    )
    assert str(refusal) == (
        "The Mail API refused the message: InvalidAttachmentTypeError: Extension exe is not"
        " supported."
    )


# -- fix_sender ---------------------------------------------------------------


class AuthorizingMailStub(OutboxMailStub):
    """The SDK stub plus the one rule it lacks: only authorized senders may send."""

    def __init__(self, authorized: set[str], outbox: Maildir) -> None:
        super().__init__(outbox)
        self.authorized = authorized

    def _Dynamic_Send(self, request: Any, response: Any) -> None:
        if request.Sender not in self.authorized:
            raise apiproxy_errors.ApplicationError(ErrorCode.UNAUTHORIZED_SENDER, request.Sender)
        super()._Dynamic_Send(request, response)


@pytest.fixture
def sender_check(
    local_app: Any, outbox_dir: Path, server_config: ServerConfig
) -> AuthorizingMailStub:
    """A stub that authorizes only the proxy's default sender."""
    assert server_config.default_sender
    stub = AuthorizingMailStub({server_config.default_sender}, Maildir(outbox_dir))
    apiproxy_stub_map.apiproxy.ReplaceStub("mail", stub)
    return stub


def test_refused_sender_without_fix_sender_is_400_naming_it(
    post_message: PostMessage, sender_check: AuthorizingMailStub, plain_message: EmailMessage
) -> None:
    response = post_message(plain_message.as_bytes())
    text = _assert_refused(response, protocol.BAD_REQUEST, protocol.KIND_MESSAGE.name)
    assert "Sender <sender@example.com>" in text
    assert sender_check.get_sent_messages() == []


def test_fix_sender_resends_from_the_default_with_reply_to(
    post_message: PostMessage,
    sender_check: AuthorizingMailStub,
    plain_message: EmailMessage,
    server_config: ServerConfig,
) -> None:
    response = post_message(plain_message.as_bytes(), fix_sender=True)
    assert response.status_code == protocol.SENT
    (sent,) = sender_check.get_sent_messages()
    assert sent.sender == server_config.default_sender
    assert sent.reply_to == "Sender <sender@example.com>"


def test_fix_sender_keeps_an_existing_reply_to(
    post_message: PostMessage, sender_check: AuthorizingMailStub, plain_message: EmailMessage
) -> None:
    plain_message["Reply-To"] = "list@example.com"
    assert post_message(plain_message.as_bytes(), fix_sender=True).status_code == protocol.SENT
    assert sender_check.get_sent_messages()[0].reply_to == "list@example.com"


def test_fix_sender_resends_the_attachments_and_bodies_too(
    post_message: PostMessage,
    sender_check: AuthorizingMailStub,
    plain_message: EmailMessage,
    server_config: ServerConfig,
) -> None:
    # The second send is of the first request, edited: nothing of the message is lost.
    data = bytes(range(256)) * 40
    plain_message.add_alternative("<p>Hello.</p>", subtype="html")
    plain_message.add_attachment(data, maintype="application", subtype="pdf", filename="a.pdf")
    assert post_message(plain_message.as_bytes(), fix_sender=True).status_code == protocol.SENT
    (sent,) = sender_check.get_sent_messages()
    assert sent.sender == server_config.default_sender
    assert sent.body.decode() == "Hello.\n"
    assert sent.html.decode() == "<p>Hello.</p>\n"
    (attachment,) = sender_check.requests[-1].Attachment  # exact bytes, as sent
    assert (attachment.FileName, attachment.Data) == ("a.pdf", data)


def test_fix_sender_leaves_an_authorized_sender_alone(
    post_message: PostMessage,
    sender_check: AuthorizingMailStub,
    plain_message: EmailMessage,
) -> None:
    sender_check.authorized.add("Sender <sender@example.com>")
    assert post_message(plain_message.as_bytes(), fix_sender=True).status_code == protocol.SENT
    (sent,) = sender_check.get_sent_messages()
    assert sent.sender == "Sender <sender@example.com>"
    assert not hasattr(sent, "reply_to")


def test_unauthorized_default_sender_is_the_proxys_fault(
    post_message: PostMessage, sender_check: AuthorizingMailStub, plain_message: EmailMessage
) -> None:
    sender_check.authorized.clear()
    response = post_message(plain_message.as_bytes(), fix_sender=True)
    text = _assert_refused(response, protocol.SERVER_ERROR, protocol.KIND_INTERNAL.name)
    assert "default sender" in text


def test_fix_sender_without_a_default_sender_is_400(
    outbox_dir: Path, plain_message: EmailMessage
) -> None:
    app = create_local_app(ServerConfig(keys=(b"k",)), outbox_dir)
    stub = AuthorizingMailStub(set(), Maildir(outbox_dir))
    apiproxy_stub_map.apiproxy.ReplaceStub("mail", stub)
    body = v1.encode_request(plain_message.as_bytes(), b"k", fix_sender=True)
    response = app.test_client().post("/", data=body, content_type=v1.CONTENT_TYPE)
    _assert_refused(response, protocol.BAD_REQUEST, protocol.KIND_MESSAGE.name)


def test_no_from_uses_the_default_sender_with_fix_sender(
    post_message: PostMessage,
    mail_stub: OutboxMailStub,
    plain_message: EmailMessage,
    server_config: ServerConfig,
) -> None:
    del plain_message["From"]
    assert post_message(plain_message.as_bytes(), fix_sender=True).status_code == protocol.SENT
    assert mail_stub.get_sent_messages()[0].sender == server_config.default_sender


def test_no_from_without_fix_sender_is_400(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    del plain_message["From"]
    text = _assert_refused(
        post_message(plain_message.as_bytes()), protocol.BAD_REQUEST, protocol.KIND_MESSAGE.name
    )
    assert text == protocol.REASON_NO_SENDER + "\n"
    assert mail_stub.get_sent_messages() == []


def test_the_sdks_smtp_mode_sends_by_smtp_not_through_the_mail_api(
    post_message: PostMessage,
    mail_stub: OutboxMailStub,
    plain_message: EmailMessage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with smtp_receiver() as received:
        monkeypatch.setenv(SMTP_MODE_VARIABLE, "true")
        monkeypatch.setenv("APPENGINE_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("APPENGINE_SMTP_PORT", str(received.port))
        monkeypatch.setenv("APPENGINE_SMTP_USE_TLS", "false")
        plain_message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf",
                                     filename="a.pdf")  # fmt: skip
        assert post_message(plain_message.as_bytes()).status_code == protocol.SENT
    ((envelope_from, recipients, data),) = received.messages
    assert "sender@example.com" in envelope_from
    assert recipients == ["rcpt@example.org"]
    assert b"Subject: Test message" in data
    assert b'filename="a.pdf"' in data
    assert mail_stub.get_sent_messages() == []

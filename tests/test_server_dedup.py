"""The proxy's duplicate check: a retry is answered without a second send, and a
different message that reuses a Message-ID is still sent."""

from __future__ import annotations

from email.message import EmailMessage
from typing import TYPE_CHECKING

from gaemail import protocol

if TYPE_CHECKING:
    from conftest import PostMessage
    from gaemail.server.local import OutboxMailStub


def test_a_retry_is_answered_sent_and_not_sent_again(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    data = plain_message.as_bytes()
    assert post_message(data).status_code == protocol.SENT
    assert post_message(data).status_code == protocol.SENT
    assert len(mail_stub.requests) == 1


def test_another_message_with_the_same_message_id_is_sent(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    assert post_message(plain_message.as_bytes()).status_code == protocol.SENT
    plain_message.replace_header("Subject", "Another message")
    assert post_message(plain_message.as_bytes()).status_code == protocol.SENT
    assert [r.Subject for r in mail_stub.requests] == ["Test message", "Another message"]


def test_messages_without_message_id_are_never_taken_for_retries(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    del plain_message["Message-ID"]
    data = plain_message.as_bytes()
    assert post_message(data).status_code == protocol.SENT
    assert post_message(data).status_code == protocol.SENT
    assert len(mail_stub.requests) == 2


def test_a_failed_send_leaves_the_retry_free_to_send(
    post_message: PostMessage, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    from google.appengine.runtime import apiproxy_errors

    mail_stub.SetError(apiproxy_errors.OverQuotaError())
    assert post_message(plain_message.as_bytes()).status_code == protocol.UNAVAILABLE
    mail_stub.SetError(None)
    assert post_message(plain_message.as_bytes()).status_code == protocol.SENT
    assert len(mail_stub.requests) == 1

"""Handing a translated message to the Mail API, and the default-sender fallback."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any

from google.appengine.api import api_base_pb2, apiproxy_stub_map, mail, mail_errors
from google.appengine.runtime import apiproxy_errors

from gaemail.server.refusals import (
    CONSTRUCTION_ERRORS,
    SDK_ERRORS,
    MessageRefused,
    Misconfigured,
    refusal_for,
)
from gaemail.server.translate import MailFields

# The client's Message-ID, which the Mail API does not carry.  The local stub
# reads it to label what it delivers: it runs in the caller's thread, and a stub
# the SDK runs on its thread pool gets a copy of the caller's context, so a
# ContextVar reaches it either way.
ORIGINAL_MESSAGE_ID: ContextVar[str | None] = ContextVar(
    "gaemail_original_message_id", default=None
)


def send_message(
    fields: MailFields, *, message_id: str | None, fallback_sender: str | None
) -> None:
    """Send `fields`; raises a Refusal when nothing was sent.

    When the Mail API refuses the sender and `fallback_sender` is given, the
    message goes out once more from `fallback_sender`, with the refused sender
    as Reply-To so that answers still reach it.

    The message's contents (body, html, attachments) leave `fields` once they
    are in the Mail API's request: the request is what is sent, twice if need
    be, and a 25 MB message need not be held twice while it is.
    """
    with _labelled(message_id):
        message = _construct(fields)
        if os.environ.get(SMTP_MODE_VARIABLE) == "true":
            # The SDK builds a MIME message of its own from the EmailMessage.
            send_once: Callable[[], None] = partial(_sent, message)
            resend: Callable[[str], None] = partial(_resent_by_smtp, fields)
        else:
            request = _request(message)
            del message
            for name in _CONTENTS:
                fields.pop(name, None)  # type: ignore[misc]
            send_once = partial(_call, request)
            resend = partial(_resent, request, fields)
        try:
            send_once()
            return
        except mail_errors.InvalidSenderError:
            if not fallback_sender or fields["sender"] == fallback_sender:
                raise _sender_refusal(fields["sender"], fallback_sender) from None
        try:
            resend(fallback_sender)
        except mail_errors.InvalidSenderError:
            raise _sender_refusal(fallback_sender, fallback_sender) from None


# mail.py sends through smtplib instead of the Mail API when this is "true".
SMTP_MODE_VARIABLE = "APPENGINE_USE_SMTP_MAIL_SERVICE"
_CONTENTS = ("body", "html", "attachments")


@contextmanager
def _labelled(message_id: str | None) -> Iterator[None]:
    # Reset afterwards: server threads are reused for later requests.
    token = ORIGINAL_MESSAGE_ID.set(message_id)
    try:
        yield
    finally:
        ORIGINAL_MESSAGE_ID.reset(token)


def _construct(fields: MailFields) -> Any:
    try:
        return mail.EmailMessage(**fields)
    except CONSTRUCTION_ERRORS as exc:
        raise refusal_for(exc) from exc


def _request(message: Any) -> Any:
    """The MailMessage protobuf that EmailMessage.send() would send."""
    try:
        return message.ToProto()
    except CONSTRUCTION_ERRORS as exc:
        raise refusal_for(exc) from exc


def _call(request: Any) -> None:
    """One Mail API call, as EmailMessage.send() makes it; InvalidSenderError passes through."""
    try:
        try:
            apiproxy_stub_map.MakeSyncCall("mail", "Send", request, api_base_pb2.VoidProto())
        except apiproxy_errors.ApplicationError as exc:
            error = mail.ERROR_MAP.get(exc.application_error)
            if error is None:
                raise
            raise error(exc.error_detail) from exc
    except mail_errors.InvalidSenderError:
        raise
    except SDK_ERRORS as exc:
        raise refusal_for(exc) from exc


def _resent(request: Any, fields: MailFields, fallback_sender: str) -> None:
    """`request` once more, from `fallback_sender`, the refused sender as Reply-To."""
    try:
        mail.check_email_valid(fallback_sender, "sender")
    except mail_errors.Error as exc:
        raise refusal_for(exc) from exc
    request.Sender = fallback_sender
    if "reply_to" not in fields:
        request.ReplyTo = fields["sender"]
    _call(request)


def _resent_by_smtp(fields: MailFields, fallback_sender: str) -> None:
    resent: MailFields = {**fields, "sender": fallback_sender}
    resent.setdefault("reply_to", fields["sender"])
    _sent(_construct(resent))


def _sent(message: Any) -> None:
    try:
        message.send()
    except mail_errors.InvalidSenderError:
        raise
    except SDK_ERRORS as exc:
        raise refusal_for(exc) from exc


def _sender_refusal(sender: str, fallback_sender: str | None) -> MessageRefused | Misconfigured:
    if sender == fallback_sender:
        # The proxy chose this sender, so the fault is in its setup, not the message.
        return Misconfigured(
            f"The proxy's default sender {sender} is not an authorized sender of this"
            " App Engine application: add it to the Mail API's authorized senders"
        )
    return MessageRefused(
        f"Unauthorized sender {sender}: send from an authorized sender of the App Engine"
        " application, or ask the proxy to fix the sender"
    )

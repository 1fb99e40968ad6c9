"""Handing a translated message to the Mail API, and the default-sender fallback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from google.appengine.api import mail, mail_errors

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
) -> MailFields:
    """Send `fields`; returns what was sent.  Raises a Refusal when nothing was.

    When the Mail API refuses the sender and `fallback_sender` is given, the
    message goes out once more from `fallback_sender`, with the refused sender
    as Reply-To so that answers still reach it.
    """
    with _labelled(message_id):
        try:
            _send(fields)
            return fields
        except mail_errors.InvalidSenderError:
            if not fallback_sender or fields["sender"] == fallback_sender:
                raise _sender_refusal(fields["sender"], fallback_sender) from None
        resent = _from_fallback(fields, fallback_sender)
        try:
            _send(resent)
        except mail_errors.InvalidSenderError:
            raise _sender_refusal(fallback_sender, fallback_sender) from None
        return resent


@contextmanager
def _labelled(message_id: str | None) -> Iterator[None]:
    # Reset afterwards: server threads are reused for later requests.
    token = ORIGINAL_MESSAGE_ID.set(message_id)
    try:
        yield
    finally:
        ORIGINAL_MESSAGE_ID.reset(token)


def _send(fields: MailFields) -> None:
    """One Mail API call; InvalidSenderError passes through for the caller to judge."""
    try:
        message = mail.EmailMessage(**fields)
    except CONSTRUCTION_ERRORS as exc:
        raise refusal_for(exc) from exc
    try:
        message.send()
    except mail_errors.InvalidSenderError:
        raise
    except SDK_ERRORS as exc:
        raise refusal_for(exc) from exc


def _from_fallback(fields: MailFields, fallback_sender: str) -> MailFields:
    resent: MailFields = {**fields, "sender": fallback_sender}
    resent.setdefault("reply_to", fields["sender"])
    return resent


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

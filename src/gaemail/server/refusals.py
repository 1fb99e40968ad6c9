"""What the proxy answers when it does not send: one exception per answer, one SDK table.

Each refusal carries its kind from the protocol's table (its HTTP status and its
`X-Gaemail-Error` name), so the handler turns any of them into a response the
same way.  `refusal_for` is the
one place that decides who is at fault for an error from the App Engine SDK.
"""

from __future__ import annotations

from google.appengine.api import mail_errors, mail_service_pb2
from google.appengine.runtime import apiproxy_errors

from gaemail import protocol

# A minute is long enough for a deadline or a hiccup; clients back off further.
RETRY_AFTER_SECONDS = 60
# The daily quota resets at midnight Pacific time; asking every minute only burns calls.
RETRY_AFTER_OVER_QUOTA_SECONDS = 3600


class Refusal(Exception):
    """A request answered without sending; str() is the one-line reason.

    Its `kind`, from the protocol's table, gives its status and what the client
    makes of it.
    """

    kind: protocol.Kind = protocol.KIND_MESSAGE
    retry_after: int | None = None

    def __init__(self, reason: str) -> None:
        super().__init__(" ".join(reason.split()))

    @property
    def status(self) -> int:
        return self.kind.status


class RequestRefused(Refusal):
    """The body is not a well-formed v1 request."""

    kind = protocol.KIND_REQUEST


class SignatureRefused(Refusal):
    """No configured key signed the message."""

    kind = protocol.KIND_SIGNATURE


class MessageRefused(Refusal):
    """The message cannot be sent as it is; sending it again will not help."""


class TooLarge(Refusal):
    """The request or the message is over a size limit."""

    kind = protocol.KIND_TOO_LARGE


class Unavailable(Refusal):
    """The Mail API failed for now; the same request may succeed later."""

    kind = protocol.KIND_TEMPORARY
    retry_after = RETRY_AFTER_SECONDS


class OverQuota(Unavailable):
    """The app used up a Mail API quota."""

    retry_after = RETRY_AFTER_OVER_QUOTA_SECONDS


class Misconfigured(Refusal):
    """The proxy itself is set up wrongly; the operator must act."""

    kind = protocol.KIND_INTERNAL


# Exceptions the SDK raises from EmailMessage(...) and send().  ValueError and
# TypeError come from EmailMessage's setters (empty values, wrong types); catch
# them around construction only, where they can only mean a bad message.
SDK_ERRORS = (mail_errors.Error, apiproxy_errors.Error)
CONSTRUCTION_ERRORS = (*SDK_ERRORS, ValueError, TypeError)

_ErrorTypes = type[BaseException] | tuple[type[BaseException], ...]
_ErrorTable = tuple[tuple[_ErrorTypes, type[Refusal]], ...]

# Who is at fault, first match wins (subclasses before their bases).
# See the reference notes on the SDK, section 8.
_SDK_TABLE: _ErrorTable = (
    (
        (
            mail_errors.InvalidSenderError,
            mail_errors.InvalidEmailError,
            mail_errors.MissingRecipientsError,
            mail_errors.MissingSenderError,
            mail_errors.MissingSubjectError,
            mail_errors.MissingBodyError,
            mail_errors.InvalidAttachmentTypeError,
            mail_errors.InvalidHeaderNameError,
            mail_errors.BadRequestError,
            mail_errors.PayloadEncodingError,
            ValueError,
            TypeError,
        ),
        MessageRefused,
    ),
    # The base class alone comes from the SMTP path, where a refused connection and
    # a full mailbox look the same: treat as transient.
    (mail_errors.Error, Unavailable),
    (apiproxy_errors.RequestTooLargeError, TooLarge),
    (apiproxy_errors.OverQuotaError, OverQuota),
    (
        (
            apiproxy_errors.DeadlineExceededError,
            apiproxy_errors.RPCFailedError,
            apiproxy_errors.CancelledError,
            apiproxy_errors.CapabilityDisabledError,
            apiproxy_errors.InterruptedError,
        ),
        Unavailable,
    ),
    (apiproxy_errors.Error, Misconfigured),
)

# Codes that send() leaves as a raw ApplicationError (it maps 2 to 5 itself).
_APPLICATION_ERRORS: dict[int, type[Refusal]] = {
    mail_service_pb2.MailServiceError.INTERNAL_ERROR: Unavailable,
    mail_service_pb2.MailServiceError.INVALID_CONTENT_ID: MessageRefused,
}

_SUMMARIES: dict[type[Refusal], str] = {
    MessageRefused: "The Mail API refused the message",
    TooLarge: "The message is too large for the Mail API",
    Unavailable: "The Mail API is unavailable, try again later",
    OverQuota: "The Mail API quota is used up, try again later",
    Misconfigured: "The proxy cannot reach the Mail API; its operator must fix its setup",
}


def refusal_for(exc: BaseException) -> Refusal:
    """The answer for an exception raised by the SDK (one of CONSTRUCTION_ERRORS)."""
    refusal_type = _refusal_type(exc)
    return refusal_type(f"{_SUMMARIES[refusal_type]}: {describe_sdk_error(exc)}")


def _refusal_type(exc: BaseException) -> type[Refusal]:
    if isinstance(exc, apiproxy_errors.ApplicationError):
        return _APPLICATION_ERRORS.get(exc.application_error, Misconfigured)
    # With no ticket the call never left this process: the app is not wrapped, or
    # the call ran outside the request thread.  Retrying cannot help.
    if isinstance(exc, apiproxy_errors.RPCFailedError) and "security ticket" in str(exc):
        return Misconfigured
    for error_types, refusal_type in _SDK_TABLE:
        if isinstance(exc, error_types):
            return refusal_type
    return Misconfigured


def describe_sdk_error(exc: BaseException) -> str:
    """'ClassName: detail' for an SDK exception, whose str() is often empty."""
    detail = str(exc)
    if isinstance(exc, apiproxy_errors.ApplicationError):
        detail = f"{exc.application_error} {exc.error_detail}".strip()
    name = type(exc).__name__
    return f"{name}: {detail}" if detail else name

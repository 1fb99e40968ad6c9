"""The exception tree, and the one table that ties each error to its sysexits code.

Every module raises these; only gaemail.exits turns them into exit statuses.
Callers of the Python API catch `MessageSendingFailure` for anything the proxy or
the network did, and `ConfigurationError` for a setup mistake, which
`fail_silently` never hides.
"""

from __future__ import annotations

import os

# sysexits.h, by name.  os.EX_* exists only on Unix; the numbers are the standard.
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

EXIT_NAMES = {
    EX_OK: "EX_OK",
    EX_USAGE: "EX_USAGE",
    EX_DATAERR: "EX_DATAERR",
    EX_NOINPUT: "EX_NOINPUT",
    EX_NOUSER: "EX_NOUSER",
    EX_UNAVAILABLE: "EX_UNAVAILABLE",
    EX_SOFTWARE: "EX_SOFTWARE",
    EX_OSERR: "EX_OSERR",
    EX_CANTCREAT: "EX_CANTCREAT",
    EX_IOERR: "EX_IOERR",
    EX_TEMPFAIL: "EX_TEMPFAIL",
    EX_NOPERM: "EX_NOPERM",
    EX_CONFIG: "EX_CONFIG",
}


class GaemailError(Exception):
    """Base of every error gaemail raises on purpose; str() is the one-line message."""

    exit_code = EX_SOFTWARE


class UsageError(GaemailError, ValueError):
    """The command line is wrong."""

    exit_code = EX_USAGE


class ConfigurationError(GaemailError):
    """A setting is missing, unreadable or invalid.  Never silenced."""

    exit_code = EX_CONFIG


class MessageError(GaemailError, ValueError):
    """The message on stdin cannot be sent as it is (no recipient, bad header...)."""

    exit_code = EX_DATAERR


class NoSuchUserError(MessageError):
    """A recipient has no domain and no alias or default domain qualifies it."""

    exit_code = EX_NOUSER


class LocalIOError(GaemailError, OSError):
    """Reading input or writing local state failed."""

    exit_code = EX_IOERR


class MessageSendingFailure(GaemailError):
    """The proxy did not accept the message.

    `status` is the HTTP status (None when no response arrived) and `reason` the
    server's one-line explanation or the network error.
    """

    exit_code = EX_TEMPFAIL
    temporary = True
    # Only a change of the settings (key, URL) can make it go through: a queue
    # holds such a message until then, and never fails or bounces it.
    setup = False

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after: int | None = None  # seconds the proxy asked to wait, if any

    def __str__(self) -> str:
        if self.status is None:
            return self.reason
        return f"{self.reason} (HTTP {self.status})"


class TemporaryFailure(MessageSendingFailure):
    """Unreachable, timed out, or a 5xx: the same message may go through later."""


class MessageRejected(MessageSendingFailure, ValueError):
    """The proxy refused this message for good (HTTP 400 or 413)."""

    exit_code = EX_DATAERR
    temporary = False


class SignatureRejected(MessageRejected):
    """The proxy does not know the key the message was signed with."""

    exit_code = EX_NOPERM
    setup = True


class ProxyURLError(TemporaryFailure):
    """The proxy URL reaches something that is not a gaemail proxy, or redirects.

    A setup mistake: the message waits (queued, or deferred by the caller) until
    GMAIL_PROXY_URL is right.
    """

    exit_code = EX_CONFIG
    setup = True


def describe_os_error(exc: OSError) -> str:
    """'PATH: reason' for an OSError, without the errno noise."""
    reason = exc.strerror or os.strerror(exc.errno or 0) or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason

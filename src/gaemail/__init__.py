"""gaemail: sendmail for servers that deliver through a signed proxy on App Engine.

`from gaemail import GmailProxy, MessageSendingFailure` is the Python API, and
`gaemail.django.EmailBackend` Django's backend over it.  The names load on first
use, so that `gmail`, which imports this package once per message, does not pay
for httpx.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `gmail` imports this package: no typing at run time

__all__ = [
    "ConfigurationError",
    "GmailProxy",
    "MessageError",
    "MessageRejected",
    "MessageSendingFailure",
    "SignatureRejected",
    "TemporaryFailure",
]

if TYPE_CHECKING:
    from typing import Any

    from gaemail.api import GmailProxy
    from gaemail.errors import (
        ConfigurationError,
        MessageError,
        MessageRejected,
        MessageSendingFailure,
        SignatureRejected,
        TemporaryFailure,
    )


def __getattr__(name: str) -> Any:
    if name == "GmailProxy":
        from gaemail.api import GmailProxy

        return GmailProxy
    if name in __all__:
        from gaemail import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'gaemail' has no attribute {name!r}")

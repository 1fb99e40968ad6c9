"""The Python API: `GmailProxy(...).send_mail(msg)` over httpx.

A long-lived program (a web app, a queue flusher) keeps one GmailProxy and reuses
its keep-alive connection; the per-message `gmail` command uses gaemail.transport.
"""

from __future__ import annotations

import email.message
import email.policy
from collections.abc import Mapping
from types import TracebackType

import httpx

from gaemail import protocol
from gaemail.config import Settings
from gaemail.errors import MessageSendingFailure, TemporaryFailure
from gaemail.protocol import v1
from gaemail.transport import Endpoint

MessageLike = email.message.Message | bytes | str


def message_bytes(msg: MessageLike) -> bytes:
    """The message as it goes on the wire: bytes as given, str as UTF-8."""
    if isinstance(msg, bytes):
        return msg
    if isinstance(msg, str):
        return msg.encode("utf-8")
    if isinstance(msg, email.message.EmailMessage):
        return msg.as_bytes(policy=msg.policy.clone(linesep="\n"))
    return msg.as_bytes()


def _has_sender(data: bytes) -> bool:
    head = data.replace(b"\r\n", b"\n").partition(b"\n\n")[0]
    return any(line.lower().startswith(b"from:") for line in head.split(b"\n"))


class GmailProxy:
    """Sends messages through a gaemail proxy.

    Missing arguments resolve as for the `gmail` command: environment variable,
    then envdir file.  A `ConfigurationError` is raised whatever `fail_silently`
    says; sending failures raise `MessageSendingFailure`, or with `fail_silently`
    make send_mail return False.
    """

    def __init__(
        self,
        secret_key: str | bytes | None = None,
        url: str | None = None,
        fail_silently: bool = False,
        *,
        timeout: float | None = None,
        fix_sender: bool = False,
        environ: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        settings = Settings({"url": url}, environ)
        if secret_key is None:
            secret_key = settings.secret_key()
        self._secret = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
        self.endpoint = Endpoint.parse(settings.require("url").value)
        self.fail_silently = fail_silently
        self.fix_sender = fix_sender
        seconds = timeout if timeout is not None else settings.timeout()
        self._client = httpx.Client(
            timeout=httpx.Timeout(seconds, connect=min(seconds, 10.0)),
            transport=transport,
            # Plain http needs no certificates; https verifies with the system's.
            verify=self.endpoint.scheme == "https",
            headers={"User-Agent": "gaemail"},
        )

    def send_mail(self, msg: MessageLike) -> bool:
        """Send one message; True when the proxy accepted it."""
        data = message_bytes(msg)
        try:
            self.send_raw(data, fix_sender=self.fix_sender or not _has_sender(data))
        except MessageSendingFailure:
            if self.fail_silently:
                return False
            raise
        return True

    def send_raw(self, data: bytes, fix_sender: bool) -> None:
        """Sign and post message bytes as they are; raises on any failure."""
        body = v1.encode_request(data, self._secret, fix_sender=fix_sender)
        try:
            response = self._client.post(
                self.endpoint.url, content=body, headers={"Content-Type": v1.CONTENT_TYPE}
            )
        except httpx.TimeoutException:
            raise TemporaryFailure(f"the proxy at {self.endpoint.shown} timed out") from None
        except httpx.HTTPError as exc:
            raise TemporaryFailure(
                f"cannot reach the proxy at {self.endpoint.shown}: {type(exc).__name__}"
            ) from None
        reason = protocol.answer_reason(response.text, response.reason_phrase)
        failure = protocol.failure_for(
            response.status_code, reason, response.headers.get(protocol.ERROR_HEADER)
        )
        if failure is not None:
            raise failure

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GmailProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""The Python API: `GmailProxy(...).send_mail(msg, recipients=[...])` over httpx.

A long-lived program (a web app, a queue flusher) keeps one GmailProxy and reuses
its pool of keep-alive connections; the per-message `gmail` command posts with
http.client instead.  Both go through the same pipeline, `transport.send`, and
prepare messages with the same function as `gmail -t` (`prepare_message`):
settings, envelope, Date and Message-ID, sender fixing — all as for gmail.
"""

from __future__ import annotations

import email.message
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import httpx

from gaemail import transport
from gaemail.config import Settings, calling_user
from gaemail.errors import MessageSendingFailure
from gaemail.message.compose import Defaults, Outgoing, prepare_message
from gaemail.message.envelope import Envelope, RecipientResolver
from gaemail.pooled import PooledConnection
from gaemail.queue import delivery
from gaemail.queue.journal import Journal
from gaemail.queue.spool import open_spool

MessageLike = email.message.Message | bytes | str
JOURNAL_NAME = "gaemail-api"  # the program name on the queue's syslog lines


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


@dataclass(frozen=True)
class ClientSettings:
    """Everything a GmailProxy needs, resolved once, as for the `gmail` command."""

    endpoint: transport.Endpoint
    secret: bytes = field(repr=False)
    timeout: float
    fix_sender: bool
    queue: bool
    protocol: str  # "v2", or "v1" for a proxy of 2010
    settings: Settings = field(repr=False)  # GMAIL_FROM, aliases, domain, queue dir
    environ: Mapping[str, str] = field(repr=False)

    @classmethod
    def resolve(
        cls,
        *,
        url: str | None = None,
        secret_key: str | bytes | None = None,
        timeout: float | None = None,
        fix_sender: bool = False,
        queue: bool = False,
        protocol: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ClientSettings:
        """Arguments first, then environment variable, then envdir file.

        Raises ConfigurationError naming the setting to fix.
        """
        environ = os.environ if environ is None else environ
        settings = Settings({"url": url, "protocol": protocol}, environ)
        if secret_key is None:
            secret = settings.secret_key()
        else:
            secret = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
        return cls(
            endpoint=transport.Endpoint.parse(settings.require("url").value),
            secret=secret,
            timeout=timeout if timeout is not None else settings.timeout(),
            fix_sender=fix_sender,
            queue=queue,
            protocol=settings.protocol_version(),
            settings=settings,
            environ=environ,
        )


@dataclass(frozen=True)
class Receipt:
    """What became of a message: sent, or queued for a later attempt (`queued` id)."""

    message_id: str
    queued: str | None = None


class GmailProxy:
    """Sends messages through a gaemail proxy.

    Missing arguments resolve as for the `gmail` command: environment variable,
    then envdir file.  A `ConfigurationError` is raised whatever `fail_silently`
    says; sending failures raise `MessageSendingFailure`, or with `fail_silently`
    make send_mail return False.  With `queue`, a temporary failure puts the
    message in gmail's durable queue instead, for the deliverer to send later.
    `settings` takes already resolved ClientSettings in place of the others.
    """

    def __init__(
        self,
        secret_key: str | bytes | None = None,
        url: str | None = None,
        fail_silently: bool = False,
        *,
        timeout: float | None = None,
        fix_sender: bool = False,
        queue: bool = False,
        protocol: str | None = None,
        environ: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        if settings is None:
            settings = ClientSettings.resolve(
                url=url,
                secret_key=secret_key,
                timeout=timeout,
                fix_sender=fix_sender,
                queue=queue,
                protocol=protocol,
                environ=environ,
            )
        elif (secret_key, url, timeout, protocol, environ) != (None,) * 5 or fix_sender or queue:
            raise TypeError("GmailProxy takes either settings or the settings' arguments")
        self.settings = settings
        self.endpoint = settings.endpoint
        self.fail_silently = fail_silently
        self.fix_sender = settings.fix_sender
        self.queue = settings.queue
        found = settings.settings
        domain = found.mail_domain()
        self._resolver = RecipientResolver(found.value("aliases"), domain.value if domain else None)
        user, user_name = calling_user()
        self._defaults = Defaults(
            sender=found.value("from"),
            hostname=socket.gethostname(),
            user=user,
            user_name=user_name,
        )
        self._connection = PooledConnection(
            settings.endpoint, settings.timeout, transport, ca_file=found.value("ca_file")
        )

    def send_mail(
        self,
        msg: MessageLike,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
    ) -> bool:
        """Send one message; True when the proxy accepted it (or, with `queue`, queued it).

        `recipients`, when given, are the envelope: the message goes to them and
        to no one else, whatever its To and Cc say; otherwise To, Cc and Bcc are.
        A message that cannot be sent as it is raises MessageError, always.
        """
        outgoing = self.prepare(msg, sender=sender, recipients=recipients)
        try:
            self.deliver(outgoing)
        except MessageSendingFailure:
            if self.fail_silently:
                return False
            raise
        return True

    def prepare(
        self,
        msg: MessageLike,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
    ) -> Outgoing:
        """The message as `gmail -t` would send it: envelope, Date, Message-ID, From.

        Prepare once and deliver the result on every attempt: a retry is then the
        same message, which the proxy knows by its Message-ID and bytes.
        """
        if isinstance(recipients, str):
            recipients = [recipients]
        outgoing = prepare_message(
            message_bytes(msg),
            recipients=list(recipients or ()),
            read_headers=recipients is None,
            dot_ends=False,
            sender=sender,
            full_name=None,
            resolver=self._resolver,
            defaults=self._defaults,
            fix_sender=self.fix_sender,
        )
        if not outgoing.fix_sender and not _has_sender(outgoing.data):
            # No From and no GMAIL_FROM: the proxy's default sender, or no mail.
            return Outgoing(outgoing.data, outgoing.envelope, outgoing.message_id, True)
        return outgoing

    def deliver(self, outgoing: Outgoing) -> Receipt:
        """Send a prepared message; with `queue`, queue it on a temporary failure."""
        try:
            self.send_raw(outgoing.data, fix_sender=outgoing.fix_sender, envelope=outgoing.envelope)
        except MessageSendingFailure as exc:
            # A setup mistake is held in the queue as gmail holds it, never lost.
            if not (self.queue and (exc.temporary or exc.setup)):
                raise
            ident = queue_message(outgoing, self.settings.settings, self.settings.environ, exc)
            return Receipt(outgoing.message_id, queued=ident)
        return Receipt(outgoing.message_id)

    def send_raw(self, data: bytes, fix_sender: bool, envelope: Envelope | None = None) -> None:
        """Sign and post message bytes as they are; raises on any failure.

        Protocol v2 signs `envelope` (who receives it, whatever the headers say);
        without one, or with protocol v1, the recipients are the message's headers.
        """
        transport.send(
            self._connection,
            data,
            self.settings.secret,
            fix_sender=fix_sender,
            envelope=envelope.wire() if envelope is not None else None,
            version=self.settings.protocol,
        )

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> GmailProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def queue_message(
    outgoing: Outgoing,
    settings: Settings,
    environ: Mapping[str, str],
    failure: MessageSendingFailure,
) -> str:
    """Put a message the proxy could not take now into gmail's durable queue.

    The same spool, record and backoff as `gmail -odi` after a failed attempt, so
    the deliverer sends it later; returns its queue id once it is safe on disk.
    """
    spool = open_spool(settings, environ)
    journal = Journal(JOURNAL_NAME, environ)
    return delivery.enqueue(outgoing, spool, settings, journal, failure)

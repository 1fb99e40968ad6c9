"""Local mode: the proxy on the SDK's own Mail and Memcache stubs, mail kept in a Maildir.

No Google Cloud, no network: `send()` reaches the SDK's MailServiceStub, which
checks what the service checks locally (attachment types, size) and captures
the message; this module's subclass also writes it into a Maildir outbox.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from email import encoders
from email.message import Message
from email.utils import formatdate, getaddresses
from typing import Any

from flask import Flask
from google.appengine.api import apiproxy_stub_map, mail, mail_stub
from google.appengine.api.memcache import memcache_stub

from gaemail.errors import ConfigurationError
from gaemail.server.app import create_app, log_requests_to
from gaemail.server.config import ServerConfig
from gaemail.server.idempotency import PersistentDatastoreStub, use_local_app_id
from gaemail.server.local.flatten import as_bytes
from gaemail.server.local.outbox import Maildir
from gaemail.server.sending import ORIGINAL_MESSAGE_ID

OUTBOX_VARIABLE = "GAEMAIL_OUTBOX"
MAIL_STUB_EXTENSION = "mail_stub"
MEMCACHE_STUB_EXTENSION = "memcache_stub"
IDEMPOTENCY_FILE = ".gaemail-idempotency"
# A long-running local proxy keeps only this many sent messages in memory;
# the Maildir keeps them all.
KEEP_SENT = 100


class OutboxMailStub(mail_stub.MailServiceStub):  # type: ignore[misc]
    """The SDK's mail stub, also keeping each request and delivering it to `outbox`.

    `requests` holds exact copies of the sent MailMessage protobufs: the stub's
    own capture (`get_sent_messages`) turns attachment bytes >= 0x80 into U+FFFD.
    With `keep`, both keep only that many of the latest messages.
    """

    # Run each call in the calling (request) thread, not on the SDK's thread
    # pool: the hand-over to the pool and back cost ~0.3 ms per send, and the
    # pool adds nothing when the caller waits for the answer at once.  The stub
    # is thread-safe either way; a ContextVar set by the caller is seen as is.
    THREADSAFE = False

    def __init__(self, outbox: Maildir | None = None, *, keep: int | None = None) -> None:
        super().__init__()
        self.outbox = outbox
        self.keep = keep
        self.requests: deque[Any] = deque(maxlen=keep)

    def _Dynamic_Send(self, request: Any, response: Any) -> None:
        sent = type(request)()
        sent.CopyFrom(request)
        super()._Dynamic_Send(request, response)  # raises for what the service refuses
        with self._mutex:
            self.requests.append(sent)
        if self.outbox is not None:
            self.outbox.deliver(outbox_bytes(sent, ORIGINAL_MESSAGE_ID.get()))

    def _CacheMessage(self, message: Any) -> None:
        with self._mutex:
            super()._CacheMessage(message)
            if self.keep is not None:
                del self._cached_messages[: -self.keep]


def outbox_bytes(request: Any, message_id: str | None) -> bytes:
    """A sent MailMessage as the Mail API would deliver it, plus its envelope."""
    return as_bytes(outbox_message(request, message_id))


def outbox_message(request: Any, message_id: str | None) -> Message:
    """The message outbox_bytes writes.

    The SDK's own conversion builds the message.  Bcc is left out of the headers
    and every recipient goes into X-Envelope-To; X-Gaemail-Message-Id carries the
    client's Message-ID, which the Mail API drops.
    """
    mime = mail.mail_message_to_mime_message(request)
    del mime["Bcc"]
    if not request.ReplyTo:
        del mime["Reply-To"]  # the SDK writes an empty one
    for part in mime.get_payload():
        if part.get_content_disposition() == "attachment":
            # The SDK leaves attachment bytes raw, with no transfer encoding, which
            # no file or transport keeps intact.
            encoders.encode_base64(part)
    mime["Date"] = formatdate(localtime=True)
    mime["X-Envelope-To"] = ", ".join(envelope_recipients(request))
    if message_id:
        mime["X-Gaemail-Message-Id"] = message_id
    message: Message = mime
    return message


def envelope_recipients(request: Any) -> list[str]:
    """The bare address of every To, Cc and Bcc recipient of a MailMessage."""
    fields = [*request.To, *request.Cc, *request.Bcc]
    return [address for _, address in getaddresses(fields) if address]


class InlineMemcacheStub(memcache_stub.MemcacheServiceStub):  # type: ignore[misc]
    """The SDK's memcache stub, called in the request thread, as OutboxMailStub is."""

    THREADSAFE = False


def install_stubs(outbox: Maildir | None = None, *, keep: int | None = None) -> OutboxMailStub:
    """Register the mail, memcache and datastore stubs process-wide; returns the mail stub.

    v2's idempotency records go to a file in the Maildir (beside new/ and cur/,
    where Maildir readers keep their own state), so they outlive the process.
    """
    stub = OutboxMailStub(outbox, keep=keep)
    # ReplaceStub, not RegisterStub, which asserts when a stub is already there.
    apiproxy_stub_map.apiproxy.ReplaceStub("mail", stub)
    apiproxy_stub_map.apiproxy.ReplaceStub("memcache", InlineMemcacheStub())
    records = os.path.join(outbox.path, IDEMPOTENCY_FILE) if outbox is not None else None
    use_local_app_id()
    apiproxy_stub_map.apiproxy.ReplaceStub("datastore_v3", PersistentDatastoreStub(records))
    return stub


def create_local_app(
    config: ServerConfig,
    outbox_dir: str | os.PathLike[str] | None,
    *,
    keep: int | None = None,
) -> Flask:
    """The proxy app on local stubs, delivering into the Maildir at `outbox_dir` (if any).

    The stubs are process-wide, so the app built last receives every send.  The
    app is not wrapped with wrap_wsgi_app: locally that would trust client-sent
    X-AppEngine-* headers.  `app.extensions["mail_stub"]` is the mail stub.
    """
    app = create_app(config, mail_service="local-stub")
    outbox = Maildir(outbox_dir) if outbox_dir is not None else None
    stub = install_stubs(outbox, keep=keep)
    app.extensions[MAIL_STUB_EXTENSION] = stub
    app.extensions[MEMCACHE_STUB_EXTENSION] = apiproxy_stub_map.apiproxy.GetStub("memcache")
    return app


def app_from_environment() -> Flask:
    """The local app for WSGI servers such as gunicorn, configured by the environment.

    GAEMAIL_OUTBOX names the Maildir; GMAIL_SECRET_KEY and GMAIL_DEFAULT_SENDER
    are read as on App Engine.
    """
    outbox = os.environ.get(OUTBOX_VARIABLE)
    if not outbox:
        raise ConfigurationError(f"set {OUTBOX_VARIABLE} to the Maildir that receives sent mail")
    app = create_local_app(ServerConfig.load(None, os.environ), outbox, keep=KEEP_SENT)
    log_requests_to(sys.stderr)
    return app

"""Local mode: the proxy on the SDK's own Mail and Memcache stubs, mail kept in a Maildir.

No Google Cloud, no network: `send()` reaches the SDK's MailServiceStub, which
checks attachment types and the request size; this module's subclass also checks
what the service checks (gaemail.server.local.rules) and writes each message into
a Maildir outbox.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flask import Flask
from google.appengine.api import apiproxy_stub_map, mail, mail_stub
from google.appengine.api.memcache import memcache_stub

from gaemail.errors import ConfigurationError
from gaemail.server.app import RELAY_V2_EXTENSION, create_app, log_requests_to
from gaemail.server.config import ServerConfig
from gaemail.server.idempotency import PersistentDatastoreStub, use_local_app_id
from gaemail.server.local.flatten import Flattened
from gaemail.server.local.mime import envelope_recipients, outbox_message, outbox_parts
from gaemail.server.local.outbox import Maildir
from gaemail.server.local.rules import LocalRules, check_header_lines
from gaemail.server.relay_v2 import RelayV2
from gaemail.server.sending import ORIGINAL_MESSAGE_ID

OUTBOX_VARIABLE = "GAEMAIL_OUTBOX"
FSYNC_VARIABLE = "GAEMAIL_FSYNC"
MAIL_STUB_EXTENSION = "mail_stub"
MEMCACHE_STUB_EXTENSION = "memcache_stub"
IDEMPOTENCY_FILE = ".gaemail-idempotency"
# Sent requests kept in memory for tests that read them back (the Maildir is the
# record).  `gaemail serve` and app_from_environment keep none: at 25 MB a
# message, a hundred kept would be gigabytes.
KEEP_FOR_TESTS = 100


class OutboxMailStub(mail_stub.MailServiceStub):  # type: ignore[misc]
    """The SDK's mail stub, checking as App Engine does and delivering into `outbox`.

    Each message is converted to MIME once, by the SDK's own conversion, and the
    stub keeps nothing in memory beyond the last `keep` requests (exact copies of
    the MailMessage protobufs: the SDK's capture turns attachment bytes >= 0x80
    into U+FFFD).  `get_sent_messages()` builds the SDK's EmailMessages from
    those on demand.
    """

    # Run each call in the calling (request) thread, not on the SDK's thread
    # pool: the hand-over to the pool and back cost ~0.3 ms per send, and the
    # pool adds nothing when the caller waits for the answer at once.  The stub
    # is thread-safe either way; a ContextVar set by the caller is seen as is.
    THREADSAFE = False

    def __init__(
        self,
        outbox: Maildir | None = None,
        *,
        keep: int = KEEP_FOR_TESTS,
        rules: LocalRules | None = None,
    ) -> None:
        super().__init__()
        self.outbox = outbox
        self.keep = keep
        self.rules = rules or LocalRules()
        self.requests: deque[Any] = deque(maxlen=keep)

    def _Dynamic_Send(self, request: Any, response: Any) -> None:
        self._ValidateExtensions(request)  # the SDK stub's own check
        self.rules.check_request(request)
        # Written as it is flattened: the texts and attachment bytes are the one copy held.
        message = Flattened(*outbox_parts(request, ORIGINAL_MESSAGE_ID.get()))
        if self.rules.strict:
            check_header_lines(message.head)
        recipients = len(request.To) + len(request.Cc) + len(request.Bcc)
        quota = self.rules.quota
        if quota is not None:
            quota.take(recipients)
        try:
            if self.outbox is not None:
                self.outbox.deliver(message.write)
        except BaseException:
            if quota is not None:
                quota.give_back(recipients)
            raise
        if self.keep:
            sent = type(request)()
            sent.CopyFrom(request)
            with self._mutex:
                self.requests.append(sent)

    def _CacheMessage(self, message: Any) -> None:
        # Only SendToAdmins still caches through here: bounded as requests are.
        with self._mutex:
            super()._CacheMessage(message)
            del self._cached_messages[: -self.keep or len(self._cached_messages)]

    def get_sent_messages(self, *args: Any, **patterns: Any) -> list[Any]:
        """The SDK's get_sent_messages, over the requests kept."""
        with self._mutex:
            kept = list(self.requests)
        messages = [
            self._email_message_from_mime_message(mail.mail_message_to_mime_message(r), r)
            for r in kept
        ]
        with self._mutex:
            self._cached_messages = messages
        found: list[Any] = super().get_sent_messages(*args, **patterns)
        with self._mutex:
            self._cached_messages = []
        return found

    def Clear(self) -> None:
        with self._mutex:
            self.requests.clear()
            self._cached_messages = []


class InlineMemcacheStub(memcache_stub.MemcacheServiceStub):  # type: ignore[misc]
    """The SDK's memcache stub, called in the request thread, as OutboxMailStub is."""

    THREADSAFE = False


def install_stubs(
    outbox: Maildir | None = None,
    *,
    keep: int = KEEP_FOR_TESTS,
    rules: LocalRules | None = None,
) -> OutboxMailStub:
    """Register the mail, memcache and datastore stubs process-wide; returns the mail stub.

    v2's idempotency records go to a file in the Maildir (beside new/ and cur/,
    where Maildir readers keep their own state), so they outlive the process.
    """
    stub = OutboxMailStub(outbox, keep=keep, rules=rules)
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
    keep: int = KEEP_FOR_TESTS,
    rules: LocalRules | None = None,
    fsync: bool = True,
    clock: Callable[[], float] = time.time,
) -> Flask:
    """The proxy app on local stubs, delivering into the Maildir at `outbox_dir` (if any).

    The stubs are process-wide, so the app built last receives every send.  The
    app is not wrapped with wrap_wsgi_app: locally that would trust client-sent
    X-AppEngine-* headers.  `app.extensions["mail_stub"]` is the mail stub.
    The idempotency records past their retention are deleted as the app starts,
    as App Engine's TTL policy deletes them.
    """
    app = create_app(config, mail_service="local-stub", clock=clock)
    outbox = Maildir(outbox_dir, fsync=fsync) if outbox_dir is not None else None
    stub = install_stubs(outbox, keep=keep, rules=rules)
    relay: RelayV2 = app.extensions[RELAY_V2_EXTENSION]
    relay.store.forget_expired()
    app.extensions[MAIL_STUB_EXTENSION] = stub
    app.extensions[MEMCACHE_STUB_EXTENSION] = apiproxy_stub_map.apiproxy.GetStub("memcache")
    return app


__all__ = [
    "KEEP_FOR_TESTS",
    "OutboxMailStub",
    "app_from_environment",
    "create_local_app",
    "envelope_recipients",
    "install_stubs",
    "outbox_message",
]


def app_from_environment() -> Flask:
    """The local app for WSGI servers such as gunicorn, configured by the environment.

    GAEMAIL_OUTBOX names the Maildir, GAEMAIL_FSYNC=1 fsyncs each message (the
    policy in gaemail.server.local.outbox); GMAIL_SECRET_KEY and
    GMAIL_DEFAULT_SENDER are read as on App Engine.
    """
    outbox = os.environ.get(OUTBOX_VARIABLE)
    if not outbox:
        raise ConfigurationError(f"set {OUTBOX_VARIABLE} to the Maildir that receives sent mail")
    fsync = os.environ.get(FSYNC_VARIABLE, "") == "1"
    config = ServerConfig.load(None, os.environ)
    app = create_local_app(config, outbox, keep=0, fsync=fsync)
    log_requests_to(sys.stderr)
    return app

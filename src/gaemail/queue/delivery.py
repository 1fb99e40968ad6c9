"""Delivering queued messages: one attempt per claimed message, backoff, holds, bounces.

Every outcome of an attempt is one line in the mail log.  A refusal that only a
setup fix can cure (a key the proxy does not know, an unreadable secret, a URL
that is not the proxy) never fails a message: it waits, retried on the
schedule, until the setup is right.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gaemail.config import Settings
from gaemail.errors import ConfigurationError, GaemailError, MessageSendingFailure
from gaemail.message.compose import Outgoing
from gaemail.message.envelope import Envelope
from gaemail.message.rfc5322 import formatdate
from gaemail.queue.journal import Journal
from gaemail.queue.spool import Claim, Entry, Schedule, Spool, State, age_text

if TYPE_CHECKING:
    from gaemail.transport import Connection

# (message, envelope, fix_sender); raises MessageSendingFailure or ConfigurationError
SendFn = Callable[[bytes, Envelope, bool], None]
Progress = Callable[[int, int], None]

SENT, DEFERRED, WAITING, FAILED, BUSY, NOT_DUE, HELD = (
    "sent",
    "deferred",
    "waiting for a setup fix",
    "failed",
    "busy",
    "not due",
    "held",
)


def may_wait(exc: GaemailError) -> bool:
    """Whether a message that failed this way belongs in the queue, not back to its sender."""
    return is_setup_problem(exc) or bool(getattr(exc, "temporary", False))


def is_setup_problem(exc: GaemailError) -> bool:
    """Whether only a change of settings (key, secret, URL) can make this go through."""
    return isinstance(exc, ConfigurationError) or (
        isinstance(exc, MessageSendingFailure) and exc.setup
    )


@dataclass
class Deliverer:
    """Attempts queued messages with one send function."""

    spool: Spool
    send: SendFn
    journal: Journal
    clock: Callable[[], float]
    schedule: Schedule = dataclasses.field(default_factory=Schedule)

    def attempt(self, ident: str, force: bool) -> str:
        """One delivery attempt; returns what happened to the message."""
        with self.spool.claim(ident) as claim:
            if claim is None:
                return BUSY
            if claim.state.held:
                return HELD
            now = self.clock()
            if not force and claim.state.next_attempt > now:
                return NOT_DUE
            if self._expired(claim, now):
                last = f": {claim.state.last_error}" if claim.state.last_error else ""
                within = age_text(self.schedule.max_age)
                return self._fail(claim, f"not delivered within {within}{last}")
            try:
                self.send(claim.data, claim.entry.envelope, claim.entry.fix_sender)
            except (MessageSendingFailure, ConfigurationError) as exc:
                return self._failed_attempt(claim, exc, now, force)
            claim.sent()
            self.journal.record(SENT, claim.id, claim.entry)
            return SENT

    def _failed_attempt(self, claim: Claim, exc: GaemailError, now: float, force: bool) -> str:
        reason = str(exc)
        if is_setup_problem(exc):
            claim.update(claim.state.deferred(now, reason, self.schedule, setup=True, forced=force))
            self.journal.record("held", claim.id, claim.entry, f"setup problem, fix it: {reason}")
            return WAITING
        if not getattr(exc, "temporary", True):
            return self._fail(claim, reason)
        claim.update(claim.state.deferred(now, reason, self.schedule, forced=force))
        self.journal.record(DEFERRED, claim.id, claim.entry, reason)
        return DEFERRED

    def _expired(self, claim: Claim, now: float) -> bool:
        # A message waiting for a setup fix is the operator's to fix, not the sender's.
        return not claim.state.setup and now - claim.entry.created > self.schedule.max_age

    def run(
        self,
        ids: Iterable[str],
        *,
        force: bool,
        jobs: int = 4,
        progress: Progress | None = None,
    ) -> Counter[str]:
        """Attempt each message, `jobs` at a time; counts of each outcome."""
        from concurrent.futures import ThreadPoolExecutor  # threads only where mail is sent

        ids = list(ids)
        outcomes: Counter[str] = Counter()
        try:
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                for done, outcome in enumerate(pool.map(lambda i: self.attempt(i, force), ids), 1):
                    outcomes[outcome] += 1
                    if progress:
                        progress(done, len(ids))
        finally:
            self.spool.sync()  # one fsync for every message sent
        return outcomes

    def _fail(self, claim: Claim, reason: str) -> str:
        claim.failed(reason)
        self.journal.record(FAILED, claim.id, claim.entry, reason)
        self._bounce(claim, reason)
        return FAILED

    def _bounce(self, claim: Claim, reason: str) -> None:
        """Tell the envelope sender, through the proxy; never bounce a bounce."""
        to = claim.entry.envelope.sender
        if not to or _is_automatic(claim.data):
            return
        try:
            # From the null sender, so that a bounce of the bounce never comes back.
            self.send(bounce_message(claim, reason, self.clock()), Envelope((to,)), True)
        except (MessageSendingFailure, ConfigurationError) as exc:
            self.journal.record(FAILED, claim.id, claim.entry, f"bounce not sent: {exc}")
        else:
            self.journal.record("bounced", claim.id, claim.entry, f"told {to}")


def _is_automatic(data: bytes) -> bool:
    head = data.partition(b"\n\n")[0].lower()
    return b"\nauto-submitted:" in b"\n" + head and b"auto-submitted: no" not in head


def bounce_message(claim: Claim, reason: str, now: float) -> bytes:
    """A plain-text delivery failure notice with the original headers quoted."""
    headers = claim.data.partition(b"\n\n")[0].decode("utf-8", "replace")
    text = (
        "Your message could not be delivered through the gaemail proxy, and gmail\n"
        "has stopped trying.\n\n"
        f"  Recipients: {', '.join(claim.entry.envelope.recipients)}\n"
        f"  Reason:     {reason}\n"
        f"  Queue id:   {claim.id}\n\n"
        "The headers of your message follow.\n\n" + headers + "\n"
    )
    lines = [
        f"To: {claim.entry.envelope.sender}",
        "Subject: Undelivered mail: " + _subject(headers),
        f"Date: {formatdate(now, localtime=True)}",
        "Auto-Submitted: auto-replied",
        f"In-Reply-To: {claim.entry.message_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    return ("\n".join(lines) + "\n\n" + text).encode("utf-8")


def _subject(headers: str) -> str:
    for line in headers.splitlines():
        if line.lower().startswith("subject:"):
            return " ".join(line[8:].split())[:200] or "(no subject)"
    return "(no subject)"


def enqueue(
    outgoing: Outgoing,
    spool: Spool,
    settings: Settings,
    journal: Journal,
    deferred: GaemailError | None = None,
) -> str:
    """Queue a message durably, as one that failed now when `deferred`; its queue id.

    From here on the message is the queue's and the caller may go.  A setup
    failure holds it until the setup is fixed.
    """
    clock = time.time()
    ident = spool.enqueue(outgoing, clock)
    note_queued(spool, ident, outgoing, clock, settings, journal, deferred)
    return ident


def note_queued(
    spool: Spool,
    ident: str,
    outgoing: Outgoing,
    clock: float,
    settings: Settings,
    journal: Journal,
    deferred: GaemailError | None,
) -> None:
    """What follows a message's arrival in the queue: its first failure, the log line.

    Nothing here may make a caller send the message again: it is queued already.
    """
    reason = str(deferred) if deferred else ""
    if deferred:
        schedule = Schedule.from_settings(settings)
        setup = is_setup_problem(deferred)
        state = State().deferred(clock, reason, schedule, setup=setup, forced=False)
        spool.write_state(ident, state)
    journal.record("queued", ident, Entry.of(outgoing, clock), reason)


# -- senders: how a delivery reaches the proxy -------------------------------------


def can_deliver(settings: Settings) -> bool:
    """Whether this user may sign: the URL and the secret are both readable."""
    try:
        settings.require("url")
        settings.secret_key()
    except ConfigurationError:
        return False
    return True


def _signing(settings: Settings) -> Callable[[Connection, bytes, Envelope, bool], None]:
    """What signs and sends one message over a connection, with the settings checked now.

    Raises ConfigurationError for a URL, proxy, secret or protocol that cannot be used.
    """
    from gaemail import transport  # only where mail is sent, not where it is queued

    transport.connection_for(settings).close()
    secret, version = settings.secret_key(), settings.protocol_version()

    def over(connection: Connection, data: bytes, envelope: Envelope, fix_sender: bool) -> None:
        transport.send(
            connection,
            data,
            secret,
            fix_sender=fix_sender,
            envelope=envelope.wire(),
            version=version,
        )

    return over


def one_shot_sender(settings: Settings) -> SendFn:
    """Sends each message on a connection of its own: right for one message."""
    from gaemail import transport

    over = _signing(settings)

    def send(data: bytes, envelope: Envelope, fix_sender: bool) -> None:
        connection = transport.connection_for(settings)
        try:
            over(connection, data, envelope, fix_sender)
        finally:
            connection.close()

    return send


@contextlib.contextmanager
def kept_sender(settings: Settings) -> Iterator[SendFn]:
    """Sends over one kept-open connection per thread: right for a flush.

    When the settings cannot sign (no secret, a bad URL), every send raises that
    ConfigurationError: the flush goes on and each message waits for the fix.
    """
    from gaemail import transport

    try:
        over = _signing(settings)
    except ConfigurationError as problem:
        yield _refusing(problem)
        return
    mine = threading.local()
    opened: list[Connection] = []

    def send(data: bytes, envelope: Envelope, fix_sender: bool) -> None:
        connection = getattr(mine, "connection", None)
        if connection is None:
            connection = mine.connection = transport.connection_for(settings)
            opened.append(connection)  # list.append is atomic
        over(connection, data, envelope, fix_sender)

    try:
        yield send
    finally:
        for connection in opened:
            connection.close()


def _refusing(problem: ConfigurationError) -> SendFn:
    def send(data: bytes, envelope: Envelope, fix_sender: bool) -> None:
        raise problem

    return send


# -- flushing --------------------------------------------------------------------


def flush(
    spool: Spool,
    settings: Settings,
    journal: Journal,
    *,
    force: bool,
    jobs: int = 4,
    progress: Progress | None = None,
) -> Counter[str]:
    """Attempt every queued message (only the due ones unless `force`).

    A forced flush is a person's: settings that cannot sign are their error
    (ConfigurationError), and the messages stay as they were.  The deliverer's
    rounds go on instead, and each message waits for the fix.
    """
    ids = spool.ids()
    if not ids:
        return Counter()
    if force:
        _signing(settings)  # raises the ConfigurationError that kept_sender would hold
    spool.clean_tmp(time.time())
    schedule = Schedule.from_settings(settings)
    with kept_sender(settings) as send:
        return Deliverer(spool, send, journal, time.time, schedule).run(
            ids, force=force, jobs=jobs, progress=progress
        )


def detach() -> bool:
    """Fork a child that is no longer tied to the caller; True in the child.

    The child leaves the caller's session and lets go of its stdin, stdout and
    stderr, so a caller that waits for end-of-file on them returns at once.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # mailutils runs sendmail with stdout closed
            stream.flush()
    if os.fork() != 0:
        return False
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return True


def deliver_in_background(
    spool: Spool, settings: Settings, journal: Journal, ident: str | None = None
) -> None:
    """A detached child's work: message `ident` now, then whatever else is due."""
    try:
        if ident is not None:
            schedule = Schedule.from_settings(settings)
            deliverer = Deliverer(spool, one_shot_sender(settings), journal, time.time, schedule)
            outcome = deliverer.attempt(ident, force=False)  # a new message is due
            spool.sync()
            if outcome != SENT:
                return  # the proxy is not taking mail: leave the rest to their backoff
        if spool.can_list() and spool.ids():  # a drop box is its deliverer's to flush
            flush(spool, settings, journal, force=False)
    except (MessageSendingFailure, ConfigurationError, OSError) as exc:
        journal.write(3, f"{ident or 'queue'}: background delivery stopped: {exc}")

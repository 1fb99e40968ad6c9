"""Queue operations shared by `gmail` (-q, -bp, background delivery) and `gaemail queue`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections import Counter

from gaemail.errors import ConfigurationError, MessageSendingFailure
from gaemail.queue.spool import Spool, age_text, default_queue_dir, now

TYPE_CHECKING = False  # no run-time typing on gmail's start-up path (bench/)
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import TextIO

    from gaemail.config import Settings
    from gaemail.queue.delivery import Progress, SendFn
    from gaemail.queue.journal import Journal
    from gaemail.queue.spool import Item

# gaemail.queue.delivery (threads, logging) loads only where messages are flushed: the
# process that merely queues a message is every cron job's and PHP page's cost.


def open_spool(settings: Settings, environ: Mapping[str, str]) -> Spool:
    path = settings.value("queue_dir") or default_queue_dir(dict(environ))
    return Spool(path)


def can_deliver(settings: Settings) -> bool:
    """Whether this user may sign: the URL and the secret are both readable."""
    try:
        settings.require("url")
        settings.secret_key()
    except ConfigurationError:
        return False
    return True


def one_shot_sender(settings: Settings) -> SendFn:
    """Sends each message on a connection of its own: right for one message."""
    from gaemail import transport

    endpoint = transport.Endpoint.parse(settings.require("url").value)
    secret, timeout = settings.secret_key(), settings.timeout()

    def send(data: bytes, fix_sender: bool) -> None:
        connection = transport.Connection(endpoint, timeout)
        try:
            transport.send(connection, data, secret, fix_sender=fix_sender)
        finally:
            connection.close()

    return send


@contextlib.contextmanager
def kept_sender(settings: Settings) -> Iterator[SendFn]:
    """Sends over one kept-open connection per thread: right for a flush."""
    import threading

    from gaemail import transport

    endpoint = transport.Endpoint.parse(settings.require("url").value)
    secret, timeout = settings.secret_key(), settings.timeout()
    mine = threading.local()
    opened: list[transport.Connection] = []

    def send(data: bytes, fix_sender: bool) -> None:
        connection = getattr(mine, "connection", None)
        if connection is None:
            connection = mine.connection = transport.Connection(endpoint, timeout)
            opened.append(connection)  # list.append is atomic
        transport.send(connection, data, secret, fix_sender=fix_sender)

    try:
        yield send
    finally:
        for connection in opened:
            connection.close()


def flush(
    spool: Spool,
    settings: Settings,
    journal: Journal,
    *,
    force: bool,
    jobs: int = 4,
    progress: Progress | None = None,
) -> Counter[str]:
    """Attempt every queued message (only the due ones unless `force`)."""
    ids = spool.ids()
    if not ids:
        return Counter()
    spool.clean_tmp(now())
    from gaemail.queue.delivery import Deliverer

    with kept_sender(settings) as send:
        return Deliverer(spool, send, journal, now).run(
            ids, force=force, jobs=jobs, progress=progress
        )


def summary(outcomes: Counter[str]) -> str:
    total = sum(outcomes.values())
    if not total:
        return "the queue is empty"
    parts = ", ".join(f"{n} {what}" for what, n in sorted(outcomes.items()))
    return f"{total} queued message{'s' if total != 1 else ''}: {parts}"


def terminal_progress(stream: TextIO) -> Progress | None:
    """A one-line progress counter, only when a person is watching."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        stream.write(f"\rflushing {done}/{total}")
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


def listing(spool: Spool, failed: bool = False) -> str:
    """mailq's table: id, age, size, attempts, sender, recipients, last error."""
    area = "failed" if failed else "new"
    ids = spool.failed_ids() if failed else spool.ids()
    if not ids:
        return "No failed messages.\n" if failed else "Mail queue is empty.\n"
    items: list[Item] = []
    for ident in ids:
        try:
            items.append(spool.item(ident, area))
        except (OSError, ValueError):
            continue  # sent or moved while we listed
    at = now()
    lines = [f"{'ID':<28} {'Age':>5} {'Size':>8} {'Tries':>5}  Sender / Recipients"]
    for item in items:
        env = item.envelope
        lines.append(
            f"{item.id:<28} {age_text(at - env.created):>5} {env.size:>8} "
            f"{item.state.attempts:>5}  <{env.sender or ''}>"
        )
        lines.append(f"{'':<50}{', '.join(env.recipients)}")
        if item.state.last_error:
            lines.append(f"{'':<50}({item.state.last_error})")
    lines.append(
        f"-- {len(items)} message{'s' if len(items) != 1 else ''}"
        f"{' failed' if failed else ' queued'}"
    )
    return "\n".join(lines) + "\n"


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
    from gaemail.queue.delivery import Deliverer

    try:
        if ident is not None:
            deliverer = Deliverer(spool, one_shot_sender(settings), journal, now)
            outcome = deliverer.attempt(ident, force=True)
            spool.sync()
            if outcome != "sent":
                return  # the proxy is not taking mail: leave the rest to their backoff
        if spool.can_list() and spool.ids():  # a drop box is its deliverer's to flush
            flush(spool, settings, journal, force=False)
    except (MessageSendingFailure, ConfigurationError, OSError) as exc:
        journal.write(3, f"{ident or 'queue'}: background delivery stopped: {exc}")

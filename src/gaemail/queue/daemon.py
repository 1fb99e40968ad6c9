"""The deliverer daemon (`gaemail queue run --daemon`), in the spirit of nullmailer-send.

It sends what is due, then sleeps until the next retry is due or a sender writes
to the queue's trigger FIFO, whichever comes first: new mail goes out as it
arrives, without a busy poll.  The FIFO is opened for reading and writing, so it
always has a writer and a closed sender never makes it look readable forever.
Settings are read afresh for every round, so a fixed key or URL takes effect at
the next attempt without a restart.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator

from gaemail.config import Settings
from gaemail.queue.delivery import flush
from gaemail.queue.journal import Journal
from gaemail.queue.listing import summary
from gaemail.queue.spool import TRIGGER, Spool

# Look at the queue at least this often, whatever the trigger says: a message
# dropped by a sender who could not reach the FIFO still goes out.
RESCAN_SECONDS = 300.0
# Never sleep less than this between rounds: a message that stays due (its
# file locked by another flusher) must not make the daemon spin.
MIN_SLEEP_SECONDS = 0.5


def next_due(spool: Spool, now: float) -> float | None:
    """Seconds until the earliest queued message is due (0 if one is), None if none waits."""
    earliest: float | None = None
    for ident in spool.ids():
        state = spool.state(ident)
        if state.held:
            continue
        wait = max(0.0, state.next_attempt - now)
        earliest = wait if earliest is None else min(earliest, wait)
    return earliest


@contextlib.contextmanager
def trigger(spool: Spool) -> Iterator[int | None]:
    """The trigger FIFO, open for reading and writing; None where it cannot be made."""
    path = spool.dir(TRIGGER)
    with contextlib.suppress(FileExistsError, PermissionError):
        os.mkfifo(path, 0o622)
    if not spool.is_trigger():
        yield None
        return
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        yield fd
    finally:
        os.close(fd)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


def run(
    spool: Spool,
    settings: Callable[[], Settings],
    journal: Journal,
    *,
    jobs: int = 4,
    stop: threading.Event | None = None,
) -> None:
    """Deliver until `stop` is set (or SIGTERM/SIGINT arrive, in the main thread)."""
    stop = stop or threading.Event()
    with trigger(spool) as fd:
        restore = _stop_on_signals(stop, fd)
        journal.write(6, f"deliverer started on {spool.path}")
        try:
            while not stop.is_set():
                outcomes = flush(spool, settings(), journal, force=False, jobs=jobs)
                if outcomes:
                    journal.write(6, f"deliverer: {summary(outcomes)}")
                wait = next_due(spool, time.time())
                sleep = RESCAN_SECONDS if wait is None else min(wait, RESCAN_SECONDS)
                sleep = max(sleep, MIN_SLEEP_SECONDS)
                if fd is None:
                    stop.wait(sleep)
                    continue
                readable, _, _ = select.select([fd], [], [], sleep)
                if readable:
                    _drain(fd)
        finally:
            restore()
            journal.write(6, "deliverer stopped")


def _stop_on_signals(stop: threading.Event, fd: int | None) -> Callable[[], None]:
    """SIGTERM and SIGINT end the loop at once; returns what puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        stop.set()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, b"\n")  # wakes the select at once

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, previous in old.items():
            signal.signal(sig, previous)

    return restore

"""A Maildir that receives what the local proxy would have sent.

Delivery follows the Maildir protocol: write under tmp/, rename into new/, so
a reader never sees half a message and a crash of the proxy leaves none behind.
The message is written into the open file by the caller's function, in pieces:
a 25 MB message need never be in memory whole.

The fsync policy: with `fsync` (`gaemail serve --fsync`) the file is fsynced
before the rename and new/ after it, so a message the proxy acknowledged
survives a power loss too.  Without it (the default of `gaemail serve`: a
development outbox) the kernel writes it out in its own time, and a power loss
can lose the last seconds of mail; the two fsyncs cost more than the rest of a
request together.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_SUBDIRS = ("tmp", "new", "cur")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the names in a directory durable (a rename into it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Maildir:
    """The Maildir at `path`, created (mode 0700) when missing; see the fsync policy above."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        for name in _SUBDIRS:
            (self.path / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        # Maildir names must not contain / or :, which hostnames rarely do.
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
        self._counter = itertools.count(1)

    def deliver(self, write: Callable[[BinaryIO], object]) -> Path:
        """Store the message `write` writes into the file it is given; returns its path under new/.

        If `write` raises, the file is removed and the exception propagates.
        """
        name = self._unique_name()
        tmp = self.path / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            final = self.path / "new" / name
            os.rename(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if not self.fsync:
            return final
        try:
            # The rename is on disk only once new/ is: a message the proxy has
            # acknowledged must survive a crash.  One fsync of new/ per message.
            fsync_dir(final.parent)
        except BaseException:
            final.unlink(missing_ok=True)  # not acknowledged: the client retries
            raise
        return final

    def delivered(self) -> list[Path]:
        """The messages in new/, in name order: delivery order, to the microsecond."""
        return sorted((self.path / "new").iterdir(), key=lambda p: p.name)

    def _unique_name(self) -> str:
        # time, then microseconds, process and a per-process counter: unique across
        # the threads and worker processes that share this Maildir.
        now = time.time_ns() // 1000
        seconds, micros = divmod(now, 1_000_000)
        return f"{seconds}.M{micros:06d}P{os.getpid()}Q{next(self._counter)}.{self._host}"

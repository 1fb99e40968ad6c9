"""A syslog socket of the tests' own, so gmail's mail log never reaches the host's.

One per test process, started on first use: a datagram socket in a directory
every user can traverse, writable by all (cron and Exim run gmail as other
users), read by a daemon thread that keeps every line it receives.
"""

from __future__ import annotations

import functools
import os
import socket
import tempfile
import threading
import time
from pathlib import Path


class SyslogSink:
    def __init__(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="gaemail-syslog-"))
        directory.chmod(0o755)
        self.path = directory / "log"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        os.chmod(self.path, 0o666)  # noqa: S103 - any test user's gmail may log here
        self._lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="syslog-sink", daemon=True).start()

    def _read(self) -> None:
        while True:
            packet = self._sock.recv(65536)
            with self._lock:
                self._lines.append(packet.decode("utf-8", "replace"))

    def lines(self, containing: str = "") -> list[str]:
        with self._lock:
            return [line for line in self._lines if containing in line]

    def wait_for(self, containing: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        """The lines that contain `containing`, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.lines(containing)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{count} mail log line(s) with {containing!r}: {self.lines()}")


@functools.cache
def mail_log() -> SyslogSink:
    return SyslogSink()

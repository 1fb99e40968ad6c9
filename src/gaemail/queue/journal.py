"""The mail log: one syslog line per message and outcome, in the mail facility.

Written straight to the syslog socket (/dev/log, which every user may write to;
GMAIL_SYSLOG_SOCKET names another), so no log file permissions stand between a
cron job and its record.  Where no syslog daemon listens, the first line that
cannot be written is said once on stderr instead of being dropped in silence.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Mapping
from typing import TextIO

from gaemail.queue.spool import Entry

SOCKET_VARIABLE = "GMAIL_SYSLOG_SOCKET"
DEFAULT_SOCKET = "/dev/log"
LOG_MAIL = 2 << 3
SEVERITY = {"queued": 6, "sent": 6, "deferred": 4, "held": 3, "failed": 3, "bounced": 5}
MAX_FIELD = 1000  # a Message-ID or a reason is cut to this many characters


class Journal:
    """Writes the mail log of one program (gmail, gaemail)."""

    _told_no_syslog = False  # per process: one line on stderr is enough

    def __init__(
        self, program: str, environ: Mapping[str, str], stderr: TextIO | None = None
    ) -> None:
        self.program = program
        self.address = environ.get(SOCKET_VARIABLE) or DEFAULT_SOCKET
        self.stderr = stderr

    def record(self, status: str, ident: str, entry: Entry, reason: str = "") -> None:
        """One outcome of one message; `ident` is its queue id, or '-' when never queued."""
        envelope = entry.envelope
        line = (
            f"{ident}: status={status} msgid={_clean(entry.message_id)} "
            f"from=<{_clean(envelope.sender or '')}> "
            f"to=<{_clean(','.join(envelope.recipients))}> size={entry.size}"
        )
        if reason:
            line += f" reason={_clean(reason)}"
        self.write(SEVERITY.get(status, 6), line)

    def write(self, severity: int, line: str) -> None:
        stamp = time.strftime("%b %e %H:%M:%S")
        packet = f"<{LOG_MAIL | severity}>{stamp} {self.program}[{os.getpid()}]: {line}"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # A syslog daemon that stopped reading must not hang a mail: a full
                # queue is reported like a missing socket.
                sock.setblocking(False)
                sock.connect(self.address)
                sock.send(packet.encode("utf-8", "replace")[:8192])
        except OSError as exc:
            self._no_syslog(exc, line)

    def _no_syslog(self, exc: OSError, line: str) -> None:
        if self.stderr is None or Journal._told_no_syslog:
            return
        Journal._told_no_syslog = True
        with contextlib.suppress(OSError, ValueError):  # stderr closed too: the exit says it
            self.stderr.write(
                f"{self.program}: cannot write the mail log to {self.address} "
                f"({exc.strerror or exc}; {SOCKET_VARIABLE} names another socket): {line}\n"
            )


def _clean(text: str) -> str:
    """One log field: control characters escaped, whitespace runs folded, length capped."""
    folded = " ".join(text.split())
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in folded)
    return escaped if len(escaped) <= MAX_FIELD else escaped[:MAX_FIELD] + "..."

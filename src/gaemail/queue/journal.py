"""One syslog line per message and outcome, in the mail facility.

Written straight to the syslog socket (/dev/log, which every user may write to),
so no log file permissions stand between a cron job and its record; nothing is
written when no syslog daemon listens.  GMAIL_SYSLOG_SOCKET names another socket.
"""

from __future__ import annotations

import os
import socket
import time

TYPE_CHECKING = False  # no run-time typing on gmail's start-up path (bench/)
if TYPE_CHECKING:
    from collections.abc import Mapping

    from gaemail.queue.spool import Envelope

LOG_MAIL = 2 << 3
SEVERITY = {"queued": 6, "sent": 6, "deferred": 4, "failed": 3, "bounced": 5}


class Journal:
    def __init__(self, program: str, environ: Mapping[str, str]) -> None:
        self.program = program
        self.address = environ.get("GMAIL_SYSLOG_SOCKET") or "/dev/log"

    def record(self, status: str, ident: str, envelope: Envelope, reason: str = "") -> None:
        sender = envelope.sender or ""
        line = (
            f"{ident}: status={status} msgid={envelope.message_id} from=<{sender}> "
            f"to=<{','.join(envelope.recipients)}> size={envelope.size}"
        )
        if reason:
            line += f" reason={' '.join(reason.split())}"
        self.write(SEVERITY.get(status, 6), line)

    def write(self, severity: int, line: str) -> None:
        stamp = time.strftime("%b %e %H:%M:%S")
        packet = f"<{LOG_MAIL | severity}>{stamp} {self.program}[{os.getpid()}]: {line}"
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.send(packet.encode("utf-8", "replace")[:8192])
        except OSError:
            pass  # no syslog here: the exit status and stderr still tell the caller

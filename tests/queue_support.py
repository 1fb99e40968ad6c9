"""Helpers for the queue end-to-end tests: a real `gaemail serve`, the installed gmail,
and what the queue and the outbox hold.

Not a conftest: test_queue_e2e and test_faults import it.  Every wait is bounded;
processes are stopped by their own PID.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration_support import launch_serve, stop_process
from syslog_sink import mail_log

BIN = Path(sys.executable).parent
GMAIL, GAEMAIL = str(BIN / "gmail"), str(BIN / "gaemail")
WAIT = 30.0


@dataclass
class Server:
    url: str
    envdir: Path
    outbox: Path
    process: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].strip("/"))

    def deliveries(self) -> Counter[str]:
        """How often each client Message-ID arrived in the outbox ("?": none)."""
        ids: Counter[str] = Counter()
        new = self.outbox / "new"
        for path in new.iterdir() if new.exists() else []:
            match = re.search(rb"^X-Gaemail-Message-Id: (\S+)", path.read_bytes(), re.M)
            ids[match.group(1).decode() if match else "?"] += 1
        return ids

    def subjects(self) -> list[str]:
        """The Subject of every message in the outbox."""
        new = self.outbox / "new"
        found = []
        for path in new.iterdir() if new.exists() else []:
            match = re.search(rb"^Subject: (.*)$", path.read_bytes(), re.M)
            found.append(match.group(1).decode() if match else "?")
        return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(state: Path, port: int = 0) -> Server:
    process, url, envdir, _ = launch_serve(state, state / "outbox", port)
    return Server(url, envdir, state / "outbox", process)


def stop(server: Server) -> None:
    stop_process(server.process)


@contextlib.contextmanager
def running_server(state: Path) -> Iterator[Server]:
    server = start_server(state)
    try:
        yield server
    finally:
        stop(server)


def gmail_env(envdir: Path, queue: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(queue.parent),
        "GMAIL_ENVDIR": str(envdir),
        "GMAIL_QUEUE_DIR": str(queue),
        "GMAIL_SYSLOG_SOCKET": str(mail_log().path),
        **extra,
    }


def run(
    args: list[str], env: dict[str, str], stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        args, input=stdin, env=env, capture_output=True, timeout=WAIT, check=False
    )


def message(n: int) -> bytes:
    return (
        f"From: sender@example.com\nTo: rcpt{n}@example.com\nSubject: test {n}\n"
        f"Message-ID: <msg{n}@example.com>\n\nbody {n}\n"
    ).encode()


def message_id(n: int) -> str:
    """The Message-ID of message(n)."""
    return f"<msg{n}@example.com>"


def wait_for(predicate: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def queue_entries(queue: Path) -> dict[str, str]:
    """Queue id -> Message-ID of every message waiting in the queue."""
    new = queue / "new"
    found = {}
    for path in new.iterdir() if new.exists() else []:
        try:
            with path.open("rb") as f:
                found[path.name] = json.loads(f.readline())["message_id"]
        except FileNotFoundError:
            continue  # sent while we looked
    return found


def queued(queue: Path) -> Counter[str]:
    """How often each Message-ID waits in the queue."""
    return Counter(queue_entries(queue).values())


def attempted_and_unlocked(queue: Path) -> bool:
    """Every queued message has been attempted and nobody is attempting it now.

    A detached background delivery gives no sign when it ends; this is it: its
    attempt wrote the message's state and let go of the message's lock.
    """
    for ident in queue_entries(queue):
        if not (queue / "state" / f"{ident}.json").exists():
            return False
        try:
            fd = os.open(queue / "new" / ident, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        finally:
            os.close(fd)
    return True

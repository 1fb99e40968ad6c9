"""Background servers the bench starts on 127.0.0.1, and stops by their process id.

Each server runs in its own session (so its process group id is its pid) with its
output going to a log file, never a pipe that could fill up.  It is ready once
its log shows the line that names its address; `stop` signals that process group
only, so workers a server forked (gunicorn's) go with it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from paired import BenchError

READY_TIMEOUT = 60.0  # the App Engine SDK's first import can take a while


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    found: dict[str, str] = field(default_factory=dict)

    def log_text(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL if it lingers."""
        if self.proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


def start(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path,
    patterns: Mapping[str, str],
    cwd: Path | None = None,
) -> Service:
    """Start a server and wait until its log matches every regex in `patterns`.

    The first group of each match is kept in `Service.found` under the pattern's key.
    """
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    service = Service(name, proc, log)
    try:
        service.found = _wait_for(service, patterns)
    except BaseException:
        service.stop()
        raise
    return service


def _wait_for(service: Service, patterns: Mapping[str, str]) -> dict[str, str]:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        text = service.log_text()
        matches = {key: re.search(pattern, text) for key, pattern in patterns.items()}
        if all(matches.values()):
            return {key: m.group(1) for key, m in matches.items() if m}
        if service.proc.poll() is not None:
            raise BenchError(f"{service.name} exited {service.proc.returncode}:\n{text[-2000:]}")
        if time.monotonic() > deadline:
            raise BenchError(
                f"{service.name} not ready after {READY_TIMEOUT:.0f}s:\n{text[-2000:]}"
            )
        time.sleep(0.05)

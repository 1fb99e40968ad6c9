"""What every part of the bench shares: paths, counts, the cron-like environment.

Commands run with the environment cron gives a job (`env -i HOME LOGNAME SHELL
PATH LANG`), plus only the settings a client needs to find the proxy, the same
for gmail and the stdlib client.  HOME is a private empty directory, so no
~/.msmtprc or per-user state leaks in; GMAIL_ENVDIR is an empty directory for the
same reason, and GMAIL_QUEUE_DIR keeps gmail's queue inside the scratch tree.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENV_BIN = ROOT / ".venv" / "bin"
MESSAGE = BENCH_DIR / "msg.eml"
CRON_PATH = "/usr/bin:/bin"


@dataclass(frozen=True)
class Counts:
    """How much to measure; --quick shrinks every count."""

    runs: int = 30
    warmup: int = 2
    wrk_seconds: int = 3
    wrk_rounds: int = 3
    wrk_connections: int = 8
    flush_messages: int = 1000
    anatomy_runs: int = 5
    rss_runs: int = 5


QUICK = Counts(
    runs=5, warmup=1, wrk_seconds=1, wrk_rounds=1, flush_messages=50, anatomy_runs=2, rss_runs=1
)


@dataclass(frozen=True)
class Features:
    """Which parts of gaemail this checkout has, probed from their --help."""

    serve: bool
    queue: bool

    @classmethod
    def probe(cls) -> Features:
        serve = _help(VENV_BIN / "gaemail", "serve")
        gmail_help = _help(VENV_BIN / "gmail")
        return cls(
            serve=bool(serve) and "--outbox" in serve,
            queue="--no-queue" in gmail_help and "--queue-dir" in gmail_help,
        )


def _help(program: Path, *args: str) -> str:
    """The --help text of a command, or "" when it has no such command."""
    done = subprocess.run(
        [str(program), *args, "--help"], capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else ""


@dataclass
class Proxy:
    """Where the clients send: its URL, signing key and what it is."""

    url: str
    secret: str
    kind: str
    pid: int | None = None  # the server's process, for its CPU time


@dataclass
class Workbench:
    scratch: Path
    counts: Counts
    features: Features
    python: Path = VENV_BIN / "python"
    gmail: Path = VENV_BIN / "gmail"
    msmtp: str | None = field(default_factory=lambda: shutil.which("msmtp", path=CRON_PATH))
    proxy: Proxy | None = None

    @property
    def queue_dir(self) -> Path:
        return self.scratch / "queue"

    @property
    def body(self) -> Path:
        """The body of msg.eml alone, for mail-style sends."""
        path = self.scratch / "body.txt"
        if not path.exists():
            path.write_bytes(MESSAGE.read_bytes().split(b"\n\n", 1)[1])
        return path

    def base_env(self) -> dict[str, str]:
        """The environment cron gives a job, with a private HOME."""
        home = self.scratch / "home"
        home.mkdir(exist_ok=True)
        return {
            "HOME": str(home),
            "LOGNAME": pwd.getpwuid(os.getuid()).pw_name,
            "SHELL": "/bin/sh",
            "PATH": CRON_PATH,
            "LANG": "C.UTF-8",
        }

    def client_env(self) -> dict[str, str]:
        """base_env plus what both clients need to reach the proxy."""
        if self.proxy is None:
            raise RuntimeError("no proxy started")
        envdir = self.scratch / "empty-envdir"
        envdir.mkdir(exist_ok=True)
        return {
            **self.base_env(),
            "GMAIL_PROXY_URL": self.proxy.url,
            "GMAIL_SECRET_KEY": self.proxy.secret,
            "GMAIL_FROM": "cron@example.com",
            "GMAIL_ENVDIR": str(envdir),
            "GMAIL_QUEUE_DIR": str(self.queue_dir),
        }

    def stdlib_client(self, *args: str) -> tuple[str, ...]:
        return (str(self.python), str(BENCH_DIR / "stdlib_client.py"), *args)

    def floor(self) -> tuple[str, ...]:
        return (str(self.python), "-c", "pass")

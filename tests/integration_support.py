"""End-to-end helpers for the caller tests: a real `gaemail serve`, the installed
`gmail`, envdirs other users can read, and running things as `nobody`.

Not a conftest: the caller tests import it, so nothing here runs for other tests.
Every wait is bounded; processes are stopped by their own PID.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import grp
import os
import pwd
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

import pytest

from syslog_sink import mail_log

BIN = Path(sys.executable).parent  # the venv's scripts: gmail, gaemail
GMAIL = BIN / "gmail"
GAEMAIL = BIN / "gaemail"
START_TIMEOUT = 60.0  # gaemail serve loads the App Engine SDK
WAIT = 30.0  # for a delivery, a subprocess
PROXY_SENDER = "proxy@example.com"  # the server's default sender, for fix_sender
CRON_PATH = "/usr/bin:/bin"  # what Debian cron gives the sendmail it runs


def debian_program(name: str, package: str) -> str:
    """The path of a program from a Debian package, or skip the test saying how to get it."""
    path = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.skip(f"{name} not installed: apt-get install {package} (scripts/setup-system)")
    return path


def need_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {why}")


# ---------------------------------------------------------------------------
# What arrives: the outbox Maildir of `gaemail serve`
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """One message file in the outbox."""

    path: Path
    raw: bytes
    msg: EmailMessage

    @classmethod
    def read(cls, path: Path) -> Delivered:
        raw = path.read_bytes()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return cls(path, raw, msg)

    @property
    def envelope_to(self) -> list[str]:
        """X-Envelope-To: every recipient the Mail API was given (to, cc and bcc)."""
        return addresses(self.msg, "X-Envelope-To")

    @property
    def subject(self) -> str:
        return str(self.msg["Subject"] or "")

    @property
    def message_id(self) -> str:
        return str(self.msg["X-Gaemail-Message-Id"] or "")

    def text(self) -> str:
        """The decoded text/plain body."""
        part = self.msg.get_body(preferencelist=("plain",))
        assert part is not None, f"no text/plain part in {self.path}"
        content = part.get_content()
        assert isinstance(content, str)
        return content


def addresses(msg: EmailMessage, name: str) -> list[str]:
    """The bare addresses of every `name` header, in order."""
    values = [str(v) for v in msg.get_all(name, [])]
    return [a for _, a in getaddresses(values) if a]


@dataclass
class Server:
    """A `gaemail serve` process on loopback."""

    url: str
    outbox: Path
    key_envdir: Path  # the development key and URL it made (root-only files)
    state_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def delivered(self) -> list[Delivered]:
        new = self.outbox / "new"
        paths = sorted(new.iterdir()) if new.is_dir() else []
        return [Delivered.read(p) for p in paths if not p.name.startswith(".")]

    def wait_for(
        self, match: Callable[[Delivered], bool], count: int = 1, timeout: float = WAIT
    ) -> list[Delivered]:
        """The delivered messages `match` accepts, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [d for d in self.delivered() if match(d)]
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(found) >= count, (
            f"{len(found)} of {count} message(s) arrived in {self.outbox} within {timeout}s; "
            f"server log:\n{self.log.read_text(errors='replace')[-2000:]}"
        )
        return found

    def secret(self) -> str:
        return (self.key_envdir / "GMAIL_SECRET_KEY").read_text().splitlines()[0].strip()

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate one process we started, by its PID; kill it if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _lines(stream: object, into: queue.Queue[str | None]) -> None:
    for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
        into.put(raw.decode("utf-8", "replace"))
    into.put(None)


def launch_serve(
    state_dir: Path, outbox: Path, port: int = 0
) -> tuple[subprocess.Popen[bytes], str, Path, Path]:
    """Start `gaemail serve` on loopback, waiting at most a minute for it to listen.

    The one way the test suites start a local proxy: (process, URL, the envdir
    with its development key and URL, its log).  Any sender is accepted, since
    these suites are about the callers and the queue, not App Engine's sender rule.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / "serve.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(GAEMAIL),
                "serve",
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--state-dir", str(state_dir), "--outbox", str(outbox)),
                *("--default-sender", PROXY_SENDER, "--authorized-sender", "*"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=_server_environ(),
        )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    url = envdir = None
    deadline = time.monotonic() + START_TIMEOUT
    while envdir is None and (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:
            break
        if found := re.search(r"(http://127\.0\.0\.1:\d+/)", line):
            url = found.group(1)
        if line.startswith("export GMAIL_ENVDIR="):
            envdir = Path(line.strip().split("=", 1)[1])
    if url is None or envdir is None:
        stop_process(process)
        pytest.fail(f"gaemail serve did not start: {log.read_text(errors='replace')[-2000:]}")
    return process, url, envdir, log


def start_server(state_dir: Path, outbox: Path) -> Server:
    process, url, envdir, log = launch_serve(state_dir, outbox)
    return Server(url, outbox, envdir, state_dir, process, log)


def _server_environ() -> dict[str, str]:
    """The test's environment without any gaemail setting, so serve makes its own key."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GMAIL_")}


def tagged(tag: str) -> Callable[[Delivered], bool]:
    """Matches the delivered messages whose Subject carries `tag`."""
    return lambda d: tag in d.subject


@contextlib.contextmanager
def running_server(base: Path) -> Iterator[Server]:
    server = start_server(base / "server-state", base / "outbox")
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------
# The sending side: settings other users can read, gmail under other names
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """A user a caller runs gmail as."""

    name: str
    uid: int
    gid: int

    @classmethod
    def current(cls) -> Account:
        return cls(pwd.getpwuid(os.geteuid()).pw_name, os.geteuid(), os.getegid())

    @classmethod
    def nobody(cls) -> Account:
        """nobody:nogroup when we are root (cron and Exim run mail as the job's user)."""
        if os.geteuid() != 0:
            return cls.current()
        return cls("nobody", pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)

    def command(self, argv: list[str]) -> list[str]:
        """argv run as this account: setpriv drops to its uid and gid, and no other group."""
        if self.uid == os.geteuid():
            return argv
        return [
            shutil.which("setpriv") or "/usr/bin/setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            *argv,
        ]


@dataclass
class PublicDir:
    """A directory under the system temp dir that other users can traverse.

    pytest's tmp_path is private to root, and cron and Exim run gmail as another
    user, who must reach the envdir, the queue and the sendmail link.
    """

    path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gaemail-callers-")))

    def __post_init__(self) -> None:
        self.path.chmod(0o755)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def sendmail_link(directory: Path, name: str = "sendmail") -> Path:
    """The installed gmail under the name `sendmail`, as it is installed for callers."""
    link = directory / name
    link.symlink_to(GMAIL)
    return link


def write_envdir(
    directory: Path, server: Server, sender: Account, **settings: str
) -> dict[str, Path]:
    """An envdir with the server's URL and key, laid out as on a production machine.

    GMAIL_PROXY_URL and the directory are world-readable; GMAIL_SECRET_KEY is mode
    0640, group `sender.gid` (the group of the users who send); the queue belongs
    to the sender.  Returns the envdir and queue paths.
    """
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    (directory / "GMAIL_PROXY_URL").write_text(server.url + "\n")
    (directory / "GMAIL_PROXY_URL").chmod(0o644)
    key = directory / "GMAIL_SECRET_KEY"
    key.touch(mode=0o600)
    key.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(key, 0, sender.gid)
    key.chmod(0o640)
    key.write_text(server.secret() + "\n")
    spool = directory.parent / f"queue-{sender.name}"
    spool.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(spool, sender.uid, sender.gid)
    settings.setdefault("GMAIL_QUEUE_DIR", str(spool))
    for name, value in settings.items():
        (directory / name).write_text(value + "\n")
        (directory / name).chmod(0o644)
    return {"envdir": directory, "queue": spool}


def caller_environ(envdir: Path, path: str = CRON_PATH, **extra: str) -> dict[str, str]:
    """A bare environment as cron or Exim give it, plus where the settings are.

    GMAIL_SYSLOG_SOCKET points gmail's mail log at the tests' own syslog socket.
    """
    return {
        "PATH": path,
        "GMAIL_ENVDIR": str(envdir),
        "GMAIL_SYSLOG_SOCKET": str(mail_log().path),
        **extra,
    }


def run(
    argv: list[str],
    env: Mapping[str, str],
    stdin: bytes = b"",
    cwd: str | Path = "/",
    timeout: float = WAIT,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv,
        input=stdin,
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def check_account_can_run_gmail(account: Account, env: Mapping[str, str]) -> None:
    """Skip, saying why, when `account` cannot execute the venv's gmail at all."""
    # Through sh, as cron and Exim's children exec it: the script's interpreter
    # (the venv's python and what it links to) must be reachable by the account.
    probe = ["/bin/sh", "-c", 'exec "$0" --version', str(GMAIL)]
    result = run(account.command(probe), env)
    if result.returncode != 0:
        why = result.stderr.decode(errors="replace").strip()[:200]
        pytest.skip(
            f"{account.name} cannot run {GMAIL} ({why}): the venv, the Python it links to "
            "(not one under /root) and the temp dir must be reachable by every user"
        )


def queued(spool: Path) -> list[str]:
    new = spool / "new"
    return sorted(p.name for p in new.iterdir()) if new.is_dir() else []

"""Shared fixtures, grouped by the side of the project they serve."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from click.testing import Result
    from flask import Flask
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

    from gaemail.server import ServerConfig
    from gaemail.server.local import OutboxMailStub

# ---------------------------------------------------------------------------
# Server side (gaemail.server): a fresh local app per test, on the SDK's stubs.
# Imports stay inside the fixtures so client-only runs never load Flask or the SDK.
# ---------------------------------------------------------------------------

SERVER_KEY = b"current-key"
OLD_SERVER_KEY = b"old-key"
DEFAULT_SENDER = "proxy@example-app.appspotmail.com"

PostMessage = Callable[..., "TestResponse"]


@pytest.fixture
def server_config() -> ServerConfig:
    """Two keys, as during a rotation (SERVER_KEY new, OLD_SERVER_KEY old), and a default sender."""
    from gaemail.server import ServerConfig

    return ServerConfig(keys=(SERVER_KEY, OLD_SERVER_KEY), default_sender=DEFAULT_SENDER)


@pytest.fixture
def outbox_dir(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def local_app(server_config: ServerConfig, outbox_dir: Path) -> Flask:
    from gaemail.server.local import create_local_app

    return create_local_app(server_config, outbox_dir)


@pytest.fixture
def mail_stub(local_app: Flask) -> OutboxMailStub:
    """The SDK mail stub the app sends through."""
    stub: OutboxMailStub = local_app.extensions["mail_stub"]
    return stub


@pytest.fixture
def client(local_app: Flask) -> FlaskClient:
    return local_app.test_client()


@pytest.fixture
def post_message(client: FlaskClient) -> PostMessage:
    """post_message(msg_bytes, key=SERVER_KEY, fix_sender=False): a signed v1 POST."""
    from gaemail.protocol import v1

    def post(msg: bytes, key: bytes = SERVER_KEY, *, fix_sender: bool = False) -> TestResponse:
        body = v1.encode_request(msg, key, fix_sender=fix_sender)
        return client.post("/", data=body, content_type=v1.CONTENT_TYPE)

    return post


@pytest.fixture
def plain_message() -> EmailMessage:
    """A small valid message for tests to change."""
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.com>"
    msg["To"] = "rcpt@example.org"
    msg["Subject"] = "Test message"
    msg["Message-ID"] = "<test-1@example.com>"
    msg.set_content("Hello.\n")
    return msg


@pytest.fixture
def public() -> Iterator[Path]:
    """A temp directory every user can traverse: cron and Exim run gmail as nobody."""
    from integration_support import PublicDir

    directory = PublicDir()
    yield directory.path
    directory.remove()


@pytest.fixture
def tag() -> str:
    """A word that marks this test's messages in a shared outbox."""
    import uuid

    return f"t{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------
# Commands in-process (gaemail.cli, gaemail.admin): click's CliRunner drives the
# console scripts' own entry points, in a private environment.
# ---------------------------------------------------------------------------


class MailLog:
    """A syslog socket of our own: what gmail writes to the mail log arrives here."""

    def __init__(self) -> None:
        import socket
        import tempfile

        self.directory = Path(tempfile.mkdtemp(prefix="gaemail-log-"))  # short: AF_UNIX
        self.path = str(self.directory / "log")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)

    def lines(self) -> list[str]:
        found = []
        while True:
            try:
                found.append(self.sock.recv(65536).decode("utf-8", "replace"))
            except BlockingIOError:
                return found

    def close(self) -> None:
        import shutil

        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def mail_log() -> Iterator[MailLog]:
    log = MailLog()
    yield log
    log.close()


def command_environment(home: Path, log: MailLog, **extra: str) -> dict[str, str | None]:
    """No GMAIL_* of the caller's; a queue, an envdir and a mail log of the test's own."""
    import os

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("GMAIL_")}
    env |= {
        "SENDER": None,
        "HOME": str(home),
        "GMAIL_ENVDIR": str(home / "envdir"),
        "GMAIL_QUEUE_DIR": str(home / "queue"),
        "GMAIL_SYSLOG_SOCKET": log.path,
        **extra,
    }
    return env


class Gmail:
    """gmail(*args, input=b"", program="gmail", **environ): one in-process run."""

    def __init__(self, home: Path, log: MailLog) -> None:
        self.home, self.log = home, log
        self.queue = home / "queue"

    def __call__(
        self, *args: str, input: bytes = b"", program: str = "gmail", **environ: str
    ) -> Result:
        from click.testing import CliRunner

        from gaemail.cli import gmail

        runner = CliRunner()
        env = command_environment(self.home, self.log, **environ)
        return runner.invoke(
            gmail, list(args), input=input, env=env, prog_name=program, catch_exceptions=False
        )

    def queued(self, area: str = "new") -> list[str]:
        directory = self.queue / area
        return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def gmail(tmp_path: Path, mail_log: MailLog) -> Gmail:
    return Gmail(tmp_path, mail_log)

"""Shared fixtures, grouped by the side of the project they serve."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
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

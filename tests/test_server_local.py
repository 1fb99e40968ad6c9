"""Local mode's wiring: the SDK's stubs, no wrap_wsgi_app, the factory for gunicorn."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from google.appengine.api import apiproxy_stub_map, mail_stub
from google.appengine.api.memcache import memcache_stub

from gaemail import protocol
from gaemail.errors import ConfigurationError
from gaemail.protocol import v1
from gaemail.server.app import log_requests_to
from gaemail.server.local import OutboxMailStub, app_from_environment
from gaemail.server.local.outbox import Maildir

if TYPE_CHECKING:
    from conftest import PostMessage


def test_local_app_uses_the_sdks_own_stubs(local_app: Flask) -> None:
    stub = local_app.extensions["mail_stub"]
    assert isinstance(stub, mail_stub.MailServiceStub)
    assert apiproxy_stub_map.apiproxy.GetStub("mail") is stub
    memcache = apiproxy_stub_map.apiproxy.GetStub("memcache")
    assert isinstance(memcache, memcache_stub.MemcacheServiceStub)
    assert local_app.extensions["memcache_stub"] is memcache


def test_memcache_stub_answers(local_app: Flask) -> None:
    from google.appengine.api import memcache

    assert memcache.add("key", "value", time=60, namespace="gaemail-test") is True
    assert memcache.add("key", "value", time=60, namespace="gaemail-test") is False


def test_local_app_is_not_wrapped(local_app: Flask) -> None:
    # Wrapped, it would copy client-sent X-AppEngine-* headers into os.environ.
    assert local_app.wsgi_app.__func__ is Flask.wsgi_app  # type: ignore[attr-defined]


def test_app_from_environment_needs_an_outbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAEMAIL_OUTBOX", raising=False)
    monkeypatch.setenv("GMAIL_SECRET_KEY", "k1")
    with pytest.raises(ConfigurationError, match="GAEMAIL_OUTBOX"):
        app_from_environment()


def test_app_from_environment_sends_into_the_outbox(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server_logger: logging.Logger
) -> None:
    monkeypatch.setenv("GAEMAIL_OUTBOX", str(tmp_path / "out"))
    monkeypatch.setenv("GMAIL_SECRET_KEY", "k1,k2")
    monkeypatch.setenv("GMAIL_DEFAULT_SENDER", "app@example.appspotmail.com")
    app = app_from_environment()
    stub = app.extensions["mail_stub"]
    assert isinstance(stub, OutboxMailStub)
    raw = b"To: t@example.org\nSubject: s\n\nx\n"
    body = v1.encode_request(raw, b"k2", fix_sender=True)
    assert app.test_client().post("/", data=body).status_code == protocol.SENT
    # The Maildir is the record; a long-running app keeps no message in memory.
    (path,) = Maildir(tmp_path / "out").delivered()
    assert b"\nFrom: app@example.appspotmail.com\n" in path.read_bytes()
    assert stub.get_sent_messages() == []
    assert len(stub.requests) == 0


def test_app_from_environment_without_key_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GAEMAIL_OUTBOX", str(tmp_path / "out"))
    monkeypatch.delenv("GMAIL_SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="no signing key"):
        app_from_environment()


@pytest.fixture
def server_logger() -> Iterator[logging.Logger]:
    """The proxy's logger, restored afterwards: entry points reconfigure it."""
    logger = logging.getLogger("gaemail.server")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


def test_one_log_line_per_request_and_no_secrets(
    server_logger: logging.Logger, post_message: PostMessage, plain_message: EmailMessage
) -> None:
    stream = io.StringIO()
    log_requests_to(stream)
    log_requests_to(stream)  # a second call replaces the first handler
    signature = v1.sign(b"current-key", plain_message.as_bytes())
    assert post_message(plain_message.as_bytes()).status_code == protocol.SENT
    assert post_message(plain_message.as_bytes(), b"wrong-key").status_code == 400
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "sent 204 message-id=<test-1@example.com> recipients=1" in lines[0]
    assert "domains=example.org protocol=v1 key=k" in lines[0]  # the key's id, never the key
    assert "refused 400 kind=signature" in lines[1]
    assert "Signature doesn't match" in lines[1]
    for secret in ("current-key", "wrong-key", signature, "Hello."):
        assert secret not in stream.getvalue()


def test_a_remote_host_is_refused_without_allow_remote_and_warned_about_with_it() -> None:
    from gaemail.server.local.serve import ServeOptions, check_host

    err = io.StringIO()
    check_host(ServeOptions("127.0.0.1", 0), err)
    check_host(ServeOptions("::1", 0), err)
    assert err.getvalue() == ""
    with pytest.raises(ConfigurationError, match="--allow-remote"):
        check_host(ServeOptions("192.0.2.1", 0), err)
    check_host(ServeOptions("192.0.2.1", 0, allow_remote=True), err)
    assert "WARNING" in err.getvalue()
    assert "plain HTTP" in err.getvalue()
    assert "development" in err.getvalue()


def test_other_envdir_settings_are_copied_but_not_the_key_or_url(tmp_path: Path) -> None:
    from gaemail.server.local.serve import copy_other_settings

    system = tmp_path / "etc"
    system.mkdir()
    (system / "GMAIL_DEFAULT_DOMAIN").write_text("example.net\n")
    (system / "GMAIL_ALIASES").write_text("/etc/aliases\n")
    (system / "GMAIL_SECRET_KEY").write_text("production-key\n")
    (system / "GMAIL_PROXY_URL").write_text("https://prod.example/\n")
    dev = tmp_path / "dev"
    copy_other_settings(system, dev)
    assert sorted(p.name for p in dev.iterdir()) == ["GMAIL_ALIASES", "GMAIL_DEFAULT_DOMAIN"]
    assert (dev / "GMAIL_DEFAULT_DOMAIN").read_text() == "example.net\n"
    copy_other_settings(tmp_path / "missing", dev)  # no system envdir: nothing to do

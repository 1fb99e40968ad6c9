"""Local mode's Maildir outbox: file format, atomic delivery, exact bytes over real HTTP."""

from __future__ import annotations

import email
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from werkzeug.serving import make_server

from gaemail import protocol
from gaemail.server.local import create_local_app
from gaemail.server.outbox import Maildir

if TYPE_CHECKING:
    from flask import Flask

    from conftest import PostMessage
    from gaemail.server import ServerConfig
    from gaemail.server.local import OutboxMailStub

HTTP_TIMEOUT = 30


def _delivered(outbox_dir: Path) -> list[EmailMessage]:
    messages = []
    for path in Maildir(outbox_dir).delivered():
        parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


def test_outbox_file_has_envelope_and_message_id_but_no_bcc(
    post_message: PostMessage, outbox_dir: Path, plain_message: EmailMessage
) -> None:
    plain_message.replace_header("To", '"Doe, John" <j@example.org>, k@example.org')
    plain_message["Cc"] = "Carl <c@example.org>"
    plain_message["Bcc"] = "hidden@example.org"
    assert post_message(plain_message.as_bytes()).status_code == protocol.SENT

    (delivered,) = _delivered(outbox_dir)
    assert delivered["X-Envelope-To"] == (
        "j@example.org, k@example.org, c@example.org, hidden@example.org"
    )
    assert "Bcc" not in delivered
    assert b"hidden@example.org" not in delivered.as_bytes().split(b"X-Envelope-To")[0]
    assert delivered["X-Gaemail-Message-Id"] == "<test-1@example.com>"
    assert delivered["To"] == '"Doe, John" <j@example.org>, k@example.org'
    assert delivered["Cc"] == "Carl <c@example.org>"
    assert delivered["From"] == "Sender <sender@example.com>"
    assert delivered["Subject"] == "Test message"
    assert "Reply-To" not in delivered
    assert "Date" in delivered
    body = delivered.get_body(("plain",))
    assert body is not None
    assert body.get_content() == "Hello.\n"
    assert list((outbox_dir / "tmp").iterdir()) == []


def test_outbox_file_without_message_id_has_no_label(
    post_message: PostMessage, outbox_dir: Path, plain_message: EmailMessage
) -> None:
    del plain_message["Message-ID"]
    plain_message["List-Unsubscribe"] = "<mailto:u@example.com>"
    assert post_message(plain_message.as_bytes()).status_code == protocol.SENT
    (delivered,) = _delivered(outbox_dir)
    assert "X-Gaemail-Message-Id" not in delivered
    assert delivered["List-Unsubscribe"] == "<mailto:u@example.com>"


def test_refused_message_is_not_delivered(
    post_message: PostMessage, outbox_dir: Path, plain_message: EmailMessage
) -> None:
    plain_message.add_attachment(
        b"MZ", maintype="application", subtype="octet-stream", filename="run.bat"
    )
    assert post_message(plain_message.as_bytes()).status_code == protocol.BAD_REQUEST
    assert _delivered(outbox_dir) == []


def test_maildir_delivery_is_atomic_and_private(tmp_path: Path) -> None:
    maildir = Maildir(tmp_path / "box")
    paths = [maildir.deliver(b"Subject: %d\n\nx\n" % n) for n in range(50)]
    assert len(set(paths)) == 50
    assert maildir.delivered() == sorted(paths)
    assert all(path.parent.name == "new" for path in paths)
    assert {oct(path.stat().st_mode & 0o777) for path in paths} == {"0o600"}
    assert list((tmp_path / "box" / "tmp").iterdir()) == []
    assert (tmp_path / "box" / "cur").is_dir()


def test_failed_delivery_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = Maildir(tmp_path / "box")

    def failing_rename(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="No space"):
        maildir.deliver(b"Subject: lost\n\nx\n")
    assert list((tmp_path / "box" / "tmp").iterdir()) == []
    assert maildir.delivered() == []


def test_kept_messages_are_bounded(tmp_path: Path, server_config: ServerConfig) -> None:
    app = create_local_app(server_config, tmp_path / "box", keep=2)
    client = app.test_client()
    for n in range(3):
        raw = b"From: s@example.com\nTo: t@example.org\nSubject: %d\n\nx\n" % n
        body = protocol.encode_request(raw, b"current-key")
        assert client.post("/", data=body).status_code == protocol.SENT
    stub = app.extensions["mail_stub"]
    assert [m.subject for m in stub.get_sent_messages()] == ["1", "2"]
    assert [r.Subject for r in stub.requests] == ["1", "2"]
    assert len(Maildir(tmp_path / "box").delivered()) == 3


# -- over real HTTP, on a threaded werkzeug server -------------------------------


@pytest.fixture
def server_url(local_app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, local_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(HTTP_TIMEOUT)


def _http_post(url: str, msg: bytes, key: bytes = b"current-key") -> int:
    body = protocol.encode_request(msg, key)
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": protocol.CONTENT_TYPE}
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_5mb_attachment_arrives_byte_exact_over_http(
    server_url: str, outbox_dir: Path, mail_stub: OutboxMailStub, plain_message: EmailMessage
) -> None:
    data = os.urandom(5 * 1024 * 1024)
    assert any(byte >= 0x80 for byte in data[:64])
    plain_message.add_attachment(data, maintype="application", subtype="pdf", filename="big.pdf")
    assert _http_post(server_url, plain_message.as_bytes()) == protocol.SENT

    (delivered,) = _delivered(outbox_dir)
    (attachment,) = list(delivered.iter_attachments())
    assert attachment.get_filename() == "big.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == data
    assert mail_stub.requests[0].Attachment[0].Data == data


def test_each_concurrent_request_labels_its_own_delivery(server_url: str, outbox_dir: Path) -> None:
    # The label travels handler thread -> SDK thread pool by ContextVar; concurrent
    # requests on a threaded server must not see each other's.
    def send(n: int) -> None:
        raw = (
            b"From: s@example.com\nTo: t@example.org\nSubject: %d\nMessage-ID: <%d@test>\n\nx\n"
            % (n, n)
        )
        statuses[n] = _http_post(server_url, raw)

    statuses: dict[int, int] = {}
    threads = [threading.Thread(target=send, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HTTP_TIMEOUT)
    assert statuses == {n: protocol.SENT for n in range(16)}
    labels = {m["Subject"]: m["X-Gaemail-Message-Id"] for m in _delivered(outbox_dir)}
    assert labels == {str(n): f"<{n}@test>" for n in range(16)}


def test_http_refusals_reach_the_client(server_url: str, plain_message: EmailMessage) -> None:
    assert _http_post(server_url, plain_message.as_bytes(), b"wrong") == protocol.BAD_REQUEST

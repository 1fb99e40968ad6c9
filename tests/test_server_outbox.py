"""Local mode's Maildir outbox: file format, atomic delivery, exact bytes over real HTTP."""

from __future__ import annotations

import copy
import email
import os
import random
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from google.appengine.api import mail
from werkzeug.serving import make_server

from gaemail import protocol
from gaemail.protocol import v1
from gaemail.server.local import create_local_app, flatten, outbox_message
from gaemail.server.local.outbox import Maildir

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


def test_delivery_fsyncs_the_message_then_new_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = Maildir(tmp_path / "box")
    synced: list[str] = []
    fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    path = maildir.deliver(b"Subject: kept\n\nx\n")
    # The file's data before the rename, new/ after it: the rename is then durable.
    assert synced == [str(tmp_path / "box" / "tmp" / path.name), str(path.parent)]


def test_a_failed_directory_fsync_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = Maildir(tmp_path / "box")
    fsync = os.fsync

    def failing_on_directories(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(5, "Input/output error")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_on_directories)
    with pytest.raises(OSError, match="Input/output"):
        maildir.deliver(b"Subject: not acknowledged\n\nx\n")
    assert maildir.delivered() == []
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


def test_kept_messages_are_bounded(tmp_path: Path, server_config: ServerConfig) -> None:
    app = create_local_app(server_config, tmp_path / "box", keep=2)
    client = app.test_client()
    for n in range(3):
        raw = b"From: s@example.com\nTo: t@example.org\nSubject: %d\n\nx\n" % n
        body = v1.encode_request(raw, b"current-key")
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
    body = v1.encode_request(msg, key)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": v1.CONTENT_TYPE})
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
    # The label travels from the handler to the stub by ContextVar; concurrent
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


# -- writing the outbox file: flatten.as_bytes is Message.as_bytes, faster -------

LONG = "A Very Long Display Name That Goes On <long.address@example.org>"
OUTBOX_SHAPES: dict[str, dict[str, object]] = {
    "plain": {"to": ["t@example.org"], "subject": "Hi", "body": "Hello.\n"},
    "non-ascii": {
        "to": ["=?utf-8?b?SsO2cmc=?= <j@example.org>"],
        "subject": "Grüße aus Köln, 世界",
        "body": "Grüße\r\nline two\rline three\n",
    },
    "long headers": {
        "to": [LONG] * 3,
        "cc": [f"c{n}@example.org" for n in range(30)],
        "bcc": ["b@example.org"],
        "reply_to": LONG,
        "subject": "word " * 40 + " two  spaces and a trailing one ",
        "body": "x" * 2000,
        "headers": {"References": " ".join(f"<{n}@example.org>" for n in range(20))},
    },
    "html and attachments": {
        "to": ["t@example.org"],
        "body": "text",
        "html": "<p>html</p>",
        "attachments": [
            mail.Attachment("report.pdf", bytes(range(256)) * 4),
            mail.Attachment("notes.txt", b"plain text\n"),
            mail.Attachment("logo.png", b"\x89PNG", content_id="<logo@example.org>"),
        ],
        "headers": {"List-Unsubscribe": "<mailto:u@example.org>", "Auto-Submitted": "auto"},
    },
}


def _outbox_message(shape: str, message_id: str | None = "<1@example.org>") -> Message:
    fields = {"sender": "Sender <s@example.com>", **OUTBOX_SHAPES[shape]}
    request = mail.EmailMessage(**fields).ToProto()
    return outbox_message(request, message_id)


@pytest.mark.parametrize("shape", sorted(OUTBOX_SHAPES))
def test_outbox_bytes_are_what_as_bytes_writes(shape: str) -> None:
    msg = _outbox_message(shape)
    for n, part in enumerate(msg.walk()):
        if part.is_multipart():
            part.set_boundary(f"boundary-{n}")  # else each write draws its own
    assert flatten.as_bytes(copy.deepcopy(msg)) == msg.as_bytes()


def test_outbox_bytes_draw_a_boundary_as_the_generator_does() -> None:
    data = flatten.as_bytes(_outbox_message("html and attachments"))
    parsed = email.message_from_bytes(data, policy=policy.default)
    boundary = parsed.get_boundary()
    assert boundary is not None
    assert boundary.startswith("=" * 15)
    assert boundary.endswith("==")


def test_a_boundary_that_is_in_the_text_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "randrange", lambda _: 42)
    taken = "=" * 15 + f"{42:0{len(repr(sys.maxsize - 1))}d}" + "=="
    msg = outbox_message(
        mail.EmailMessage(
            sender="s@example.com", to="t@example.org", body=f"--{taken}\nnot a part\n"
        ).ToProto(),
        None,
    )
    data = flatten.as_bytes(msg)
    assert msg.get_boundary() == taken + ".0"  # as Generator._make_boundary chooses
    parsed = email.message_from_bytes(data, policy=policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content() == f"--{taken}\nnot a part\n"


def test_stub_calls_run_in_the_request_thread(
    post_message: PostMessage,
    mail_stub: OutboxMailStub,
    plain_message: EmailMessage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not on the SDK's thread pool: the hand-over cost ~0.3 ms per send.
    threads: list[int] = []
    send = type(mail_stub)._Dynamic_Send

    def recording_send(self: OutboxMailStub, request: object, response: object) -> None:
        threads.append(threading.get_ident())
        send(self, request, response)

    monkeypatch.setattr(type(mail_stub), "_Dynamic_Send", recording_send)
    assert post_message(plain_message.as_bytes()).status_code == protocol.SENT
    assert threads == [threading.get_ident()]

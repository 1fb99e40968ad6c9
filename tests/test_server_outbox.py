"""Local mode's Maildir outbox: file format, atomic delivery, exact bytes over real HTTP."""

from __future__ import annotations

import base64
import copy
import email
import io
import os
import random
import re
import sys
import threading
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pytest
from google.appengine.api import api_base_pb2, mail
from werkzeug.serving import make_server

from gaemail import protocol
from gaemail.protocol import v1
from gaemail.server.local import create_local_app, flatten, install_stubs, mime, outbox_message
from gaemail.server.local.mime import outbox_parts
from gaemail.server.local.outbox import Maildir
from gaemail.server.local.rules import DailyQuota, LocalRules

if TYPE_CHECKING:
    from flask import Flask
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

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


def _writing(data: bytes) -> Callable[[BinaryIO], int]:
    """What Maildir.deliver takes: a function writing the message into a file."""
    return lambda out: out.write(data)


def test_maildir_delivery_is_atomic_and_private(tmp_path: Path) -> None:
    maildir = Maildir(tmp_path / "box")
    paths = [maildir.deliver(_writing(b"Subject: %d\n\nx\n" % n)) for n in range(50)]
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
        maildir.deliver(_writing(b"Subject: lost\n\nx\n"))
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
    path = maildir.deliver(_writing(b"Subject: kept\n\nx\n"))
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
        maildir.deliver(_writing(b"Subject: not acknowledged\n\nx\n"))
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
            sender="s@example.com",
            to="t@example.org",
            body=f"--{taken}\nnot a part\n",
            html="<p>a second part, so that the message is multipart</p>",
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


def test_without_fsync_delivery_syncs_nothing_and_is_still_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    maildir = Maildir(tmp_path / "box", fsync=False)
    path = maildir.deliver(_writing(b"Subject: fast\n\nx\n"))
    assert synced == []
    assert path.parent.name == "new"
    assert path.read_bytes() == b"Subject: fast\n\nx\n"
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


def test_one_mime_conversion_per_message_and_nothing_cached(
    tmp_path: Path, server_config: ServerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversions: list[object] = []
    convert = mail.mail_message_to_mime_message

    def counting(request: object) -> object:
        conversions.append(request)
        return convert(request)

    monkeypatch.setattr(mail, "mail_message_to_mime_message", counting)
    app = create_local_app(server_config, tmp_path / "box", keep=0)
    client = app.test_client()
    for n in range(3):
        raw = b"From: s@example.com\nTo: t@example.org\nSubject: %d\n\nx\n" % n
        assert client.post("/", data=v1.encode_request(raw, b"current-key")).status_code == 204
    assert len(conversions) == 3
    stub = app.extensions["mail_stub"]
    assert stub._cached_messages == []
    assert len(stub.requests) == 0
    assert len(Maildir(tmp_path / "box").delivered()) == 3


# -- streaming the outbox file: Flattened writes what as_bytes(outbox_message()) returns

DATE = "Mon, 02 Mar 2026 10:00:00 +0100"
CHUNK = flatten._BASE64_CHUNK
LARGE = 3 * 1024 * 1024 + 7  # several chunks, and not a multiple of 57
STREAMED_SHAPES: dict[str, dict[str, object]] = {
    "no attachment": {"body": "Hello.\n"},
    "one attachment": {"body": "See it.\n", "attachments": [mail.Attachment("a.pdf", b"%PDF")]},
    "three attachments": OUTBOX_SHAPES["html and attachments"],
    "empty attachment": {"body": "x", "attachments": [mail.Attachment("empty.txt", b"")]},
    "attachment ending in a newline": {
        "body": "x",
        "attachments": [mail.Attachment("notes.txt", b"line\n" * 100)],
    },
    "non-ascii": {
        "subject": "Grüße aus Köln, 世界",
        "body": "Grüße\r\nline two\rline three\n",
        "attachments": [mail.Attachment("Bericht für Köln.pdf", bytes(range(256)))],
    },
    "html and text": {
        "body": "text",
        "html": "<p>html</p>",
        "attachments": [mail.Attachment("a.pdf", b"\x00\xff" * 500)],
    },
    "large": {"body": "big\n", "attachments": [mail.Attachment("big.pdf", os.urandom(LARGE))]},
}


class _RecordingFile(io.BytesIO):
    """A file that remembers the size of each write."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def write(self, data: Buffer) -> int:
        self.sizes.append(len(memoryview(data)))
        return super().write(data)


def _request(**fields: object) -> Any:
    fields = {"sender": "Sender <s@example.com>", "to": ["t@example.org"], **fields}
    return mail.EmailMessage(**fields).ToProto()


def _fixed(msg: Message) -> Message:
    """msg with the Date and boundaries that each flattening would otherwise draw."""
    msg.replace_header("Date", DATE)
    for n, part in enumerate(msg.walk()):
        if part.is_multipart():
            part.set_boundary(f"boundary-{n}")
    return msg


def _streamed(request: Any, message_id: str | None, fix: bool = True) -> _RecordingFile:
    msg, raw = outbox_parts(request, message_id)
    out = _RecordingFile()
    flatten.Flattened(_fixed(msg) if fix else msg, raw).write(out)
    return out


@pytest.mark.parametrize("shape", sorted(STREAMED_SHAPES))
def test_streamed_outbox_file_is_what_as_bytes_writes(shape: str) -> None:
    request = _request(**STREAMED_SHAPES[shape])
    expected = _fixed(outbox_message(request, "<1@example.org>"))
    assert _streamed(request, "<1@example.org>").getvalue() == flatten.as_bytes(expected)
    assert flatten.as_bytes(expected) == expected.as_bytes()


def test_an_attachment_is_held_once_as_the_requests_bytes() -> None:
    # Not also as the SDK's part payload: a str of up to twice the bytes' size.
    data = bytes(range(256)) * 100
    msg, raw = outbox_parts(_request(body="x", attachments=[mail.Attachment("a.pdf", data)]), None)
    (text_part, text), (part, carried) = raw
    assert part.get_payload() == ""
    assert carried == data
    assert msg.get_payload(1) is part
    assert (msg.get_payload(0), text_part.get_payload(), text) == (text_part, "", "x")


def test_a_large_attachment_is_written_a_chunk_of_base64_at_a_time() -> None:
    request = _request(**STREAMED_SHAPES["large"])
    out = _streamed(request, None)
    assert len(out.getvalue()) > 4 * 1024 * 1024
    assert max(out.sizes) == len(base64.encodebytes(bytes(CHUNK)))
    assert len(out.sizes) > LARGE // CHUNK


@pytest.mark.parametrize(
    "size", [1, 56, 57, 58, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 57]
)
@pytest.mark.parametrize("last", [b"\n", b"x"])
def test_streamed_base64_is_encode_base64s_at_chunk_edges(size: int, last: bytes) -> None:
    data = os.urandom(size - 1) + last
    request = _request(body="x", attachments=[mail.Attachment("a.bin", data)])
    expected = _fixed(outbox_message(request, None))
    assert _streamed(request, None).getvalue() == flatten.as_bytes(expected)


def test_streamed_file_draws_its_boundaries_as_the_generator_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The inner (multipart/alternative) boundary is drawn first, the outer one
    # then, and each again while the text has it: the same draws, the same bytes.
    width = len(repr(sys.maxsize - 1))
    taken = "=" * 15 + f"{1:0{width}d}" + "=="
    fields = STREAMED_SHAPES["html and text"] | {"body": f"--{taken}\nnot a part\n"}
    request = _request(**fields)
    monkeypatch.setattr(mime, "formatdate", lambda localtime: DATE)

    def draws(*tokens: int) -> None:
        found = iter(tokens)
        monkeypatch.setattr(random, "randrange", lambda _: next(found))

    draws(1, 1, 1, 3)
    written = _streamed(request, None, fix=False).getvalue()
    draws(1, 1, 1, 3)
    assert written == flatten.as_bytes(outbox_message(request, None))
    assert f'boundary="{taken}.0"'.encode() in written  # the inner one
    assert f'boundary="{"=" * 15}{3:0{width}d}=="'.encode() in written  # the outer one


def test_the_stub_writes_the_outbox_file_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mime, "formatdate", lambda localtime: DATE)
    monkeypatch.setattr(random, "randrange", lambda _: 42)
    maildir = Maildir(tmp_path / "box", fsync=False)
    stub = install_stubs(maildir, keep=0)
    data = os.urandom(LARGE)
    message = mail.EmailMessage(
        sender="s@example.com",
        to="t@example.org",
        subject="big",
        body="An attachment.\n",
        attachments=[mail.Attachment("big.pdf", data)],
    )
    request = message.ToProto()
    stub._Dynamic_Send(request, api_base_pb2.VoidProto())
    (path,) = maildir.delivered()
    assert path.read_bytes() == flatten.as_bytes(outbox_message(request, None))
    assert request.Attachment[0].Data == data  # the caller's request is left as it was
    message.send()  # through the SDK's send() and the API proxy
    assert maildir.delivered()[1].read_bytes() == path.read_bytes()


def test_a_failing_writer_leaves_nothing_behind(tmp_path: Path) -> None:
    maildir = Maildir(tmp_path / "box")

    def failing(out: BinaryIO) -> None:
        out.write(b"Subject: half\n")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        maildir.deliver(failing)
    assert list((tmp_path / "box" / "tmp").iterdir()) == []
    assert maildir.delivered() == []


def test_a_write_failing_inside_an_attachment_delivers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quota = DailyQuota(1)
    maildir = Maildir(tmp_path / "box")
    install_stubs(maildir, rules=LocalRules(quota=quota))
    encode = base64.encodebytes
    encoded: list[int] = []

    def disk_full_after_two_chunks(data: Buffer) -> bytes:
        if len(encoded) == 2:
            raise OSError(28, "No space left on device")
        encoded.append(len(memoryview(data)))
        return encode(data)

    monkeypatch.setattr(base64, "encodebytes", disk_full_after_two_chunks)
    message = mail.EmailMessage(
        **STREAMED_SHAPES["large"], sender="s@example.org", to="t@example.org"
    )
    with pytest.raises(OSError, match="No space"):
        message.send()
    assert encoded == [CHUNK, CHUNK]  # it failed inside the attachment
    assert list((tmp_path / "box" / "tmp").iterdir()) == []
    assert maildir.delivered() == []
    monkeypatch.setattr(base64, "encodebytes", encode)
    message.send()  # the quota was given back
    assert len(maildir.delivered()) == 1


# -- streaming the texts: each text part's encoding made as it is written -------

AMP = "<!doctype html><html ⚡4email><body>amp</body></html>"
AMP_ASCII = AMP.replace("⚡", "amp")
TEXT_SHAPES: dict[str, dict[str, object]] = {
    "ascii": {"body": "Hello.\n"},
    "no final newline": {"body": "no newline"},
    "crlf": {"body": "one\r\ntwo\r\n\r\nthree\r\n"},
    "lone cr, cr cr lf, lf cr": {"body": "a\rb\r\r\nc\n\rd\r"},
    "empty": {"body": ""},
    "utf-8": {"body": "Grüße\r\naus Köln, 世界 € 🙂\n"},
    "utf-8 of 57 bytes": {"body": "ü" + "x" * 55},
    "line of 998": {"body": "x" * 998 + "\r\nshort\n"},
    "line of 999": {"body": "x" * 999},
    "long line, crlf first": {"body": "a\r\n" + "y " * 600 + "\r\n.\r\nend\t \n=\r\r\n"},
    "long line, lf first": {"body": "a\n" + "z" * 1200 + "\r\r\n=tab\there \n.\n \t"},
    "html and text": {"body": "text", "html": "<p>html</p>"},
    "html only, utf-8": {"html": "<p>Grüße</p>\r\n"},
    "amp-html": {"body": "t\r\n", "html": "<p>h</p>", "amp_html": AMP},
    "amp-html, long lines": {"body": "t" * 1000, "html": "<p>€</p>", "amp_html": AMP_ASCII * 30},
    "html with a long line": {"body": "ü", "html": "<p>" + "w " * 700 + "</p>"},
}
ATTACHED = [mail.Attachment("a.pdf", bytes(range(256)))]


def _outbox_bytes(request: Any, message_id: str | None = "<1@example.org>") -> bytes:
    """as_bytes(outbox_message()), checked against the standard library's own as_bytes()."""
    expected = _fixed(outbox_message(request, message_id))
    data = flatten.as_bytes(expected)
    assert data == expected.as_bytes()
    return data


@pytest.mark.parametrize("attached", [False, True], ids=["unwrapped", "with an attachment"])
@pytest.mark.parametrize("shape", sorted(TEXT_SHAPES))
def test_streamed_texts_are_what_as_bytes_writes(shape: str, attached: bool) -> None:
    fields = TEXT_SHAPES[shape] | ({"attachments": ATTACHED} if attached else {})
    request = _request(**fields)
    assert _streamed(request, "<1@example.org>").getvalue() == _outbox_bytes(request)


def test_text_shapes_have_the_encodings_they_are_meant_to() -> None:
    # Each text encoding is covered, and the SDK's parts for them are what the shapes say.
    def encodings(shape: str) -> list[str | None]:
        msg = outbox_message(_request(**TEXT_SHAPES[shape]), None)
        return [
            part.get("Content-Transfer-Encoding") for part in msg.walk() if not part.is_multipart()
        ]

    assert encodings("crlf") == ["7bit"]
    assert encodings("line of 998") == ["7bit"]
    assert encodings("line of 999") == ["quoted-printable"]
    assert encodings("utf-8") == ["base64"]
    assert encodings("amp-html, long lines") == ["quoted-printable", "quoted-printable", "base64"]
    amp = outbox_message(_request(**TEXT_SHAPES["amp-html"]), None)
    subtypes = [part.get_content_type() for part in amp.walk() if not part.is_multipart()]
    assert subtypes == ["text/plain", "text/x-amp-html", "text/html"]
    assert [part.get_content_charset() for part in amp.walk()][1:] == ["utf-8"] * 3


def _chunk_texts() -> dict[str, str]:
    lines = "".join(f"{n}: \r\n\rline\r\r\n\n{'ü€🙂'[: n % 4]}\t .\r\n" for n in range(40))
    ascii_lines = lines.encode("ascii", "ignore").decode("ascii")
    return {
        "7bit": ascii_lines,
        "base64": lines,
        "quoted-printable": ascii_lines + "x" * 1001,
        "quoted-printable, lf first": "\n" + ascii_lines[:200] + "y" * 1001 + "\r\r\n",
    }


@pytest.mark.parametrize("size", [1, 2, 3, 5, 56, 57, 58, 100])
@pytest.mark.parametrize("kind", sorted(_chunk_texts()))
def test_streamed_texts_are_the_same_at_any_chunk_edge(
    kind: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks put every edge everywhere: a CRLF split across one, a CR
    # ending one, multibyte characters and base64's 57-byte lines across them.
    text = _chunk_texts()[kind]
    request = _request(body=text, html=text[::-1])
    expected = _outbox_bytes(request)
    msg = outbox_message(request, None)
    encodings = [part.get("Content-Transfer-Encoding") for part in msg.walk()]
    assert kind.split(",")[0] in encodings
    monkeypatch.setattr(flatten, "_TEXT_CHUNK", size)
    assert _streamed(request, "<1@example.org>").getvalue() == expected


def test_a_large_text_is_written_a_chunk_at_a_time() -> None:
    # A CRLF across the first chunk's edge, and several chunks for each encoding.
    edge = flatten._TEXT_CHUNK - 1
    lines = ("y" * 62 + "\r\n") * (edge // 64) + "z" * (edge % 64)
    ascii_text = lines + "\r\n" + "line\r\n" * flatten._TEXT_CHUNK
    for text, encoding in (
        (ascii_text, "7bit"),
        (ascii_text.replace("line", "lüne"), "base64"),
        (ascii_text + "q" * 1000, "quoted-printable"),
    ):
        request = _request(body=text)
        assert outbox_message(request, None)["Content-Transfer-Encoding"] == encoding
        out = _streamed(request, None)
        assert out.getvalue() == _outbox_bytes(request, None)
        assert len(out.sizes) > 6
        assert max(out.sizes) < 2 * flatten._TEXT_CHUNK


def test_a_text_is_carried_as_the_requests_text() -> None:
    text = "Grüße\n" * 1000
    msg, carried = outbox_parts(_request(body=text, html="<p>h</p>"), None)
    assert carried == [(msg.get_payload(0), text), (msg.get_payload(1), "<p>h</p>")]
    assert [part.get_payload() for part, _ in carried] == ["", ""]


def test_the_stub_holds_a_text_about_once() -> None:
    # The text's str as the protobuf makes it from its UTF-8 (decoding
    # non-ASCII costs more than the str), and then a few chunks: the SDK's
    # MIMEText and the generator held the text five times and more.
    size = 8_000_000

    class Sink(io.RawIOBase):
        def write(self, data: Buffer) -> int:
            return len(memoryview(data))

    def peak(work: Callable[..., object], *args: object) -> int:
        tracemalloc.start()
        try:
            work(*args)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def write(request: Any) -> None:
        flatten.Flattened(*outbox_parts(request, None)).write(Sink())

    for body in ("line\r\n" * (size // 6), "Grüße\r\n" * (size // 7), ("x" * 999 + "\n") * 8000):
        request = _request(body=body)
        del body
        decoding = peak(getattr, request, "TextBody")
        written = peak(write, request)
        assert decoding >= size
        assert written < decoding + size / 2


def test_a_text_the_protobuf_cannot_decode_is_base64_as_the_sdk_writes_it() -> None:
    # No str with surrogates reaches the stub: the protobuf refuses to hold one.
    # Parsed, a text that is not UTF-8 comes as bytes; the SDK's MIMEText holds
    # it with surrogates and base64-encodes it as it is.
    with pytest.raises(UnicodeEncodeError):
        _request(body="a\udcff")
    request = _request(body="x")
    data = request.SerializeToString().replace(b"\x3a\x01x", b"\x3a\x04a\xff\xfe\n")
    request.ParseFromString(data)
    assert request.TextBody == b"a\xff\xfe\n"
    assert _streamed(request, None).getvalue() == _outbox_bytes(request, None)


def test_a_long_line_is_found_as_the_regex_finds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    regex = re.compile(r"[^\r\n]{999}")
    texts = [
        "x" * 998,
        "x" * 999,
        "a\r\n" + "x" * 998 + "\r\n" + "y" * 998,
        "a\r" + "x" * 999 + "\nb",
        "\n".join(["x" * 500] * 3),
        "x" * 500 + "\r" + "x" * 500,
        "\r\n" * 600 + "x" * 998 + "\r" + "x" * 999,
        "".join(f"{n}\r\n" for n in range(1000)) + "t" * 999,
        "x" * 500 + "\x0b\x0c\x1c\x1d\x1e" + "x" * 500,  # line breaks to str.splitlines only
    ]
    for chunk in (1, 2, 7, 998, 999, 1000, 1 << 18):
        monkeypatch.setattr(mime, "_LINE_CHUNK", chunk)
        for text in texts:
            assert mime.has_long_line(text) == bool(regex.search(text)), (chunk, text[:20])


@pytest.mark.parametrize(
    ("fields", "suffix"),
    [
        ({"body": "x\r\n--{taken}\r\n", "html": "<p>h</p>"}, ".0"),
        ({"body": "ü", "html": "--{taken}--"}, ".0"),
        # Quoted-printable writes each "=" as "=3D": the boundary is not in the text written.
        ({"body": "--{taken}\n" + "x" * 1000, "html": "ü"}, ""),
        ({"body": "--{taken}\n" + "x" * 1000, "attachments": ATTACHED}, ""),
    ],
)
def test_a_boundary_in_a_streamed_text_is_not_used(
    fields: dict[str, Any], suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same draws as as_bytes() makes, and the same boundaries: when the
    # first draw is in a 7bit text, the text is made whole for the generator.
    monkeypatch.setattr(mime, "formatdate", lambda localtime: DATE)
    width = len(repr(sys.maxsize - 1))
    taken = "=" * 15 + f"{1:0{width}d}" + "=="
    fields = {name: value.format(taken=taken) if isinstance(value, str) else value
              for name, value in fields.items()}  # fmt: skip
    request = _request(**fields)

    def draws() -> Iterator[int]:
        tokens = iter([1, 1, 3, 4, 5])
        monkeypatch.setattr(random, "randrange", lambda _: next(tokens))
        return tokens

    left = draws()
    written = _streamed(request, None, fix=False).getvalue()
    left_streamed = list(left)
    left = draws()
    assert written == flatten.as_bytes(outbox_message(request, None))
    assert left_streamed == list(left)
    assert f'boundary="{taken}{suffix}"'.encode() in written


@pytest.mark.parametrize(
    ("body", "failing"),
    [
        ("line\r\n" * 200_000, "_newlines"),
        (("x" * 999 + "\n") * 1000, "_newlines"),
        ("Grüße\r\n" * 200_000, "encodebytes"),
    ],
    ids=["7bit", "quoted-printable", "base64"],
)
def test_a_write_failing_inside_a_text_delivers_nothing(
    body: str, failing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quota = DailyQuota(1)
    maildir = Maildir(tmp_path / "box")
    install_stubs(maildir, rules=LocalRules(quota=quota))
    module: Any = flatten if failing == "_newlines" else base64
    original = getattr(module, failing)
    calls: list[int] = []

    def disk_full_after_two_chunks(data: Buffer) -> bytes:
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        calls.append(len(memoryview(data)))
        result: bytes = original(data)
        return result

    monkeypatch.setattr(module, failing, disk_full_after_two_chunks)
    message = mail.EmailMessage(sender="s@example.org", to="t@example.org", body=body)
    with pytest.raises(OSError, match="No space"):
        message.send()
    assert len(calls) == 2 and sum(calls) < len(body)  # it failed inside the text
    assert list((tmp_path / "box" / "tmp").iterdir()) == []
    assert maildir.delivered() == []
    monkeypatch.setattr(module, failing, original)
    message.send()  # the quota was given back
    assert len(maildir.delivered()) == 1

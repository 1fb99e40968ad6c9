"""gaemail.django.EmailBackend with real Django against a real `gaemail serve`.

Django is configured once for this module with only what a project sets: the
backend and (per test) EMAIL_APPENGINE_* settings; gmail's own settings (the URL
and the key) come from the envdir `gaemail serve` writes.  What arrives is read
from the server's Maildir outbox.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from email.mime.image import MIMEImage
from pathlib import Path

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.core import mail  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from gaemail.errors import (  # noqa: E402
    SignatureRejected,
    TemporaryFailure,
)
from integration_support import GMAIL, Server, caller_environ, running_server, tagged  # noqa: E402

pytestmark = pytest.mark.e2e
BACKEND = "gaemail.django.EmailBackend"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not settings.configured:
        settings.configure(
            EMAIL_BACKEND=BACKEND,
            DEFAULT_FROM_EMAIL="app@example.com",
            SERVER_EMAIL="server@example.com",
            ADMINS=[("Admin", "admin@example.com")],
            INSTALLED_APPS=["gaemail.django.GaemailConfig"],
            SECRET_KEY="django-secret-not-for-mail",
        )
        django.setup()
    with running_server(tmp_path_factory.mktemp("django")) as s:
        yield s


@pytest.fixture
def envdir(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """gmail's settings as a machine has them: the envdir serve wrote, a private queue."""
    for name in [k for k in os.environ if k.startswith("GMAIL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GMAIL_ENVDIR", str(server.key_envdir))
    monkeypatch.setenv("GMAIL_QUEUE_DIR", str(tmp_path / "queue"))
    monkeypatch.setenv("GMAIL_SYSLOG_SOCKET", str(tmp_path / "no-syslog"))
    return server.key_envdir


class Relay:
    """A keep-alive HTTP relay on loopback that counts the client's connections.

    Werkzeug, under `gaemail serve`, closes every connection after its answer,
    which would hide whether the client reuses one; the relay keeps the client's
    connection open and passes each request on over a connection of its own.
    """

    def __init__(self, target: str) -> None:
        self.target = ("127.0.0.1", int(target.rsplit(":", 1)[1].strip("/")))
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(0.2)
        buffer = b""
        with client:
            while not self._stop.is_set():
                try:
                    request, buffer = _one_request(client, buffer, self._stop)
                except OSError:
                    return
                if request is None:
                    return
                with socket.create_connection(self.target, 30) as upstream:
                    upstream.sendall(request)
                    answer = b"".join(iter(lambda: upstream.recv(65536), b""))
                head, _, body = answer.partition(b"\r\n\r\n")
                kept = [h for h in head.split(b"\r\n") if not h.lower().startswith(b"connection:")]
                client.sendall(b"\r\n".join(kept) + b"\r\n\r\n" + body)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._listener.close()


def _one_request(
    sock: socket.socket, buffer: bytes, stop: threading.Event
) -> tuple[bytes | None, bytes]:
    """The next whole request (head and Content-Length body), or None at end-of-file."""
    while True:
        head, found, rest = buffer.partition(b"\r\n\r\n")
        if found:
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(rest) >= length:
                return head + found + rest[:length], rest[length:]
        if stop.is_set():
            return None, b""
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return None, b""
        buffer += chunk


@pytest.fixture
def relay(server: Server, envdir: Path) -> Iterator[Relay]:
    r = Relay(server.url)
    try:
        with override_settings(EMAIL_APPENGINE_PROXY_URL=r.url):
            yield r
    finally:
        r.close()


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def test_send_mail_with_unicode(server: Server, envdir: Path, tag: str) -> None:
    sent = mail.send_mail(
        f"Grüße {tag} ☃",
        "Hällo wörld\n",
        "Zoë Ünïcode <zoe@example.com>",
        ["to@example.org"],
    )
    assert sent == 1
    (got,) = server.wait_for(tagged(tag))
    assert got.subject == f"Grüße {tag} ☃"
    assert got.text() == "Hällo wörld\n"
    assert "Zoë Ünïcode" in str(got.msg["From"])
    assert got.envelope_to == ["to@example.org"]


def test_alternatives_attachments_and_inline_images_arrive_exactly(
    server: Server, envdir: Path, tag: str
) -> None:
    binary = bytes(range(256)) * 4
    message = mail.EmailMultiAlternatives(
        f"rich {tag}", "plain text\n", "app@example.com", ["to@example.org"]
    )
    message.attach_alternative('<p>html <img src="cid:logo@example"></p>', "text/html")
    message.attach("data.bin", binary, "application/octet-stream")
    image = MIMEImage(PNG, "png")
    image.add_header("Content-ID", "<logo@example>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    message.attach(image)
    assert message.send() == 1
    (got,) = server.wait_for(tagged(tag))
    html = got.msg.get_body(preferencelist=("html",))
    assert html is not None and "cid:logo@example" in html.get_content()
    parts = {p.get_filename(): p for p in got.msg.iter_attachments()}
    assert parts["data.bin"].get_content() == binary
    assert parts["logo.png"].get_content() == PNG
    assert parts["logo.png"]["Content-ID"] == "<logo@example>"


def test_bcc_is_delivered_and_never_shown(server: Server, envdir: Path, tag: str) -> None:
    message = mail.EmailMessage(
        f"bcc {tag}", "x\n", "app@example.com", ["to@example.org"],
        cc=["cc@example.org"], bcc=["audit@example.com"],
    )  # fmt: skip
    assert message.send() == 1
    (got,) = server.wait_for(tagged(tag))
    assert sorted(got.envelope_to) == ["audit@example.com", "cc@example.org", "to@example.org"]
    # Only the outbox's envelope record (X-Envelope-To) names the bcc recipient.
    shown = [v for k, v in got.msg.items() if k.lower() != "x-envelope-to"]
    assert got.msg["Bcc"] is None and not [v for v in shown if "audit@" in str(v)]
    assert message.gaemail_message_id == got.message_id


def test_send_mass_mail_and_a_kept_connection_use_one_connection(
    server: Server, relay: Relay, tag: str
) -> None:
    data = [(f"mass {tag} {n}", "x\n", None, [f"r{n}@example.org"]) for n in range(3)]
    assert mail.send_mass_mail(data) == 3
    assert relay.connections == 1
    with mail.get_connection() as connection:
        for n in (3, 4):
            message = mail.EmailMessage(f"mass {tag} {n}", "x\n", None, [f"r{n}@example.org"])
            assert connection.send_messages([message]) == 1
    assert relay.connections == 2
    got = server.wait_for(tagged(tag), count=5)
    assert Counter(d.subject for d in got) == Counter(f"mass {tag} {n}" for n in range(5))


def test_a_message_without_recipients_is_skipped(relay: Relay) -> None:
    with mail.get_connection() as connection:
        assert connection.send_messages([mail.EmailMessage("none", "x\n", None, [])]) == 0
        assert connection.send_messages([]) == 0
    assert relay.connections == 0


def test_proxy_down_raises_or_with_fail_silently_logs_once(
    envdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(EMAIL_APPENGINE_PROXY_URL=free_url()):
        with pytest.raises(TemporaryFailure) as caught:
            mail.send_mail("down", "x\n", None, ["to@example.org"])
        assert caught.value.temporary and "Connection refused" in str(caught.value)
        with caplog.at_level(logging.WARNING, logger="gaemail.django"):
            assert mail.send_mail("down", "secret body", None, ["a@x.org"], fail_silently=True) == 0
    (record,) = caplog.records
    assert "Connection refused" in record.getMessage()
    key = (envdir / "GMAIL_SECRET_KEY").read_text().strip()
    assert key not in record.getMessage() and "secret body" not in record.getMessage()
    assert key not in str(caught.value)


def test_a_wrong_key_is_a_permanent_failure(server: Server, envdir: Path) -> None:
    with override_settings(EMAIL_APPENGINE_SECRET_KEY="not-the-key"):
        with pytest.raises(SignatureRejected) as caught:
            mail.send_mail("bad key", "x\n", None, ["to@example.org"])
        # Protocol v2 (the default) answers an unknown key 401; v1 answered 400.
        assert caught.value.temporary is False and caught.value.status == 401
        assert "not-the-key" not in str(caught.value)
        assert mail.send_mail("bad key", "x\n", None, ["to@x.org"], fail_silently=True) == 0


def test_configuration_errors_are_never_silenced(
    envdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GMAIL_ENVDIR", str(tmp_path / "empty"))
    with pytest.raises(ImproperlyConfigured, match="EMAIL_APPENGINE_PROXY_URL"):
        mail.send_mail("no url", "x\n", None, ["to@example.org"], fail_silently=True)
    with pytest.raises(TypeError, match="hostname"):
        mail.get_connection(fail_silently=True, hostname="smtp.example.com")
    slow = override_settings(EMAIL_APPENGINE_PROXY_URL="http://x/", EMAIL_APPENGINE_TIMEOUT="no")
    with slow, pytest.raises(ImproperlyConfigured, match="EMAIL_APPENGINE_TIMEOUT"):
        mail.get_connection(fail_silently=True)


def test_a_bad_header_raises_before_any_request(relay: Relay) -> None:
    with pytest.raises(ValueError, match="newline"):
        mail.send_mail("two\nlines", "x\n", None, ["to@example.org"], fail_silently=True)
    assert relay.connections == 0


def test_five_megabytes_arrive_byte_exact(server: Server, envdir: Path, tag: str) -> None:
    blob = os.urandom(5 * 1024 * 1024)
    message = mail.EmailMessage(f"big {tag}", "x\n", None, ["to@example.org"])
    message.attach("big.bin", blob, "application/octet-stream")
    assert message.send() == 1
    (got,) = server.wait_for(tagged(tag))
    (part,) = got.msg.iter_attachments()
    assert part.get_content() == blob


def test_queue_option_keeps_mail_while_the_proxy_is_down(
    server: Server, envdir: Path, tmp_path: Path, tag: str
) -> None:
    with override_settings(EMAIL_APPENGINE_PROXY_URL=free_url(), EMAIL_APPENGINE_QUEUE=True):
        message = mail.EmailMessage(f"queued {tag}", "x\n", None, ["to@example.org"])
        assert message.send() == 1
    assert message.gaemail_queued is not None
    assert server.delivered() == [] or not [d for d in server.delivered() if tag in d.subject]
    env = caller_environ(envdir, GMAIL_QUEUE_DIR=str(tmp_path / "queue"))
    for _ in range(2):  # a second flush finds nothing to send again
        done = subprocess.run([str(GMAIL), "-q"], env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
    (got,) = server.wait_for(tagged(tag))
    assert got.message_id == message.gaemail_message_id
    assert not list((tmp_path / "queue" / "new").iterdir())


def test_mail_admins_through_the_logging_handler(server: Server, envdir: Path, tag: str) -> None:
    from django.utils.log import AdminEmailHandler

    logger = logging.getLogger(f"test.{tag}")
    handler = AdminEmailHandler()
    logger.addHandler(handler)
    try:
        logger.error("broken %s", tag)
    finally:
        logger.removeHandler(handler)
    mail.mail_admins(f"direct {tag}", "body\n")
    got = server.wait_for(tagged(tag), count=2)
    assert {d.envelope_to[0] for d in got} == {"admin@example.com"}


def test_sendtestemail_command(server: Server, envdir: Path, tmp_path: Path, tag: str) -> None:
    (tmp_path / "mailsettings.py").write_text(
        f"EMAIL_BACKEND = {BACKEND!r}\nDEFAULT_FROM_EMAIL = 'app@example.com'\n"
        "SECRET_KEY = 'unused'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "DJANGO_SETTINGS_MODULE": "mailsettings"}
    to = f"{tag}@example.org"
    done = subprocess.run(
        [sys.executable, "-m", "django", "sendtestemail", to],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (got,) = server.wait_for(lambda d: d.envelope_to == [to])
    assert got.subject.startswith("Test email from")


def test_system_checks(envdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gaemail.django import check_settings

    assert check_settings() == []  # the envdir gives URL and key, on loopback
    with override_settings(EMAIL_APPENGINE_PROXY_URL="http://mail.example.com/"):
        assert [m.id for m in check_settings()] == ["gaemail.W002"]
    monkeypatch.setenv("GMAIL_ENVDIR", str(tmp_path / "empty"))
    assert [m.id for m in check_settings()] == ["gaemail.E001"]
    with override_settings(EMAIL_APPENGINE_PROXY_URL="https://p.appspot.com/"):
        assert [m.id for m in check_settings()] == ["gaemail.W001"]
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend"):
        assert check_settings() == []
    from django.core import checks

    assert "gaemail.E001" in [m.id for m in checks.run_checks()]  # registered by the app


def test_seed_name_and_secret_stay_out_of_repr(envdir: Path) -> None:
    from gaemail.django import EmailBackend, GmailBackend

    assert GmailBackend is EmailBackend
    key = (envdir / "GMAIL_SECRET_KEY").read_text().strip()
    backend = mail.get_connection()
    assert isinstance(backend, EmailBackend)
    assert key not in repr(backend.settings) and key not in repr(vars(backend))


def test_one_backend_serves_many_threads_over_one_connection(
    server: Server, relay: Relay, tag: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    backend = mail.get_connection()
    assert backend.open() is True and backend.open() is False

    def send(n: int) -> int:
        message = mail.EmailMessage(f"threads {tag} {n}", "x\n", None, [f"r{n}@example.org"])
        return int(backend.send_messages([message]))

    try:
        with ThreadPoolExecutor(4) as pool:
            assert sum(pool.map(send, range(12))) == 12
    finally:
        backend.close()
    assert relay.connections == 1
    got = server.wait_for(tagged(tag), count=12)
    assert Counter(d.subject for d in got) == Counter(f"threads {tag} {n}" for n in range(12))

"""The local stub refuses what App Engine refuses, through the SDK's own send() and stub."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from google.appengine.api import mail, mail_errors
from google.appengine.runtime import apiproxy_errors

from gaemail import protocol
from gaemail.protocol import v1
from gaemail.server.local import create_local_app, install_stubs, outbox_message
from gaemail.server.local.flatten import as_bytes
from gaemail.server.local.outbox import Maildir
from gaemail.server.local.rules import DailyQuota, LocalRules, Senders, check_header_lines

if TYPE_CHECKING:
    from flask.testing import FlaskClient

    from gaemail.server import ServerConfig

DEFAULT_SENDER = "proxy@example-app.appspotmail.com"  # conftest's server_config


def _client(server_config: ServerConfig, outbox: Path, rules: LocalRules) -> FlaskClient:
    return create_local_app(server_config, outbox, rules=rules).test_client()


def _post(client: FlaskClient, msg: EmailMessage, *, fix_sender: bool = False) -> int:
    body = v1.encode_request(msg.as_bytes(), b"current-key", fix_sender=fix_sender)
    status: int = client.post("/", data=body).status_code
    return status


def _delivered(outbox: Path) -> list[EmailMessage]:
    found = []
    for path in Maildir(outbox).delivered():
        parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found


@pytest.fixture
def strict(server_config: ServerConfig, tmp_path: Path) -> FlaskClient:
    """The app as `gaemail serve` runs it: the default sender and one other are authorized."""
    senders = Senders.of([DEFAULT_SENDER, "Ops@Example.com"])
    return _client(server_config, tmp_path / "box", LocalRules(senders=senders))


def test_unauthorized_sender_is_sent_as_production_sends_it_with_fix_sender(
    strict: FlaskClient, plain_message: EmailMessage, tmp_path: Path
) -> None:
    plain_message.replace_header("From", "Cron Daemon <root@example.com>")
    assert _post(strict, plain_message, fix_sender=True) == protocol.SENT
    (sent,) = _delivered(tmp_path / "box")
    assert sent["From"] == DEFAULT_SENDER
    assert sent["Reply-To"] == "Cron Daemon <root@example.com>"


def test_unauthorized_sender_is_refused_without_fix_sender(
    strict: FlaskClient, plain_message: EmailMessage, tmp_path: Path
) -> None:
    plain_message.replace_header("From", "root@example.com")
    body = v1.encode_request(plain_message.as_bytes(), b"current-key")
    answer = strict.post("/", data=body)
    assert answer.status_code == protocol.BAD_REQUEST
    assert answer.headers[protocol.ERROR_HEADER] == "message"
    assert "Unauthorized sender root@example.com" in answer.get_data(as_text=True)
    assert _delivered(tmp_path / "box") == []


def test_authorized_senders_match_the_address_in_any_case(
    strict: FlaskClient, plain_message: EmailMessage, tmp_path: Path
) -> None:
    plain_message.replace_header("From", "Operations <ops@example.COM>")
    assert _post(strict, plain_message) == protocol.SENT
    (sent,) = _delivered(tmp_path / "box")
    assert sent["From"] == "Operations <ops@example.COM>"
    assert "Reply-To" not in sent


def test_the_stub_raises_the_sdks_own_invalid_sender_error(tmp_path: Path) -> None:
    install_stubs(rules=LocalRules(senders=Senders.of(["app@example.org"])))
    message = mail.EmailMessage(sender="x@example.org", to="t@example.org", body="b")
    with pytest.raises(mail_errors.InvalidSenderError, match=r"x@example\.org"):
        message.send()
    mail.EmailMessage(sender="app@example.org", to="t@example.org", body="b").send()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("To", "root"),
        ("To", "a"),
        ("Cc", "someone@localhost"),
        ("To", "t@example.org, root"),
    ],
)
def test_recipients_must_be_addresses(
    strict: FlaskClient, tmp_path: Path, field: str, value: str
) -> None:
    others = "" if field == "To" else "To: t@example.org\n"
    raw = f"From: {DEFAULT_SENDER}\n{others}{field}: {value}\nSubject: s\n\nx\n".encode()
    answer = strict.post("/", data=v1.encode_request(raw, b"current-key"))
    assert answer.status_code == protocol.BAD_REQUEST, answer.get_data(as_text=True)
    assert _delivered(tmp_path / "box") == []


def test_nul_bytes_are_refused(strict: FlaskClient, tmp_path: Path) -> None:
    raw = f"From: {DEFAULT_SENDER}\nTo: t@example.org\nSubject: s\n\nbefore\0after\n".encode()
    answer = strict.post("/", data=v1.encode_request(raw, b"current-key"))
    assert answer.status_code == protocol.BAD_REQUEST
    assert "NUL" in answer.get_data(as_text=True)
    assert _delivered(tmp_path / "box") == []


def test_header_lines_that_cannot_be_folded_are_refused(
    strict: FlaskClient, plain_message: EmailMessage, tmp_path: Path
) -> None:
    plain_message.replace_header("From", DEFAULT_SENDER)
    plain_message["References"] = "<" + "x" * 1200 + "@example.org>"
    answer = strict.post("/", data=v1.encode_request(plain_message.as_bytes(), b"current-key"))
    assert answer.status_code == protocol.BAD_REQUEST
    assert "998" in answer.get_data(as_text=True)
    # A long header that can be folded is fine.
    plain_message.replace_header("References", " ".join(f"<{n}@example.org>" for n in range(90)))
    assert _post(strict, plain_message) == protocol.SENT
    data = Maildir(tmp_path / "box").delivered()[0].read_bytes()
    assert max(len(line) for line in data.split(b"\n")) <= 998


def test_an_unfoldable_header_refuses_a_message_with_attachments_before_any_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attachments' base64 is written as the file is: the header block is
    # checked before the file is opened, with what the whole message would say.
    maildir = Maildir(tmp_path / "box")
    install_stubs(maildir, keep=0, rules=LocalRules())
    message = mail.EmailMessage(
        sender="s@example.org",
        to="t@example.org",
        body="b",
        headers={"References": "<" + "x" * 1200 + "@example.org>"},
        attachments=[mail.Attachment("a.pdf", bytes(range(256)) * 1000)],
    )
    with pytest.raises(apiproxy_errors.ApplicationError) as whole:
        check_header_lines(as_bytes(outbox_message(message.ToProto(), None)))
    opened: list[object] = []
    monkeypatch.setattr(Maildir, "deliver", lambda self, write: opened.append(write))
    with pytest.raises(mail_errors.BadRequestError) as refused:
        message.send()
    assert str(refused.value) == whole.value.error_detail
    assert "998" in str(refused.value)
    assert opened == []
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


def test_long_body_lines_are_sent_quoted_printable(
    strict: FlaskClient, plain_message: EmailMessage, tmp_path: Path
) -> None:
    plain_message.replace_header("From", DEFAULT_SENDER)
    plain_message.set_content("y" * 3000 + "\n")
    assert _post(strict, plain_message) == protocol.SENT
    (path,) = Maildir(tmp_path / "box").delivered()
    assert max(len(line) for line in path.read_bytes().split(b"\n")) <= 998
    (sent,) = _delivered(tmp_path / "box")
    assert sent["Content-Transfer-Encoding"] == "quoted-printable"
    assert sent.get_content() == "y" * 3000 + "\n"


def test_a_plain_message_is_one_utf8_text_part() -> None:
    request = mail.EmailMessage(sender="s@example.com", to="t@example.org", body="hi\n").ToProto()
    written = outbox_message(request, None)
    assert written.get_content_type() == "text/plain"
    assert written.get_content_charset() == "utf-8"
    assert written["MIME-Version"] == "1.0"
    assert written["To"] == "t@example.org"
    assert written.get_payload() == "hi\n"


def test_over_quota_answers_503_until_the_quota_day_turns(
    server_config: ServerConfig, plain_message: EmailMessage, tmp_path: Path
) -> None:
    now = [1000.0]
    quota = DailyQuota(2, period=60.0, clock=lambda: now[0])
    client = _client(server_config, tmp_path / "box", LocalRules(quota=quota))
    assert _post(client, plain_message) == protocol.SENT
    plain_message.replace_header("To", "a@example.org, b@example.org")
    # Two recipients, one left: refused whole, nothing spent.
    body = v1.encode_request(plain_message.as_bytes(), b"current-key")
    answer = client.post("/", data=body)
    assert answer.status_code == protocol.UNAVAILABLE
    assert answer.headers[protocol.ERROR_HEADER] == "temporary"
    assert int(answer.headers["Retry-After"]) > 0
    assert "quota" in answer.get_data(as_text=True).lower()
    now[0] += 60.0
    assert client.post("/", data=body).status_code == protocol.SENT
    assert len(_delivered(tmp_path / "box")) == 2


def test_quota_raises_the_sdks_over_quota_error() -> None:
    install_stubs(rules=LocalRules(quota=DailyQuota(0)))
    with pytest.raises(apiproxy_errors.OverQuotaError):
        mail.EmailMessage(sender="s@example.org", to="t@example.org", body="b").send()


def test_a_failed_delivery_gives_its_quota_back(tmp_path: Path) -> None:
    quota = DailyQuota(1)
    blocked = tmp_path / "box"
    stub = install_stubs(Maildir(blocked), rules=LocalRules(quota=quota))
    (blocked / "new").rmdir()  # delivery fails: no new/
    with pytest.raises(FileNotFoundError):
        mail.EmailMessage(sender="s@example.org", to="t@example.org", body="b").send()
    (blocked / "new").mkdir()
    mail.EmailMessage(sender="s@example.org", to="t@example.org", body="b").send()
    assert len(stub.requests) == 1

"""GmailProxy in-process: httpx.MockTransport for what it sends and how it reads answers."""

from __future__ import annotations

import email
import email.policy
import json
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from gaemail import GmailProxy
from gaemail.api import ClientSettings
from gaemail.errors import (
    ConfigurationError,
    MessageError,
    MessageRejected,
    MessageSendingFailure,
    ProxyURLError,
    SignatureRejected,
    TemporaryFailure,
)
from gaemail.protocol import ERROR_HEADER, v1, v2

SECRET = "api-test-secret"
URL = "http://proxy.test/send?token=t0ken"


class Recorder:
    """A MockTransport handler: keeps each request, answers from a list."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0) if self.answers else httpx.Response(204)

    def signed(self) -> list[tuple[bytes, bool, v2.Envelope | None]]:
        """(message, fix_sender, signed envelope or None for v1) of each request,
        each signature checked as the proxy checks it."""
        found: list[tuple[bytes, bool, v2.Envelope | None]] = []
        for request in self.requests:
            if request.url.path == v2.SEND_PATH:
                verified = v2.verify_request(
                    request.url.path,
                    request.url.query,
                    request.headers.get_list,
                    request.content,
                    [v2.Key.from_secret(SECRET.encode())],
                    now=int(time.time()),
                    max_recipients=500,
                )
                fields = verified.fields
                fix = v2.OPTION_FIX_SENDER in fields.options
                found.append((request.content, fix, fields.envelope))
            else:
                form = v1.decode_request(request.content)
                assert v1.verify([SECRET.encode()], form.msg, form.signature)
                found.append((form.msg, form.fix_sender, None))
        return found

    def messages(self) -> list[EmailMessage]:
        found = []
        for data, _, _ in self.signed():
            msg = email.message_from_bytes(data, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            found.append(msg)
        return found

    def fix_sender(self) -> list[bool]:
        return [fix for _, fix, _ in self.signed()]

    def envelopes(self) -> list[v2.Envelope | None]:
        return [envelope for _, _, envelope in self.signed()]


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """No envdir, no syslog, a private queue: only what a test sets."""
    return {
        "GMAIL_ENVDIR": str(tmp_path / "no-envdir"),
        "GMAIL_QUEUE_DIR": str(tmp_path / "queue"),
        "GMAIL_SYSLOG_SOCKET": str(tmp_path / "no-syslog"),
    }


Make = Callable[..., GmailProxy]


@pytest.fixture
def make(environ: dict[str, str]) -> Make:
    def make(handler: Recorder, **kwargs: object) -> GmailProxy:
        env = {**environ, **kwargs.pop("env", {})}  # type: ignore[dict-item]
        return GmailProxy(
            SECRET, URL, environ=env, transport=httpx.MockTransport(handler), **kwargs
        )

    return make


PLAIN = b"From: a@example.com\nTo: b@example.org\nSubject: hi\n\nbody\n"


def test_posts_a_signed_v2_request_by_default(make: Make) -> None:
    handler = Recorder()
    with make(handler) as proxy:
        assert proxy.send_mail(PLAIN, recipients=["c@example.org"]) is True
    (request,) = handler.requests
    assert request.method == "POST" and str(request.url) == "http://proxy.test/v2/send"
    assert request.headers["Content-Type"] == v2.CONTENT_TYPE
    assert handler.envelopes() == [v2.Envelope("a@example.com", ("c@example.org",))]
    (msg,) = handler.messages()
    assert msg["To"] is None and msg["Bcc"] == "c@example.org"  # v1's way, kept for a v1 proxy


def test_a_retry_repeats_the_idempotency_key(make: Make) -> None:
    handler = Recorder(httpx.Response(503), httpx.Response(204))
    with make(handler) as proxy:
        outgoing = proxy.prepare(PLAIN)
        with pytest.raises(TemporaryFailure):
            proxy.deliver(outgoing)
        proxy.deliver(outgoing)
    keys = [r.headers["Idempotency-Key"] for r in handler.requests]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_posts_a_signed_v1_form_to_the_url(make: Make) -> None:
    handler = Recorder()
    with make(handler, protocol="v1") as proxy:
        assert proxy.send_mail(PLAIN) is True
    (request,) = handler.requests
    assert request.method == "POST" and str(request.url) == URL
    assert request.headers["Content-Type"] == v1.CONTENT_TYPE
    assert request.headers["User-Agent"] == "gaemail"
    (msg,) = handler.messages()
    assert msg["To"] == "b@example.org" and msg.get_content() == "body\n"
    assert handler.fix_sender() == [False]


def test_date_and_message_id_are_added_once_and_kept_on_every_attempt(make: Make) -> None:
    handler = Recorder(httpx.Response(503), httpx.Response(204))
    with make(handler) as proxy:
        outgoing = proxy.prepare(PLAIN)
        with pytest.raises(TemporaryFailure):
            proxy.deliver(outgoing)
        receipt = proxy.deliver(outgoing)
    first, second = (data for data, _, _ in handler.signed())
    assert first == second
    msg = handler.messages()[0]
    assert msg["Date"] and msg["Message-ID"] == outgoing.message_id == receipt.message_id
    assert receipt.queued is None


def test_given_recipients_are_the_envelope_and_no_one_else(make: Make) -> None:
    data = b"From: a@example.com\nTo: b@example.org, c@example.org\nCc: d@example.org\n\nx\n"
    handler = Recorder()
    with make(handler) as proxy:
        proxy.send_mail(data, recipients=["c@example.org", "hidden@example.net"])
    (msg,) = handler.messages()
    # v1 delivers to To, Cc and Bcc: the envelope is written into them.
    assert msg["To"] == "c@example.org"
    assert msg["Cc"] is None
    assert msg["Bcc"] == "hidden@example.net"


def test_without_recipients_to_cc_and_bcc_are_the_envelope(make: Make) -> None:
    handler = Recorder()
    with make(handler) as proxy:
        proxy.send_mail(b"From: a@example.com\nTo: b@example.org\nBcc: c@example.org\n\nx\n")
    (msg,) = handler.messages()
    assert msg["To"] == "b@example.org" and msg["Bcc"] == "c@example.org"


def test_settings_resolve_as_for_gmail(make: Make, tmp_path: Path) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("postmaster: root\nroot: admin@example.org\n")
    env = {
        "GMAIL_FROM": "app@example.com",
        "GMAIL_DEFAULT_DOMAIN": "example.net",
        "GMAIL_ALIASES": str(aliases),
    }
    handler = Recorder()
    with make(handler, env=env) as proxy:
        proxy.send_mail(b"Subject: s\n\nx\n", recipients=["postmaster", "bob"])
    (msg,) = handler.messages()
    assert msg["From"] == "app@example.com"
    assert msg["Bcc"] == "admin@example.org, bob@example.net"
    assert handler.fix_sender() == [False]


def test_no_sender_anywhere_asks_the_proxy_to_fix_it(make: Make) -> None:
    handler = Recorder()
    with make(handler) as proxy:
        proxy.send_mail(b"To: b@example.org\n\nx\n")
    assert handler.fix_sender() == [True]
    with make(Recorder()) as proxy:
        assert proxy.prepare(PLAIN).fix_sender is False
    with make(Recorder(), fix_sender=True) as proxy:
        assert proxy.prepare(PLAIN).fix_sender is True


def test_email_message_objects_and_str_are_accepted(make: Make) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.org", "Grüße"
    msg.set_content("Grüße\n")
    handler = Recorder()
    with make(handler) as proxy:
        proxy.send_mail(msg)
        proxy.send_mail(PLAIN.decode())
    sent, text = handler.messages()
    assert sent["Subject"] == "Grüße" and sent.get_content() == "Grüße\n"
    assert text["Subject"] == "hi"


@pytest.mark.parametrize(
    ("answer", "kind", "status", "temporary"),
    [
        (httpx.Response(400, text="Invalid address\n"), MessageRejected, 400, False),
        (
            httpx.Response(400, text="Bad key\n", headers={ERROR_HEADER: "signature"}),
            SignatureRejected,
            400,
            False,
        ),
        (httpx.Response(413, text="Too large\n"), MessageRejected, 413, False),
        (httpx.Response(503, text="Over quota\n"), TemporaryFailure, 503, True),
        (httpx.Response(500), TemporaryFailure, 500, True),
        # Not a gaemail proxy: a setup mistake, kept (temporary), never a bounce.
        (httpx.Response(200, text="<html>"), ProxyURLError, 200, True),
    ],
)
def test_answers_become_the_documented_errors(
    make: Make,
    answer: httpx.Response,
    kind: type[MessageSendingFailure],
    status: int,
    temporary: bool,
) -> None:
    with make(Recorder(answer)) as proxy, pytest.raises(kind) as caught:
        proxy.send_mail(PLAIN)
    assert type(caught.value) is kind
    assert caught.value.status == status and caught.value.temporary is temporary
    assert caught.value.reason
    with make(Recorder(answer), fail_silently=True) as proxy:
        assert proxy.send_mail(PLAIN) is False


def test_a_network_error_keeps_its_cause_and_says_what_gmail_says(make: Make) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as exc:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request) from exc

    proxy = GmailProxy(SECRET, URL, transport=httpx.MockTransport(refuse))
    with proxy, pytest.raises(TemporaryFailure) as caught:
        proxy.send_mail(PLAIN)
    shown = "http://proxy.test/send"
    assert str(caught.value) == f"cannot reach the proxy at {shown}: Connection refused"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert caught.value.status is None
    assert SECRET not in str(caught.value) and "t0ken" not in str(caught.value)


def test_a_message_that_cannot_be_sent_raises_whatever_fail_silently_says(make: Make) -> None:
    handler = Recorder()
    with make(handler, fail_silently=True) as proxy:
        with pytest.raises(MessageError):
            proxy.send_mail(b"From: a@example.com\nSubject: nobody\n\nx\n")
        with pytest.raises(MessageError):
            proxy.send_mail(PLAIN, recipients=["bare-name"])  # no default domain
    assert handler.requests == []


def test_configuration_errors_name_the_setting(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="GMAIL_PROXY_URL"):
        GmailProxy(SECRET, environ=environ, fail_silently=True)
    with pytest.raises(ConfigurationError, match="GMAIL_SECRET_KEY"):
        GmailProxy(url=URL, environ=environ, fail_silently=True)
    with pytest.raises(ConfigurationError, match="GMAIL_TIMEOUT"):
        GmailProxy(SECRET, URL, environ={**environ, "GMAIL_TIMEOUT": "soon"})


def test_the_secret_never_shows(environ: dict[str, str]) -> None:
    settings = ClientSettings.resolve(url=URL, secret_key=SECRET, environ=environ)
    assert SECRET not in repr(settings) and "t0ken" not in repr(settings)


def test_envdir_settings_are_read(tmp_path: Path, environ: dict[str, str]) -> None:
    envdir = tmp_path / "no-envdir"
    envdir.mkdir()
    (envdir / "GMAIL_PROXY_URL").write_text(URL + "\n")
    (envdir / "GMAIL_SECRET_KEY").write_text(SECRET + "\n")
    handler = Recorder()
    with GmailProxy(environ=environ, transport=httpx.MockTransport(handler)) as proxy:
        assert proxy.send_mail(PLAIN)
    assert len(handler.messages()) == 1


def queued_files(environ: dict[str, str]) -> list[Path]:
    new = Path(environ["GMAIL_QUEUE_DIR"]) / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


def test_queue_keeps_a_temporary_failure_for_the_deliverer(
    make: Make, environ: dict[str, str]
) -> None:
    handler = Recorder(httpx.Response(503, text="Over quota\n"))
    with make(handler, queue=True) as proxy:
        outgoing = proxy.prepare(PLAIN, recipients=["b@example.org", "c@example.org"])
        receipt = proxy.deliver(outgoing)
    assert receipt.queued is not None
    (path,) = queued_files(environ)
    assert path.name == receipt.queued
    head, _, data = path.read_bytes().partition(b"\n")
    assert data == outgoing.data == handler.signed()[0][0]
    record = json.loads(head)
    assert record["message_id"] == outgoing.message_id
    assert record["recipients"] == ["b@example.org", "c@example.org"]
    state = json.loads((path.parent.parent / "state" / f"{path.name}.json").read_text())
    assert state["attempts"] == 1 and "Over quota" in state["last_error"]


def test_queue_returns_true_and_never_keeps_a_refused_message(
    make: Make, environ: dict[str, str]
) -> None:
    with make(Recorder(httpx.Response(500)), queue=True) as proxy:
        assert proxy.send_mail(PLAIN) is True
    assert len(queued_files(environ)) == 1
    proxy = make(Recorder(httpx.Response(400, text="No\n")), queue=True)
    with proxy, pytest.raises(MessageRejected):
        proxy.send_mail(PLAIN)
    assert len(queued_files(environ)) == 1


def test_settings_or_arguments_not_both(environ: dict[str, str]) -> None:
    settings = ClientSettings.resolve(url=URL, secret_key=SECRET, environ=environ)
    with GmailProxy(settings=settings, transport=httpx.MockTransport(Recorder())) as proxy:
        assert proxy.endpoint.shown == "http://proxy.test/send"
    with pytest.raises(TypeError):
        GmailProxy(SECRET, settings=settings)


def test_the_public_names_are_the_documented_ones() -> None:
    import gaemail
    from gaemail import errors

    assert gaemail.GmailProxy is GmailProxy
    for name in set(gaemail.__all__) - {"GmailProxy"}:
        assert getattr(gaemail, name) is getattr(errors, name)
    assert issubclass(gaemail.MessageError, ValueError)

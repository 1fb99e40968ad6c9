"""The proxy's v2 interface: the specification's conformance checklist, with an injected clock.

Sends go through the SDK's own mail stub; idempotency records through the SDK's
own datastore stub, written to a file in the outbox as `gaemail serve` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from google.appengine.api import datastore
from google.appengine.runtime import apiproxy_errors

from gaemail import protocol
from gaemail.protocol import v1, v2
from gaemail.server import ServerConfig, idempotency
from gaemail.server.app import RELAY_V2_EXTENSION
from gaemail.server.local import create_local_app
from gaemail.server.relay_v2 import RelayV2

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.test import TestResponse

SECRET_A = b"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
SECRET_B = b"whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
LEGACY = b"legacy-secret"
KEY_A, KEY_B = v2.Key.from_secret(SECRET_A), v2.Key.from_secret(SECRET_B)
NOW = 1_700_000_000
IDEM = "8e03978e-40d5-43e8-bc93-6894a57f9324"
BODY = b"From: sender@example.com\r\nTo: alice@example.org\r\nSubject: test\r\n\r\nhello\r\n"
ENVELOPE = v2.Envelope("sender@example.com", ("alice@example.org", "bob@example.net"))


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


class Proxy:
    """A local app with a fake clock, and a way to post v2 requests to it."""

    def __init__(self, outbox: Path, config: ServerConfig, clock: Clock) -> None:
        self.clock = clock
        self.config = config
        self.app = build(outbox, config, clock)
        self.client = self.app.test_client()

    @property
    def sent(self) -> list[Any]:
        return list(self.app.extensions["mail_stub"].requests)

    def post(
        self,
        headers: dict[str, str] | list[tuple[str, str]],
        body: bytes = BODY,
        path: str = v2.SEND_PATH,
    ) -> TestResponse:
        return self.client.post(path, data=body, headers=headers)

    def send(
        self,
        body: bytes = BODY,
        *,
        keys: tuple[v2.Key, ...] = (KEY_A,),
        idem: str = IDEM,
        envelope: v2.Envelope = ENVELOPE,
        options: tuple[str, ...] = (),
    ) -> TestResponse:
        headers, body = v2.encode_send(body, keys, idem, envelope, options, now=int(self.clock()))
        return self.post(headers, body)


def build(outbox: Path, config: ServerConfig, clock: Callable[[], float]) -> Flask:
    return create_local_app(config, outbox, clock=clock)


@pytest.fixture
def v2_config() -> ServerConfig:
    return ServerConfig(keys=(SECRET_A, SECRET_B, LEGACY), default_sender="app@example.com")


@pytest.fixture
def proxy(tmp_path: Path, v2_config: ServerConfig) -> Proxy:
    return Proxy(tmp_path / "outbox", v2_config, Clock())


def _problem(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == v2.PROBLEM_TYPE
    document: dict[str, Any] = json.loads(response.get_data())
    assert (document["status"], document["code"]) == (status, code)
    assert "\n" not in document["detail"]
    return document


def _signed_headers(**changes: Any) -> dict[str, str]:
    headers, _ = v2.encode_send(BODY, (KEY_A,), IDEM, ENVELOPE, now=NOW)
    headers.update(changes)
    return headers


# 1, 10: a send, its envelope, the raw body


def test_send_delivers_to_exactly_the_signed_envelope(proxy: Proxy) -> None:
    response = proxy.send()
    assert response.status_code == 204, response.get_data(as_text=True)
    (sent,) = proxy.sent
    assert list(sent.To) == ["alice@example.org"]
    assert list(sent.Bcc) == ["bob@example.net"]  # Bcc-only: in no header
    delivered = next((proxy.app.extensions["mail_stub"].outbox.path / "new").iterdir())
    text = delivered.read_bytes()
    headers = text.split(b"\n\n", 1)[0]
    assert b"bob@example.net" not in headers.replace(b"X-Envelope-To", b"").split(b"To:")[0]
    assert b"Bcc" not in headers


def test_a_header_recipient_outside_the_envelope_is_not_sent_to(proxy: Proxy) -> None:
    body = BODY.replace(b"To: alice@example.org", b"To: alice@example.org, eve@example.com")
    assert proxy.send(body).status_code == 204
    (sent,) = proxy.sent
    recipients = [*sent.To, *sent.Cc, *sent.Bcc]
    assert sorted(recipients) == ["alice@example.org", "bob@example.net"]


def test_messages_over_500_kb_go_through(proxy: Proxy) -> None:
    body = BODY.replace(b"hello\r\n", b"".join([b"y" * 998 + b"\r\n"] * 700))
    assert len(body) > 500_000
    assert proxy.send(body).status_code == 204
    assert len(proxy.sent) == 1


# 2: tampering


@pytest.mark.parametrize(
    "tamper",
    [
        "body",
        "path",
        "from",
        "add-recipient",
        "drop-recipient",
        "reorder",
        "options",
        "timestamp",
        "idempotency-key",
        "key-id",
    ],
)
def test_any_tampered_field_is_refused_401_and_nothing_is_sent(proxy: Proxy, tamper: str) -> None:
    headers = _signed_headers()
    body, path = BODY, v2.SEND_PATH
    if tamper == "body":
        body = BODY.replace(b"hello", b"hellO")
        headers["Content-Digest"] = v2.content_digest(body)
    elif tamper == "path":
        check, _ = v2.encode_check((KEY_A,), IDEM, now=NOW)
        headers["Mail-Signature"] = check["Mail-Signature"]
    elif tamper == "from":
        headers["Mail-Envelope-From"] = "boss@example.com"
    elif tamper == "add-recipient":
        headers["Mail-Envelope-To"] += ", eve@example.com"
    elif tamper == "drop-recipient":
        headers["Mail-Envelope-To"] = "alice@example.org"
    elif tamper == "reorder":
        headers["Mail-Envelope-To"] = "bob@example.net, alice@example.org"
    elif tamper == "options":
        headers["Mail-Options"] = "fix-sender"
    elif tamper == "timestamp":
        headers["Mail-Timestamp"] = str(NOW + 1)
    elif tamper == "idempotency-key":
        headers["Idempotency-Key"] = IDEM.replace("8", "9")
    elif tamper == "key-id":
        headers["Mail-Signature"] = headers["Mail-Signature"].replace(KEY_A.id, KEY_B.id)
    response = proxy.post(headers, body, path)
    document = _problem(response, 401, "signature_invalid")
    assert response.headers["WWW-Authenticate"] == v2.AUTHENTICATE
    assert document["server_time"] == NOW
    assert proxy.sent == []


# 3: digest


def test_missing_or_wrong_digest_is_400(proxy: Proxy) -> None:
    headers = _signed_headers()
    del headers["Content-Digest"]
    _problem(proxy.post(headers), 400, "header_missing")
    _problem(
        proxy.post(_signed_headers(**{"Content-Digest": "sha-256=:AAAA:"})),
        400,
        "content_digest_mismatch",
    )
    _problem(proxy.post(_signed_headers(), BODY + b"x"), 400, "content_digest_mismatch")
    assert proxy.sent == []


# 4: the window


@pytest.mark.parametrize(("offset", "status"), [(300, 204), (-300, 204), (301, 401), (-301, 401)])
def test_timestamp_window(proxy: Proxy, offset: int, status: int) -> None:
    proxy.clock.now = NOW + offset  # the request is signed at NOW
    response = proxy.post(_signed_headers())
    if status == 204:
        assert response.status_code == 204
    else:
        document = _problem(response, 401, "timestamp_out_of_window")
        assert document["server_time"] == NOW + offset


@pytest.mark.parametrize(
    "value", ["abc", "01700000000", "+1700000000", "-1", "1700000000.5", "1234567890123", ""]
)
def test_malformed_timestamps_are_400(proxy: Proxy, value: str) -> None:
    _problem(proxy.post(_signed_headers(**{"Mail-Timestamp": value})), 400, "timestamp_invalid")


# 5, 6: rotation and malformed signatures


def test_rotation_entries(proxy: Proxy) -> None:
    good = _signed_headers()["Mail-Signature"]
    garbage = f"v1,{KEY_A.id},AAAA v2,kdeadbeef00,AAAA nonsense {good}"
    assert proxy.post(_signed_headers(**{"Mail-Signature": garbage})).status_code == 204
    unknown = "v2,kdeadbeef00,AAAA v1,x,y"
    _problem(proxy.post(_signed_headers(**{"Mail-Signature": unknown}), BODY), 401, "unknown_key")
    five = " ".join([good] * 5)
    _problem(proxy.post(_signed_headers(**{"Mail-Signature": five})), 400, "too_many_signatures")


def test_old_and_new_key_both_pass(proxy: Proxy) -> None:
    assert proxy.send(keys=(KEY_B,)).status_code == 204
    assert proxy.send(idem="another-key-0123456789", keys=(KEY_A, KEY_B)).status_code == 204


@pytest.mark.parametrize("sig", ["!!!", "", "=", "AAAA", "é", "v2", "\x00", "a" * 5000])
def test_malformed_signatures_never_500(proxy: Proxy, sig: str) -> None:
    response = proxy.post(_signed_headers(**{"Mail-Signature": f"v2,{KEY_A.id},{sig}"}))
    assert response.status_code in (400, 401)
    assert response.mimetype == v2.PROBLEM_TYPE


# 7: replay


def test_replay_is_answered_from_the_record_and_sent_once(proxy: Proxy) -> None:
    assert proxy.send().status_code == 204
    again = proxy.send()
    assert again.status_code == 204
    assert again.headers[v2.H_REPLAYED] == "true"
    proxy.clock.now += 1000  # re-signed later
    assert proxy.send().headers[v2.H_REPLAYED] == "true"
    assert proxy.send(keys=(KEY_B,)).headers[v2.H_REPLAYED] == "true"
    assert len(proxy.sent) == 1
    _problem(proxy.send(BODY + b"more\r\n"), 422, "idempotency_key_reused")
    other = v2.Envelope(ENVELOPE.sender, ("alice@example.org",))
    _problem(proxy.send(envelope=other), 422, "idempotency_key_reused")
    assert len(proxy.sent) == 1


def test_replay_after_a_restart_is_not_sent_again(tmp_path: Path, v2_config: ServerConfig) -> None:
    clock = Clock()
    first = Proxy(tmp_path / "outbox", v2_config, clock)
    assert first.send().status_code == 204
    restarted = Proxy(tmp_path / "outbox", v2_config, clock)  # stubs built anew from the file
    response = restarted.send()
    assert response.status_code == 204
    assert response.headers[v2.H_REPLAYED] == "true"
    assert restarted.sent == []


def test_a_restart_forgets_the_records_past_their_retention(
    tmp_path: Path, v2_config: ServerConfig
) -> None:
    # What App Engine's TTL policy does; the local file would otherwise only grow.
    clock = Clock()
    first = Proxy(tmp_path / "outbox", v2_config, clock)
    assert first.send().status_code == 204
    assert first.send(idem="another-key-of-sixteen").status_code == 204
    clock.now += v2_config.idempotency_seconds - 10
    assert first.send(idem="a-newer-key-of-sixteen").status_code == 204
    clock.now += 20  # the first two are past their retention, the third is not
    restarted = Proxy(tmp_path / "outbox", v2_config, clock)
    records = datastore.Query(idempotency.KIND, namespace=idempotency.NAMESPACE)
    assert records.Count() == 1
    assert restarted.send(idem="a-newer-key-of-sixteen").headers[v2.H_REPLAYED] == "true"
    assert restarted.sent == []


def test_in_flight_gives_409_with_retry_after(proxy: Proxy) -> None:
    relay: RelayV2 = proxy.app.extensions[RELAY_V2_EXTENSION]
    verified_fields = v2.SignedFields(
        NOW, IDEM, v2.SEND_PATH, ENVELOPE, frozenset(), v2.content_digest(BODY)
    )
    assert relay.store.claim("default", IDEM, verified_fields.fingerprint()).record is None
    response = proxy.send()
    _problem(response, 409, "request_in_flight")
    assert int(response.headers["Retry-After"]) >= 1
    assert proxy.sent == []
    proxy.clock.now += 121  # the lease lapsed: the send was lost, a retry may send
    assert proxy.send().status_code == 204
    assert len(proxy.sent) == 1


def test_a_transient_failure_frees_the_key(proxy: Proxy) -> None:
    stub = proxy.app.extensions["mail_stub"]
    stub.SetError(apiproxy_errors.DeadlineExceededError())  # every call; None clears
    response = proxy.send()
    _problem(response, 503, "mail_service_unavailable")
    assert response.headers["Retry-After"] == "60"
    stub.SetError(None)
    assert proxy.send().status_code == 204
    assert proxy.send().headers[v2.H_REPLAYED] == "true"
    assert len(proxy.sent) == 1


def test_over_quota_is_429(proxy: Proxy) -> None:
    proxy.app.extensions["mail_stub"].SetError(apiproxy_errors.OverQuotaError(), method="Send")
    response = proxy.send()
    _problem(response, 429, "over_quota")
    assert response.headers["Retry-After"] == "3600"


def test_a_permanent_refusal_is_recorded(proxy: Proxy) -> None:
    body = BODY.replace(b"Subject: test", b"Subject: =?utf-8?q?a=0Db?=")
    _problem(proxy.send(body), 400, "message_refused")
    replay = proxy.send(body)
    _problem(replay, 400, "message_refused")
    assert replay.headers[v2.H_REPLAYED] == "true"


def test_after_retention_the_key_is_new(proxy: Proxy) -> None:
    assert proxy.send().status_code == 204
    proxy.clock.now += proxy.config.idempotency_seconds + 1
    assert v2.H_REPLAYED not in proxy.send().headers
    assert len(proxy.sent) == 2


def test_two_principals_with_the_same_key_string_do_not_collide(tmp_path: Path) -> None:
    config = ServerConfig(
        keys=(SECRET_A, SECRET_B), principals=((KEY_A.id, "alice"), (KEY_B.id, "bob"))
    )
    proxy = Proxy(tmp_path / "outbox", config, Clock())
    assert proxy.send(keys=(KEY_A,)).status_code == 204
    response = proxy.send(keys=(KEY_B,))
    assert response.status_code == 204
    assert v2.H_REPLAYED not in response.headers
    assert len(proxy.sent) == 2


# 8: headers


def test_envelope_over_two_lines_equals_one(proxy: Proxy) -> None:
    headers = list(_signed_headers().items())
    headers = [h for h in headers if h[0] != "Mail-Envelope-To"]
    headers += [("Mail-Envelope-To", "alice@example.org"), ("Mail-Envelope-To", "bob@example.net")]
    assert proxy.post(headers).status_code == 204


def test_header_shapes(proxy: Proxy) -> None:
    twice = [*_signed_headers().items(), ("Idempotency-Key", IDEM)]
    _problem(proxy.post(twice), 400, "idempotency_key_invalid")
    bare = _signed_headers(**{"Idempotency-Key": IDEM})
    assert proxy.post(bare).status_code == 204  # quoted and bare sign the same
    response = proxy.client.post(f"{v2.SEND_PATH}?x=1", data=BODY, headers=_signed_headers())
    _problem(response, 400, "query_not_allowed")
    gzip = _signed_headers(**{"Content-Encoding": "gzip"})
    _problem(proxy.post(gzip), 415, "content_encoding_unsupported")
    form = _signed_headers(**{"Content-Type": "application/x-www-form-urlencoded"})
    _problem(proxy.post(form), 415, "content_type_unsupported")


# 9: envelope syntax


@pytest.mark.parametrize("rcpt", ["a b@example.org", "<a@example.org>", '"a"@example.org'])
def test_envelope_addresses_with_spaces_or_brackets_are_refused(proxy: Proxy, rcpt: str) -> None:
    response = proxy.post(_signed_headers(**{"Mail-Envelope-To": rcpt}))
    _problem(response, 400, "envelope_to_invalid")


def test_too_many_envelope_recipients_are_counted_before_reading(proxy: Proxy) -> None:
    many = ", ".join(f"r{i}@example.org" for i in range(501))
    document = _problem(
        proxy.post(_signed_headers(**{"Mail-Envelope-To": many})), 400, "too_many_recipients"
    )
    assert "max_recipients" in document["detail"]


# 11, 12: the other protocol


def test_cross_protocol_signatures_fail(proxy: Proxy) -> None:
    v2_signature = _signed_headers()["Mail-Signature"].split(",")[2]
    form = f"msg={v1.form_quote(BODY)}&signature={v1.form_quote(v2_signature.encode())}"
    response = proxy.client.post("/", data=form, content_type=v1.CONTENT_TYPE)
    assert response.status_code == 400
    assert response.get_data(as_text=True) == "Signature doesn't match\n"
    legacy_v1 = v1.sign(LEGACY, BODY)
    v1_in_v2 = _signed_headers(**{"Mail-Signature": f"v2,kfdcbc807d8,{legacy_v1}"})
    _problem(proxy.post(v1_in_v2), 401, "signature_invalid")
    assert proxy.sent == []


def test_v1_legacy_vector_still_sends(proxy: Proxy) -> None:
    response = proxy.client.post(
        "/", data=v1.encode_request(BODY, LEGACY), content_type=v1.CONTENT_TYPE
    )
    assert response.status_code == 204


def test_v1_switched_off_answers_410_text(tmp_path: Path) -> None:
    config = ServerConfig(keys=(LEGACY,), v1_enabled=False)
    proxy = Proxy(tmp_path / "outbox", config, Clock())
    response = proxy.client.post(
        "/", data=v1.encode_request(BODY, LEGACY), content_type=v1.CONTENT_TYPE
    )
    assert response.status_code == 410
    assert response.mimetype == "text/plain"
    assert "v2" in response.get_data(as_text=True)
    assert proxy.sent == []


# 6 (check)


def test_check_is_a_signed_no_op(proxy: Proxy) -> None:
    headers, body = v2.encode_check((KEY_B,), IDEM, now=NOW)
    response = proxy.post(headers, body, v2.CHECK_PATH)
    assert response.status_code == 200
    document = response.get_json()
    assert document["key_id"] == KEY_B.id
    assert document["server_time"] == NOW
    assert document["mail_service"] == "local-stub"
    assert document["v1_enabled"] is True
    assert document["max_recipients"] == 500
    assert document["max_message_bytes"] == protocol.MAX_MESSAGE_BYTES
    assert document["version"] == "v2"
    assert proxy.sent == []
    proxy.clock.now += 301
    _problem(proxy.post(headers, body, v2.CHECK_PATH), 401, "timestamp_out_of_window")


def test_an_unauthorized_sender_is_a_recorded_400(proxy: Proxy) -> None:
    from google.appengine.api import mail_service_pb2

    error = apiproxy_errors.ApplicationError(
        mail_service_pb2.MailServiceError.UNAUTHORIZED_SENDER, "no"
    )
    proxy.app.extensions["mail_stub"].SetError(error)
    document = _problem(proxy.send(), 400, "message_refused")
    assert "sender@example.com" in document["detail"]


def test_without_from_the_sender_is_the_envelopes_or_with_fix_sender_the_default(
    proxy: Proxy,
) -> None:
    body = BODY.replace(b"From: sender@example.com\r\n", b"")
    assert proxy.send(body).status_code == 204
    assert proxy.sent[-1].Sender == "sender@example.com"
    response = proxy.send(body, idem="second-key-0123456789", options=("fix-sender",))
    assert response.status_code == 204
    assert proxy.sent[-1].Sender == "app@example.com"


def test_unreachable_records_fail_closed_with_503(proxy: Proxy) -> None:
    from google.appengine.api import apiproxy_stub_map

    datastore_stub = apiproxy_stub_map.apiproxy.GetStub("datastore_v3")
    datastore_stub.SetError(apiproxy_errors.CapabilityDisabledError())
    try:
        response = proxy.send()
    finally:
        datastore_stub.SetError(None)
    _problem(response, 503, "idempotency_store_unavailable")
    assert response.headers["Retry-After"] == "30"
    assert proxy.sent == []
    assert proxy.send().status_code == 204

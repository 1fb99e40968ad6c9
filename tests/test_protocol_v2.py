"""Protocol v2, both ends, without a server: the specification's test vectors pinned."""

from __future__ import annotations

import hashlib
import json

import pytest

from gaemail import protocol
from gaemail.errors import MessageRejected, SignatureRejected, TemporaryFailure
from gaemail.protocol import v1, v2

BODY = b"From: sender@example.com\r\nTo: alice@example.org\r\nSubject: test\r\n\r\nhello\r\n"
DIGEST = "sha-256=:Kro0cocgzcwcs8DzFuobjucWEUJNr64jySCNZTnby6g=:"
SECRET_A = b"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
SECRET_B = b"whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
LEGACY = b"legacy-secret"
KEY_A, KEY_B, KEY_LEGACY = (v2.Key.from_secret(s) for s in (SECRET_A, SECRET_B, LEGACY))
NOW = 1700000000
IDEM = "8e03978e-40d5-43e8-bc93-6894a57f9324"
ENVELOPE = v2.Envelope("sender@example.com", ("alice@example.org", "bob@example.net"))
CANONICAL = (
    "GAEMAIL-V2-HMAC-SHA256\nk5036e1435a\n1700000000\n8e03978e-40d5-43e8-bc93-6894a57f9324\n"
    "POST\n/v2/send\nsender@example.com\nalice@example.org,bob@example.net\n\n"
    "sha-256=:Kro0cocgzcwcs8DzFuobjucWEUJNr64jySCNZTnby6g=:"
)
BASE_SIGNATURE = "zWLOY2kl8i2uxghLqV8tdUeBmTBjJtGtcw44KXew15w="


def _fields(**changes: object) -> v2.SignedFields:
    values: dict[str, object] = {
        "timestamp": NOW,
        "idempotency_key": IDEM,
        "path": v2.SEND_PATH,
        "envelope": ENVELOPE,
        "options": frozenset(),
        "digest": v2.content_digest(BODY),
    }
    values.update(changes)
    return v2.SignedFields(**values)  # type: ignore[arg-type]


def test_keys_and_digest_match_the_vectors() -> None:
    assert len(BODY) == 73
    assert v2.content_digest(BODY) == DIGEST
    assert (KEY_A.id, KEY_B.id, KEY_LEGACY.id) == ("k5036e1435a", "k9ad17a0e8b", "kfdcbc807d8")
    assert KEY_A.hmac_key == bytes(range(32))
    assert KEY_LEGACY.hmac_key == LEGACY
    assert v1.sign(LEGACY, BODY) == "eOETK2wjYkUoYCQW9exUgOK2wzs="


def test_canonical_string_signature_and_fingerprint_match_the_vectors() -> None:
    fields = _fields()
    assert fields.canonical_string(KEY_A.id) == CANONICAL
    assert hashlib.sha256(CANONICAL.encode()).hexdigest() == (
        "799baa1059580d6eed3365a5c3819c4f20563caf37992d958a44bfdf6a14a666"
    )
    assert v2.signature(KEY_A, fields) == BASE_SIGNATURE
    assert fields.fingerprint() == (
        "9ca23853734ae0b97698db5c8b174df2f1a3769e8172027cf91748443424dff2"
    )


@pytest.mark.parametrize(
    ("key", "changes", "expected"),
    [
        (
            KEY_A,
            {"options": frozenset({"fix-sender"})},
            "oh5Eq26XHJv2PSYz4oEcUx9nAj6d5wmvGmIof20QWW8=",
        ),
        (
            KEY_A,
            {"envelope": v2.Envelope(ENVELOPE.sender, ENVELOPE.recipients[::-1])},
            "j7Sgx2jC3P9V+zY5JD28I1uiaysBrPrj6yxAEMXFihE=",
        ),
        (KEY_A, {"timestamp": NOW + 1}, "AjW2YLAIf/2sLPZZfeflVTo6OpVfr1u6YqKbQOeju3g="),
        (KEY_B, {}, "D0IJFIj4kiWEo+Px5CYJ9fWU0f/40ke4XncaTokMJ+A="),
        (KEY_LEGACY, {}, "KLfsZ0lIuBAy6WfHjuTWpqqViRhZ/dv/onSbLZaOCBg="),
        (
            KEY_A,
            {
                "path": v2.CHECK_PATH,
                "envelope": v2.Envelope("<>", ()),
                "digest": "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
            },
            "AYq9G+R5guPHvY3L+NSxYsaMZ3y32RpdF7Nb9Hy6cRE=",
        ),
    ],
    ids=["fix-sender", "reordered", "timestamp", "key-b", "legacy", "check"],
)
def test_signature_variants_match_the_vectors(
    key: v2.Key, changes: dict[str, object], expected: str
) -> None:
    assert v2.signature(key, _fields(**changes)) == expected
    assert expected != BASE_SIGNATURE


def test_encode_send_writes_the_headers_the_verifier_accepts() -> None:
    headers, body = v2.encode_send(BODY, [KEY_A], IDEM, ENVELOPE, now=NOW)
    assert body == BODY
    assert headers["Mail-Signature"] == f"v2,k5036e1435a,{BASE_SIGNATURE}"
    assert headers["Idempotency-Key"] == f'"{IDEM}"'
    assert headers["Content-Digest"] == DIGEST
    assert "Mail-Options" not in headers
    verified = _verify(headers, body)
    assert verified.key_id == KEY_A.id
    assert verified.fields == _fields()


def test_encode_check_matches_its_vector() -> None:
    headers, body = v2.encode_check([KEY_A], IDEM, now=NOW)
    assert body == b""
    assert headers["Mail-Envelope-From"] == "<>"
    assert "Mail-Envelope-To" not in headers
    assert headers["Mail-Signature"].endswith("AYq9G+R5guPHvY3L+NSxYsaMZ3y32RpdF7Nb9Hy6cRE=")
    assert _verify(headers, body, path=v2.CHECK_PATH).key_id == KEY_A.id


def _verify(
    headers: dict[str, str],
    body: bytes,
    *,
    path: str = v2.SEND_PATH,
    keys: tuple[v2.Key, ...] = (KEY_A, KEY_B),
    now: int = NOW,
) -> v2.Verified:
    lowered: dict[str, list[str]] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), []).append(value)
    return v2.verify_request(
        path, b"", lambda n: lowered.get(n.lower(), []), body, keys, now=now, max_recipients=10
    )


@pytest.mark.parametrize(
    "bad",
    [
        v2.Envelope("a b@example.com", ("x@example.org",)),
        v2.Envelope("s@example.com", ("x,y@example.org",)),
        v2.Envelope("s@example.com", ("<x@example.org>",)),
        v2.Envelope("s@example.com", ()),
        v2.Envelope("s@example.com", ("x@example.org", "x@example.org")),
    ],
)
def test_client_refuses_envelopes_the_protocol_cannot_carry(bad: v2.Envelope) -> None:
    with pytest.raises(v2.ProtocolError) as info:
        v2.encode_send(BODY, [KEY_A], IDEM, bad, now=NOW)
    assert info.value.status == 400


def test_client_refuses_bad_idempotency_keys_and_options() -> None:
    for key in ("short", "x" * 129, "has space in it ok", 'quote"in"it-xxxxxx'):
        with pytest.raises(v2.ProtocolError, match="Idempotency-Key"):
            v2.encode_send(BODY, [KEY_A], key, ENVELOPE, now=NOW)
    with pytest.raises(v2.ProtocolError, match="Unknown option"):
        v2.encode_send(BODY, [KEY_A], IDEM, ENVELOPE, ["gzip"], now=NOW)


def test_signing_with_two_keys_gives_two_entries() -> None:
    headers, _ = v2.encode_send(BODY, [KEY_A, KEY_B], IDEM, ENVELOPE, now=NOW)
    entries = headers["Mail-Signature"].split(" ")
    assert [e.split(",")[1] for e in entries] == [KEY_A.id, KEY_B.id]
    assert _verify(headers, BODY, keys=(KEY_B,)).key_id == KEY_B.id


def _problem(status: int, code: str, detail: str = "why") -> bytes:
    return json.dumps({"status": status, "code": code, "detail": detail}).encode()


@pytest.mark.parametrize(
    ("status", "failure", "temporary"),
    [
        (400, MessageRejected, False),
        (401, SignatureRejected, False),
        (409, TemporaryFailure, True),
        (413, MessageRejected, False),
        (415, MessageRejected, False),
        (422, MessageRejected, False),
        (429, TemporaryFailure, True),
        (500, TemporaryFailure, True),
        (503, TemporaryFailure, True),
    ],
)
def test_answers_map_to_the_protocols_failures(
    status: int, failure: type[Exception], temporary: bool
) -> None:
    answer = v2.parse_answer(status, {"retry-after": "7"}, _problem(status, "some_code"))
    assert type(answer.failure) is failure
    assert answer.failure is not None
    assert answer.failure.temporary is temporary
    assert answer.failure.reason == "why"
    assert (answer.code, answer.retry_after) == ("some_code", 7)


def test_sent_replayed_checked_and_foreign_answers() -> None:
    assert v2.parse_answer(204, {}, b"").failure is None
    replay = v2.parse_answer(204, {"Idempotent-Replayed": "true"}, b"")
    assert replay.failure is None
    assert replay.replayed
    check = v2.parse_answer(200, {}, json.dumps({"key_id": "k1", "version": "v2"}).encode())
    assert check.failure is None
    assert check.document["key_id"] == "k1"
    page = v2.parse_answer(200, {}, b"<html>hello</html>")
    assert isinstance(page.failure, TemporaryFailure)
    old_proxy = v2.parse_answer(404, {}, b"<html>Not Found</html>")
    assert isinstance(old_proxy.failure, TemporaryFailure)
    assert v2.parse_answer(503, {"Retry-After": "soon"}, b"").retry_after is None


def test_every_v2_status_has_a_kind() -> None:
    for status in (400, 401, 409, 413, 415, 422, 429, 500, 503):
        assert any(kind.status == status for kind in protocol.KINDS.values())


def test_problem_body_is_problem_json() -> None:
    problem = v2.ProtocolError(401, "unknown_key", "No\nentry", extra={"server_time": NOW})
    document = json.loads(v2.problem_body(problem, "Unauthorized"))
    assert document["code"] == "unknown_key"
    assert document["status"] == 401
    assert document["detail"] == "No entry"
    assert document["server_time"] == NOW
    assert set(document) >= {"type", "title", "status", "code", "detail"}


def test_new_idempotency_keys_are_valid_and_distinct() -> None:
    keys = {v2.new_idempotency_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        v2.check_idempotency_key(key)

"""The proxy's side of signing: fixed vectors, key rotation, missing fields."""

from __future__ import annotations

import random
from email.message import EmailMessage
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

import pytest

from gaemail import protocol
from gaemail.protocol import v1

if TYPE_CHECKING:
    from flask.testing import FlaskClient

    from conftest import PostMessage
    from gaemail.server import ServerConfig
    from gaemail.server.local import OutboxMailStub

VECTOR_MSG = b"From: a@example.com\nTo: b@example.com\nSubject: hi\n\nhello\n"
LATIN1_MSG = b"Gr\xfc\xdfe\n"

# Computed independently of Python, once:
#   printf 'From: a@example.com\nTo: b@example.com\nSubject: hi\n\nhello\n' > v1.eml
#   openssl dgst -sha1 -hmac current-key -binary v1.eml | base64   (and old-key)
#   printf 'Gr\xfc\xdfe\n' | openssl dgst -sha1 -hmac current-key -binary | base64
#   printf '' | openssl dgst -sha1 -hmac k -binary | base64
VECTORS = [
    (b"current-key", VECTOR_MSG, "+CdXL+oHpCBD3oDU6HIgozIYlWU="),
    (b"old-key", VECTOR_MSG, "LfjiOM3tfwJCPmasunwB52kThLQ="),
    (b"current-key", LATIN1_MSG, "906IUb6H37++j2SugxZJIfX9Ncs="),
    (b"k", b"", "OoSiGO5mZSCbtw6EUl3YN2RaGWU="),
]


@pytest.mark.parametrize(("key", "msg", "signature"), VECTORS)
def test_sign_matches_openssl(key: bytes, msg: bytes, signature: str) -> None:
    assert v1.sign(key, msg) == signature


@pytest.mark.parametrize(("key", "msg", "signature"), VECTORS)
def test_verify_finds_the_key_among_others(key: bytes, msg: bytes, signature: str) -> None:
    assert v1.verify([b"unrelated", key], msg, signature)
    assert not v1.verify([b"unrelated"], msg, signature)


def test_verify_rejects_a_changed_byte() -> None:
    changed = VECTOR_MSG.replace(b"hello", b"hellO")
    assert not v1.verify([b"current-key"], changed, VECTORS[0][2])


def test_signature_made_outside_python_is_accepted_by_the_app(
    client: FlaskClient, mail_stub: OutboxMailStub
) -> None:
    # The fixture's keys are the vectors' keys, so this is the body curl would send.
    body = urlencode({"msg": VECTOR_MSG.decode(), "signature": VECTORS[0][2]})
    response = client.post("/", data=body, content_type=v1.CONTENT_TYPE)
    assert response.status_code == protocol.SENT
    assert [m.to for m in mail_stub.get_sent_messages()] == ["b@example.com"]


@pytest.mark.parametrize("which", ["new", "old"])
def test_old_and_new_keys_are_both_accepted(
    post_message: PostMessage,
    plain_message: EmailMessage,
    server_config: ServerConfig,
    which: str,
) -> None:
    key = server_config.keys[0 if which == "new" else 1]
    assert post_message(plain_message.as_bytes(), key).status_code == protocol.SENT


def test_unknown_key_is_refused_with_kind_signature(
    post_message: PostMessage, plain_message: EmailMessage, mail_stub: OutboxMailStub
) -> None:
    response = post_message(plain_message.as_bytes(), b"stolen-or-stale-key")
    assert response.status_code == protocol.BAD_REQUEST
    assert response.headers[protocol.ERROR_HEADER] == protocol.KIND_SIGNATURE.name
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == protocol.REASON_BAD_SIGNATURE + "\n"
    assert mail_stub.get_sent_messages() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"signature=abc", protocol.REASON_NO_MESSAGE),
        (b"msg=&signature=abc", protocol.REASON_NO_MESSAGE),
        (b"", protocol.REASON_NO_MESSAGE),
        (b"msg=From%3A+a%40b%0A%0Ax", protocol.REASON_NO_SIGNATURE),
        (b"msg=From%3A+a%40b%0A%0Ax&signature=", protocol.REASON_NO_SIGNATURE),
    ],
)
def test_missing_fields_get_the_2010_reasons(client: FlaskClient, body: bytes, reason: str) -> None:
    response = client.post("/", data=body, content_type=v1.CONTENT_TYPE)
    assert response.status_code == protocol.BAD_REQUEST
    assert response.get_data(as_text=True) == reason + "\n"
    assert response.headers[protocol.ERROR_HEADER] == protocol.KIND_REQUEST.name


def test_body_that_is_not_url_encoded_is_refused(client: FlaskClient) -> None:
    response = client.post("/", data="msg=Grüße".encode(), content_type=v1.CONTENT_TYPE)
    assert response.status_code == protocol.BAD_REQUEST
    assert response.headers[protocol.ERROR_HEADER] == protocol.KIND_REQUEST.name


FORM_PIECES = [
    *("msg", "signature", "fix_sender", "=", "&", "&&", "+", "%", "%%", "%4", "%41", "%e9"),
    *("%C3%A9", "%zz", "%3D", "%25", "a", "Z", " ", "\t", "\r\n", "=\r\n", "==", "%0A", "~.-_"),
]


def _parse_qsl_reading(body: bytes) -> v1.SignedMessage | str:
    """What decode_request answered when it used urllib's parse_qsl."""
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="latin-1"):
        fields.setdefault(name, value)
    if not fields.get("msg"):
        return protocol.REASON_NO_MESSAGE
    if not fields.get("signature"):
        return protocol.REASON_NO_SIGNATURE
    return v1.SignedMessage(
        fields["msg"].encode("latin-1"), fields["signature"], bool(fields.get("fix_sender"))
    )


def _decoded(body: bytes) -> object:
    try:
        signed = v1.decode_request(body)
    except v1.RequestError as exc:
        return str(exc)
    return (signed.msg, signed.signature, signed.fix_sender)


def _expected(body: bytes) -> object:
    signed = _parse_qsl_reading(body)
    if isinstance(signed, str):
        return signed
    return (signed.msg, signed.signature, signed.fix_sender)


@pytest.mark.parametrize(
    "body",
    [
        b"msg=a%3Db%25c%zz%4&signature=x%2B%2b+y&fix_sender=",
        b"msg=%e9%E9%c3%a9+%0D%0A&signature=s&msg=second&fix_sender=1",
        b"msg=raw=equals%41&signature=s",
        b"&&msg=%%41%&signature=%&junk",
        b"signature=s&msg",
        b"msg=a%0&signature=%",
    ],
)
def test_form_fields_decode_as_parse_qsl_decodes_them(body: bytes) -> None:
    assert _decoded(body) == _expected(body)


def test_random_form_bodies_decode_as_parse_qsl_decodes_them() -> None:
    rnd = random.Random(1866)
    for _ in range(3000):
        body = "".join(rnd.choice(FORM_PIECES) for _ in range(rnd.randint(0, 16))).encode()
        assert _decoded(body) == _expected(body), body


def test_random_form_bodies_decoded_in_small_pieces_decode_as_parse_qsl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pieces of 3 bytes: every escape falls near a piece's end somewhere.
    monkeypatch.setattr(v1, "_DECODE_PIECE", 3)
    rnd = random.Random(1867)
    for _ in range(3000):
        body = "".join(rnd.choice(FORM_PIECES) for _ in range(rnd.randint(0, 16))).encode()
        assert _decoded(body) == _expected(body), body
    msg = bytes(range(256)) * 3
    assert v1.decode_request(v1.encode_request(msg, b"k")).msg == msg


def test_every_byte_survives_encoding_and_decoding() -> None:
    msg = bytes(range(256)) * 3
    signed = v1.decode_request(v1.encode_request(msg, b"k"))
    assert signed.msg == msg
    assert v1.verify([b"k"], signed.msg, signed.signature)

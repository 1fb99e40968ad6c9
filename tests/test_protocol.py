"""The v1 wire format on the client's side: form encoding and its round trip."""

from __future__ import annotations

import os
from urllib.parse import quote_from_bytes, urlencode

from gaemail import protocol
from gaemail.protocol import v1

EVERY_BYTE = bytes(range(256))


def test_form_quote_matches_the_standard_library() -> None:
    for data in (b"", EVERY_BYTE, EVERY_BYTE[::-1] * 3, os.urandom(4096)):
        assert v1.form_quote(data) == quote_from_bytes(data, safe="")


def test_request_round_trips_every_byte_and_verifies() -> None:
    msg = b"Subject: x\n\n" + EVERY_BYTE
    body = v1.encode_request(msg, b"k", fix_sender=True)
    decoded = v1.decode_request(body)
    assert decoded.msg == msg
    assert decoded.fix_sender is True
    assert v1.verify([b"other", b"k"], decoded.msg, decoded.signature)
    assert not v1.verify([b"other"], decoded.msg, decoded.signature)


def test_request_is_what_the_2010_client_sent() -> None:
    """urlencode of msg and the base64 HMAC-SHA1: the documented interface."""
    msg = b"From: a@example.com\nTo: b@example.com\n\nbody & more = 100%\n"
    expected = urlencode({"msg": msg, "signature": v1.sign(b"k", msg)}, safe="")
    # urlencode writes spaces as '+', the form encoding both decode alike.
    decoded = v1.decode_request(v1.encode_request(msg, b"k"))
    legacy = v1.decode_request(expected.encode("ascii"))
    assert (decoded.msg, decoded.signature) == (legacy.msg, legacy.signature)


def test_only_204_means_sent() -> None:
    assert protocol.failure_for(204, "") is None
    for status in (200, 201, 302, 404):
        failure = protocol.failure_for(status, "OK")
        assert failure is not None and failure.temporary, status
        assert "unexpected answer from the proxy URL" in str(failure)

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
    for status in (200, 201, 404, 405, 501):
        failure = protocol.failure_for(status, "OK")
        assert failure is not None and failure.temporary and failure.setup, status
        assert "that URL is not a gaemail proxy" in str(failure)
        assert failure.exit_code == 78


def test_a_redirect_is_a_setup_mistake_that_names_the_url() -> None:
    failure = protocol.failure_for(302, "Found", location="https://app.example.com/")
    assert failure is not None and failure.temporary and failure.setup
    assert "redirects to https://app.example.com/" in str(failure)
    assert "GMAIL_PROXY_URL" in str(failure)


def test_an_html_page_is_never_shown_as_the_reason() -> None:
    page = "<!DOCTYPE HTML><html><body>Oops</body>"
    for status in (400, 404, 501, 502):
        failure = protocol.failure_for(status, page)
        assert failure is not None and "<" not in str(failure), status
        assert failure.temporary, status  # never bounced: the message was never judged
    for status in (400, 501):  # 501: what a plain web server says to a POST
        assert "not a gaemail proxy" in str(protocol.failure_for(status, page))
    outage = protocol.failure_for(502, page)
    assert outage is not None and not outage.setup and "HTTP 502" in str(outage)


def test_the_kind_header_decides_by_the_one_table() -> None:
    for kind in protocol.KINDS.values():
        failure = protocol.failure_for(kind.status, "why", kind.name)
        assert type(failure) is kind.failure and failure.exit_code == kind.exit_code

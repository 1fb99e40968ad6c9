"""The regression corpus of issue 10: shapes that once answered 500, dropped recipients,
forged log lines or cost seconds, and the HTTP edge's own errors on a real server."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from gaemail import protocol
from gaemail.protocol import v2
from gaemail.server.app import log_requests_to
from gaemail.server.config import Limits
from gaemail.server.limits import check_shape
from gaemail.server.refusals import MessageRefused

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from conftest import PostMessage

HEAD = b"From: s@example.com\r\nTo: r@example.org\r\n"


def _msg(headers: bytes = b"", body: bytes = b"hello\r\n") -> bytes:
    return HEAD + headers + b"\r\n" + body


def _refusal(post_message: PostMessage, raw: bytes) -> str:
    response = post_message(raw)
    text = response.get_data(as_text=True)
    assert response.status_code == 400, text
    assert response.mimetype == "text/plain"
    assert text.count("\n") == 1
    return text


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (b"Cc: a@\r\n", "Cc: cannot read the address 'a@'"),
        (b"Cc: a: ; b@\r\n", "Cc: cannot read the address 'b@'"),
        (b"Reply-To: =?utf-8?b?!!!?=\r\n", "Reply-To: cannot read the address"),
        (b"Subject: =?utf-8?q?a=0Db?=\r\n", "Subject: contains a CR once decoded"),
        (b"Subject: =?utf-8?q?a=0Ab?=\r\n", "Subject: contains a LF once decoded"),
        (b"Subject: =?utf-8?q?a=00b?=\r\n", "Subject: contains a NUL once decoded"),
        (b"In-Reply-To: =?utf-8?q?<a=0D=0AX: y>?=\r\n", "In-Reply-To: contains a CR"),
        (b"Content-Type: text/plain; charset=idna\r\n", "Unusable charset 'idna'"),
        (b"Content-Type: text/plain; charset=undefined\r\n", "Unusable charset 'undefined'"),
        (b'Content-Type: text/plain; charset="a\x00b"\r\n', "Unusable charset"),
    ],
)
def test_permanent_problems_are_400_naming_the_header(
    post_message: PostMessage, headers: bytes, reason: str
) -> None:
    assert reason in _refusal(post_message, _msg(headers))


@pytest.mark.parametrize(
    ("to", "named"),
    [
        (b"good@example.org, a@b@c", "'a@b@c'"),
        (b"good@example.org, other@[127.0.0.1]", "'other@[127.0.0.1]'"),
        (b"good@example.org, a@, b@", "'a@', 'b@'"),
        (b"good@example.org, John j@example.org", "'John j@example.org'"),
        # Found by the longer fuzz run: the parser made up "b a"@b.org from this.
        (b'a: ; b a@b.org "Doe, J" <j@x.org>', """'b a@b.org "Doe, J" <j@x.org>'"""),
    ],
)
def test_no_recipient_is_dropped_silently(post_message: PostMessage, to: bytes, named: str) -> None:
    raw = b"From: s@example.com\r\nTo: " + to + b"\r\n\r\nhello\r\n"
    text = _refusal(post_message, raw)
    assert text.startswith("To: cannot read the address")
    assert named in text


def test_a_bare_local_name_after_a_group_is_read_not_a_500(post_message: PostMessage) -> None:
    # `To: a: ; b` made the standard library's parser raise; "b" is a local name, as
    # cron's "root" is: read, and handed to the Mail API, which refuses it (the
    # local stub as App Engine does) with a 400 that names it.
    answer = post_message(b"From: s@example.com\r\nTo: a: ; b\r\n\r\nhello\r\n")
    assert answer.status_code == 400
    (line,) = answer.get_data(as_text=True).splitlines()
    assert "'b'" in line


def test_groups_and_quoted_commas_still_work(post_message: PostMessage) -> None:
    raw = (
        b'From: s@example.com\r\nTo: undisclosed-recipients:;\r\nCc: "Doe, J." <j@example.org>,'
        b" team: a@example.org, b@example.org;\r\n\r\nhello\r\n"
    )
    assert post_message(raw).status_code == 204


@pytest.mark.parametrize(
    ("raw", "limit"),
    [
        (_msg(b"Subject: " + b"=?utf-8?q?abcd?= " * 52_631 + b"\r\n"), "max_header_bytes"),
        (_msg(b"Subject: " + b"=?utf-8?q?abcd?= " * 201 + b"\r\n"), "max_encoded_words"),
        (
            _msg(b"Cc: " + b", ".join(b"a%d@b.cc" % i for i in range(111_111)) + b"\r\n"),
            "max_header_bytes",
        ),
        (
            _msg(b"Cc: " + b", ".join(b"a%d@b.cc" % i for i in range(600)) + b"\r\n"),
            "max_recipients",
        ),
        (_msg(b"Content-Type: text/plain" + b"; p=v" * 200_000 + b"\r\n"), "max_header_bytes"),
        (_msg(b"Content-Type: text/plain" + b"; p=v" * 101 + b"\r\n"), "max_params"),
        (
            _msg(
                b'Content-Type: multipart/mixed; boundary="B"\r\n',
                b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 100_000 + b"--B--\r\n",
            ),
            "max_mime_parts",
        ),
        (
            _msg(
                b'Content-Type: multipart/mixed; boundary="b0"\r\n',
                b"".join(
                    b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1)
                    for i in range(30)
                ),
            ),
            "max_depth",
        ),
        (_msg(b"Message-ID: <" + b"x" * 1_000_000 + b"@example.com>\r\n"), "max_header_bytes"),
    ],
    ids=[
        "1mb-subject",
        "201-words",
        "111111-cc",
        "600-cc",
        "200000-params",
        "101-params",
        "100000-parts",
        "30-deep",
        "1mb-message-id",
    ],
)
def test_hostile_shapes_are_refused_naming_the_limit(
    post_message: PostMessage, raw: bytes, limit: str
) -> None:
    assert f"(limit {limit})" in _refusal(post_message, raw)


def test_limits_are_configurable() -> None:
    raw = _msg(b"Content-Type: text/plain" + b"; p=v" * 101 + b"\r\n")
    with pytest.raises(MessageRefused, match="max_params"):
        check_shape(raw, Limits(), 500)
    check_shape(raw, Limits(max_params=200), 500)
    with pytest.raises(MessageRefused, match="max_recipients"):
        check_shape(_msg(b"Cc: a@b.cc, c@d.cc\r\n"), Limits(), 2)


def test_parts_under_the_limits_pass_the_scan() -> None:
    body = b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 999 + b"--B--\r\n"
    check_shape(_msg(b'Content-Type: multipart/mixed; boundary="B"\r\n', body), Limits(), 500)


def test_log_lines_are_escaped_and_capped(post_message: PostMessage) -> None:
    logger = logging.getLogger("gaemail.server")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    stream = io.StringIO()
    try:
        log_requests_to(stream)
        forged = b"Message-ID: <a=?utf-8?q?=0AINFO_sent_204?=@x>\r\n"
        post_message(_msg(forged))
        post_message(_msg(b"Message-ID: <" + b"y" * 100_000 + b"@example.com>\r\n", b"hi\r\n"))
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert all(len(line) < 1200 for line in lines)
    assert all("protocol=v1" in line for line in lines)


# --- the HTTP edge, on a real werkzeug server on loopback ---


@pytest.fixture
def server(local_app: Flask) -> Iterator[int]:
    from gaemail.server.local.serve import ServeOptions, listen

    httpd = listen(ServeOptions(host="127.0.0.1", port=0), local_app)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield httpd.port
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def test_bad_chunked_framing_is_v1_text(server: int) -> None:
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nmsg=x\r\n0\r\n\r\n"
    )
    status, headers, body = _exchange(server, request)
    assert status == 400
    assert headers["content-type"].startswith("text/plain")
    assert body.count(b"\n") == 1
    assert b"malformed" in body


def test_duplicate_content_length_is_v1_text(server: int) -> None:
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 5\r\nContent-Length: 7\r\n\r\nmsg=x&s"
    )
    status, headers, body = _exchange(server, request)
    # werkzeug's server keeps the last Content-Length (the WSGI environ cannot show
    # the first); what matters here is that the answer is v1's one line, not HTML.
    assert status == 400
    assert headers["content-type"].startswith("text/plain")
    assert body.count(b"\n") == 1


@pytest.mark.parametrize(
    ("raw", "expected", "mimetype"),
    [
        (b"GARBAGE\r\n\r\n", 400, "text/plain"),
        (b"POST / HTTP/9.9\r\nHost: x\r\n\r\n", 505, "text/plain"),
        (
            b"POST /v2/send HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
            v2.PROBLEM_TYPE,
        ),
    ],
    ids=["no request line", "bad version", "header line too long"],
)
def test_the_servers_own_refusals_are_never_html(
    server: int, raw: bytes, expected: int, mimetype: str
) -> None:
    status, headers, body = _exchange(server, raw)
    assert status == expected
    assert headers["content-type"].startswith(mimetype)
    assert b"<" not in body
    if mimetype == "text/plain":
        assert body.count(b"\n") == 1
    else:
        assert json.loads(body)["status"] == status


def test_joined_content_length_is_refused_by_name(client: FlaskClient) -> None:
    # gunicorn and others join repeated lines with commas, as for any header.
    response = client.post(
        "/",
        data=b"msg=x",
        environ_overrides={"CONTENT_LENGTH": "5,7"},
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert response.get_data(as_text=True) == (
        "Content-Length is malformed or appears more than once\n"
    )


@pytest.mark.parametrize(
    ("request_line", "status", "mimetype"),
    [
        (b"GET /nope", 404, "text/plain"),
        (b"PUT /", 405, "text/plain"),
        (b"POST /v2/nope", 404, v2.PROBLEM_TYPE),
        (b"GET /v2/send", 405, v2.PROBLEM_TYPE),
    ],
)
def test_framework_errors_are_never_html(
    server: int, request_line: bytes, status: int, mimetype: str
) -> None:
    got, headers, body = _exchange(server, request_line + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got == status
    assert headers["content-type"].startswith(mimetype)
    assert b"<html" not in body.lower()
    if mimetype == v2.PROBLEM_TYPE:
        assert json.loads(body)["status"] == status


def test_too_large_is_413_in_each_protocol(server: int) -> None:
    size = protocol.MAX_REQUEST_BYTES + 1
    for path, mimetype in ((b"/", "text/plain"), (b"/v2/send", v2.PROBLEM_TYPE)):
        request = (
            b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: message/rfc822\r\n"
            b"Content-Length: " + str(size).encode() + b"\r\n\r\n"
        )
        status, headers, _ = _exchange(server, request)
        assert status == 413
        assert headers["content-type"].startswith(mimetype)

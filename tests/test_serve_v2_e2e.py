"""Protocol v2 against `gaemail serve` as a real process: a captured request replayed at
once, after the proxy was killed and started again, and re-signed, is sent once."""

from __future__ import annotations

import http.client
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import test_serve_e2e
from gaemail.protocol import v1, v2
from test_serve_e2e import ServeProcess

pytestmark = pytest.mark.e2e
# The fixtures of the v1 end-to-end tests, shared.
start_serve = test_serve_e2e.start_serve
clean_env = test_serve_e2e.clean_env

SECRET = b"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
MSG = b"From: cron@example.com\r\nTo: admin@example.org\r\nSubject: v2\r\n\r\nhello\r\n"
ENVELOPE = v2.Envelope("cron@example.com", ("admin@example.org", "audit@example.net"))


def _post(
    url: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _start(
    start_serve: Callable[..., ServeProcess], env: dict[str, str], tmp_path: Path, key_file: Path
) -> tuple[ServeProcess, str]:
    # Any sender: these tests are about the protocol, not App Engine's sender rule.
    serve = start_serve(
        "--secret-file", str(key_file), "--outbox", str(tmp_path / "box"),
        "--authorized-sender", "*", env=env,
    )  # fmt: skip
    url, _, _ = serve.startup(2)
    return serve, url


def test_replay_across_a_killed_proxy_is_sent_once(
    start_serve: Callable[..., ServeProcess],
    clean_env: dict[str, str],
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(SECRET.decode() + "\n")
    key = v2.Key.from_secret(SECRET)
    captured = v2.encode_send(MSG, [key], "e2e-idempotency-0001", ENVELOPE, now=int(time.time()))
    serve, url = _start(start_serve, clean_env, tmp_path, key_file)
    status, _, _ = _post(url, v2.SEND_PATH, *captured)
    assert status == 204
    status, headers, _ = _post(url, v2.SEND_PATH, *captured)
    assert (status, headers.get("idempotent-replayed")) == (204, "true")

    serve.process.send_signal(signal.SIGKILL)  # no clean exit: the records must be on disk
    serve.process.wait(timeout=30)
    serve, url = _start(start_serve, clean_env, tmp_path, key_file)
    status, headers, _ = _post(url, v2.SEND_PATH, *captured)
    assert (status, headers.get("idempotent-replayed")) == (204, "true")
    resigned = v2.encode_send(
        MSG, [key], "e2e-idempotency-0001", ENVELOPE, now=int(time.time()) + 1
    )
    status, headers, _ = _post(url, v2.SEND_PATH, *resigned)
    assert (status, headers.get("idempotent-replayed")) == (204, "true")
    tampered = dict(captured[0], **{"Mail-Envelope-To": "admin@example.org"})
    status, headers, body = _post(url, v2.SEND_PATH, tampered, MSG)
    assert status == 401
    assert headers["content-type"] == v2.PROBLEM_TYPE
    assert json.loads(body)["code"] == "signature_invalid"

    (delivered,) = (tmp_path / "box" / "new").iterdir()
    assert b"X-Envelope-To: admin@example.org, audit@example.net" in delivered.read_bytes()
    assert serve.stop() == 0
    log = serve.stderr_path.read_text()
    assert f"protocol=v2 key={key.id}" in log
    assert "replayed 204" in log


def test_v1_switched_off_by_the_environment(
    start_serve: Callable[..., ServeProcess],
    clean_env: dict[str, str],
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("legacy-secret\n")
    serve, url = _start(start_serve, {**clean_env, "GAEMAIL_V1": "off"}, tmp_path, key_file)
    status, headers, _ = _post(
        url, "/", {"Content-Type": v1.CONTENT_TYPE}, v1.encode_request(MSG, b"legacy-secret")
    )
    assert status == 410
    assert headers["content-type"].startswith("text/plain")
    check = v2.encode_check(
        [v2.Key.from_secret(b"legacy-secret")], "e2e-check-000001", now=int(time.time())
    )
    status, _, body = _post(url, v2.CHECK_PATH, *check)
    assert status == 200
    document = json.loads(body)
    assert (document["v1_enabled"], document["mail_service"]) == (False, "local-stub")
    assert serve.stop() == 0


def test_v1_switched_off_by_the_option(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str], tmp_path: Path
) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("legacy-secret\n")
    serve = start_serve("--secret-file", str(key_file), "--no-v1", env=clean_env)
    url, _, _ = serve.startup(2)
    status, _, _ = _post(
        url, "/", {"Content-Type": v1.CONTENT_TYPE}, v1.encode_request(MSG, b"legacy-secret")
    )
    assert status == 410
    assert serve.stop() == 0

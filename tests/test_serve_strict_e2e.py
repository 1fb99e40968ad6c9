"""`gaemail serve` as strict as App Engine, safe to leave running: real processes on loopback.

The installed gmail sends through a real `gaemail serve`: the sender rule and the
fix-sender fallback, the daily quota with the client's queue, the envdir, the
remote-host guard, and slow clients that must not pin the server's threads.
"""

from __future__ import annotations

import email
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from email import policy
from pathlib import Path

import pytest

from gaemail.protocol import v1
from queue_support import GMAIL, attempted_and_unlocked, gmail_env, queued, wait_for
from test_serve_e2e import GAEMAIL, TIMEOUT, ServeProcess, clean_env, curl_post, start_serve

pytestmark = pytest.mark.e2e
__all__ = ["clean_env", "start_serve"]  # fixtures, imported to be found

QUOTA_PERIOD = 3.0  # seconds: the quota day of the quota test


def _message(n: int, sender: str = "app@example.com") -> bytes:
    return (
        f"From: {sender}\nTo: rcpt{n}@example.org\nSubject: strict {n}\n"
        f"Message-ID: <strict-{n}@example.com>\n\nbody {n}\n"
    ).encode()


def _gmail(args: list[str], env: dict[str, str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [GMAIL, *args], input=data, env=env, capture_output=True, timeout=TIMEOUT, check=False
    )


def _envdir_of(output: list[str]) -> Path:
    (line,) = [line for line in output if line.startswith("export GMAIL_ENVDIR=")]
    return Path(line.split("=", 1)[1])


def _delivered(outbox: Path) -> list[email.message.EmailMessage]:
    new = outbox / "new"
    found = []
    for path in sorted(new.iterdir()) if new.exists() else []:
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        found.append(msg)
    return found


def test_unauthorized_sender_arrives_as_production_delivers_it(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str], tmp_path: Path
) -> None:
    serve = start_serve("--default-sender", "app@example-app.appspotmail.com", env=clean_env)
    _, outbox, output = serve.startup(4)
    env = gmail_env(_envdir_of(output), tmp_path / "queue")
    cron = _message(1, "Cron Daemon <root@example.com>")
    sent = _gmail(["-t", "-i", "--no-queue"], env, cron)  # sendmail: fix-sender is on
    assert sent.returncode == 0, sent.stderr
    (delivered,) = _delivered(outbox)
    assert delivered["From"] == "app@example-app.appspotmail.com"
    assert delivered["Reply-To"] == "Cron Daemon <root@example.com>"

    refused = _gmail(
        ["-t", "-i", "--no-queue", "--no-fix-sender"], env, _message(2, "root@example.com")
    )
    assert refused.returncode != 0
    assert b"Unauthorized sender root@example.com" in refused.stderr
    assert len(_delivered(outbox)) == 1


def test_over_quota_the_client_queues_and_delivers_once_after_the_reset(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str], tmp_path: Path
) -> None:
    serve = start_serve(
        "--authorized-sender", "*", "--daily-quota", "1",
        "--quota-period", str(QUOTA_PERIOD), env=clean_env,
    )  # fmt: skip
    _, outbox, output = serve.startup(4)
    queue = tmp_path / "queue"
    env = gmail_env(_envdir_of(output), queue)
    first = _gmail(["-t", "-i", "--no-queue"], env, _message(1))
    assert first.returncode == 0, first.stderr
    started = time.monotonic()  # the quota day began with that message
    second = _gmail(["-t", "-i"], env, _message(2))  # queued first, then attempted
    assert second.returncode == 0, second.stderr
    wait_for(lambda: attempted_and_unlocked(queue), "the queued message's first attempt")
    assert time.monotonic() - started < QUOTA_PERIOD, "too slow to test within one quota day"
    assert queued(queue) == {"<strict-2@example.com>": 1}
    assert [m["Subject"] for m in _delivered(outbox)] == ["strict 1"]
    # Over quota is 429 in protocol v2 (gmail's default); v1 says 503, kind temporary.
    assert "refused 429 code=over_quota" in serve.stderr_path.read_text()

    time.sleep(max(0.0, QUOTA_PERIOD - (time.monotonic() - started)) + 0.2)
    flushed = _gmail(["-q"], env, b"")
    assert flushed.returncode == 0, flushed.stderr
    assert queued(queue) == {}
    subjects = [m["Subject"] for m in _delivered(outbox)]
    assert sorted(subjects) == ["strict 1", "strict 2"]


def test_serve_reads_the_key_from_the_envdir_and_keeps_its_settings(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str], tmp_path: Path
) -> None:
    system = tmp_path / "etc-envdir"
    system.mkdir()
    (system / "GMAIL_SECRET_KEY").write_text("envdir-key\n")
    (system / "GMAIL_DEFAULT_DOMAIN").write_text("example.net\n")
    env = {**clean_env, "GMAIL_ENVDIR": str(system)}
    serve = start_serve("--authorized-sender", "cron@example.com", env=env)
    url, _, output = serve.startup(4)
    # gmail keeps the system envdir (the key, the domain); only the URL is this server's.
    assert output[3] == f"export GMAIL_PROXY_URL={url}"
    msg_file = tmp_path / "msg.eml"
    raw = b"From: cron@example.com\nTo: a@example.org\nSubject: s\n\nx\n"
    msg_file.write_bytes(raw)
    assert curl_post(url, msg_file, v1.sign(b"envdir-key", raw)) == "204"
    serve.stop()

    # Without a key there, the development envdir carries the system's other settings.
    (system / "GMAIL_SECRET_KEY").unlink()
    again = start_serve(env=env)
    _, _, output = again.startup(4)
    envdir = _envdir_of(output)
    assert (envdir / "GMAIL_DEFAULT_DOMAIN").read_text() == "example.net\n"
    assert (envdir / "GMAIL_SECRET_KEY").read_text().strip() != ""


def test_a_non_loopback_host_needs_allow_remote(clean_env: dict[str, str]) -> None:
    if not GAEMAIL.exists():
        pytest.skip("the gaemail command is not installed")
    result = subprocess.run(
        [str(GAEMAIL), "serve", "--host", "0.0.0.0", "--port", "0"],  # noqa: S104 - refused
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 78  # EX_CONFIG, before anything listens
    assert "--allow-remote" in result.stderr
    assert "plain HTTP" in result.stderr


SLOW_CLIENTS = 60
THREADS = 4
REQUEST_TIMEOUT = 1.0


def _threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def _drip(sock: socket.socket, closed: list[float], stop: threading.Event) -> None:
    """Send a request a byte at a time until the server hangs up (or the test ends)."""
    request = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 500
    sock.settimeout(0.2)
    try:
        for byte in request:
            if stop.is_set():
                return
            sock.sendall(bytes([byte]))
            try:
                if sock.recv(1024) == b"":
                    break
            except TimeoutError:
                continue
    except OSError:
        pass  # reset by the server: it hung up
    closed.append(time.monotonic())


def test_slow_clients_are_cut_off_and_do_not_pin_threads(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str]
) -> None:
    serve = start_serve(
        "--threads", str(THREADS), "--request-timeout", str(REQUEST_TIMEOUT), env=clean_env
    )
    url, _, _ = serve.startup(4)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:  # warm: one request served
        assert answer.status == 200
    idle_threads = _threads_of(serve.process.pid)
    closed: list[float] = []
    stop = threading.Event()
    socks = [
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(SLOW_CLIENTS)
    ]
    opened = time.monotonic()
    drips = [threading.Thread(target=_drip, args=(s, closed, stop), daemon=True) for s in socks]
    for drip in drips:
        drip.start()
    try:
        most = idle_threads
        deadline = opened + REQUEST_TIMEOUT + 8.0
        while len(closed) < SLOW_CLIENTS and time.monotonic() < deadline:
            most = max(most, _threads_of(serve.process.pid))
            time.sleep(0.05)
        assert len(closed) == SLOW_CLIENTS, f"{len(closed)} of {SLOW_CLIENTS} cut off"
        assert max(closed) - opened < REQUEST_TIMEOUT + 5.0
        assert most <= idle_threads + THREADS
        # And the server still answers.
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            assert answer.status == 200
    finally:
        stop.set()
        for drip in drips:
            drip.join(TIMEOUT)
        for sock in socks:
            sock.close()


def test_serve_stops_at_once_with_slow_clients_connected(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str]
) -> None:
    serve = start_serve("--threads", "2", "--request-timeout", "60", env=clean_env)
    url, _, _ = serve.startup(4)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    socks = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(4)]
    try:
        for sock in socks:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
        time.sleep(0.5)  # the workers are reading
        began = time.monotonic()
        assert serve.stop() == 0
        assert time.monotonic() - began < 5.0
    finally:
        for sock in socks:
            sock.close()

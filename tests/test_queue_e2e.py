"""The queue end to end: installed gmail and gaemail against a real `gaemail serve`.

Each test counts deliveries in the outbox by the client's Message-ID: every message
acknowledged with exit 0 arrives exactly once, and nothing else arrives.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
GMAIL, GAEMAIL = str(BIN / "gmail"), str(BIN / "gaemail")
WAIT = 30.0


@dataclass
class Server:
    url: str
    envdir: Path
    outbox: Path
    process: subprocess.Popen[bytes]

    def deliveries(self) -> Counter[str]:
        ids: Counter[str] = Counter()
        new = self.outbox / "new"
        for path in new.iterdir() if new.exists() else []:
            match = re.search(rb"^X-Gaemail-Message-Id: (\S+)", path.read_bytes(), re.M)
            ids[match.group(1).decode() if match else "?"] += 1
        return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(state: Path, port: int = 0) -> Server:
    process = subprocess.Popen(
        [
            GAEMAIL,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--state-dir",
            str(state),
            "--default-sender",
            "proxy@example.com",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    url = envdir = None
    deadline = time.monotonic() + WAIT
    while envdir is None and time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if not line:
            break
        if line.startswith("Listening on "):
            url = line.split()[-1]
        if line.startswith("export GMAIL_ENVDIR="):
            envdir = Path(line.strip().split("=", 1)[1])
    if url is None or envdir is None:
        process.kill()
        process.wait(10)
        process.stdout.close()
        pytest.fail("gaemail serve did not start")
    return Server(url, envdir, state / "outbox", process)


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)
    if server.process.stdout:
        server.process.stdout.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path / "server")
    yield s
    stop(s)


def gmail_env(envdir: Path, queue: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(queue.parent),
        "GMAIL_ENVDIR": str(envdir),
        "GMAIL_QUEUE_DIR": str(queue),
        "GMAIL_SYSLOG_SOCKET": "/nonexistent",
        **extra,
    }


def run(
    args: list[str], env: dict[str, str], stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        args, input=stdin, env=env, capture_output=True, timeout=WAIT, check=False
    )


def message(n: int) -> bytes:
    return (
        f"From: sender@example.com\nTo: rcpt{n}@example.com\nSubject: test {n}\n"
        f"Message-ID: <msg{n}@example.com>\n\nbody {n}\n"
    ).encode()


def wait_for(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_server_down_queues_then_flush_delivers_once(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "server"
    up = start_server(state, port)  # once, to create the envdir with this port
    stop(up)
    queue = tmp_path / "queue"
    env = gmail_env(up.envdir, queue)
    done = run([GMAIL, "-s", "while down", "to@example.com"], env, b"hello\n")
    assert done.returncode == 0, done.stderr
    assert b"queued as" in done.stderr and b"cannot reach the proxy" in done.stderr
    listing = run([GMAIL, "-bp"], env).stdout.decode()
    assert "to@example.com" in listing and "1 message queued" in listing
    assert "cannot reach the proxy" in listing

    server = start_server(state, port)
    try:
        flushed = run([GMAIL, "-q"], env)
        assert flushed.returncode == 0, flushed.stderr
        assert list(server.deliveries().values()) == [1]
        assert "Mail queue is empty" in run([GMAIL, "-bp"], env).stdout.decode()
    finally:
        stop(server)


def test_no_queue_exits_75_and_keeps_nothing(tmp_path: Path) -> None:
    state = tmp_path / "server"
    up = start_server(state)
    stop(up)
    queue = tmp_path / "queue"
    done = run(
        [GMAIL, "--no-queue", "-i", "a@example.com"], gmail_env(up.envdir, queue), message(1)
    )
    assert done.returncode == 75
    assert b"cannot reach the proxy" in done.stderr
    assert not (queue / "new").exists() or not list((queue / "new").iterdir())


def test_background_mode_returns_and_delivers(server: Server, tmp_path: Path) -> None:
    env = gmail_env(server.envdir, tmp_path / "queue")
    done = run([GMAIL, "-t", "-i"], env, message(7))
    assert done.returncode == 0 and done.stderr == b""
    wait_for(lambda: server.deliveries() == Counter({"<msg7@example.com>": 1}), "delivery")
    wait_for(lambda: not list((tmp_path / "queue" / "new").iterdir()), "an empty queue")


def test_queue_only_then_flush(server: Server, tmp_path: Path) -> None:
    env = gmail_env(server.envdir, tmp_path / "queue")
    for n in range(3):
        assert run([GMAIL, "-odq", "-i", f"rcpt{n}@example.com"], env, message(n)).returncode == 0
    assert server.deliveries() == Counter()
    assert "3 messages queued" in run([GMAIL, "-bp"], env).stdout.decode()
    assert (
        run([GAEMAIL, "queue", "flush", "--queue-dir", str(tmp_path / "queue")], env).returncode
        == 0
    )
    assert server.deliveries() == Counter({f"<msg{n}@example.com>": 1 for n in range(3)})


def test_concurrent_producers_and_flushers_deliver_each_message_once(
    server: Server, tmp_path: Path
) -> None:
    env = gmail_env(server.envdir, tmp_path / "queue")
    producers = [
        subprocess.Popen(
            [GMAIL, "-odq", "-i", f"rcpt{n}@example.com"],
            env=env,
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(8)
    ]
    flushers = [subprocess.Popen([GMAIL, "-q"], env=env, stderr=subprocess.PIPE) for _ in range(2)]
    for n, p in enumerate(producers):
        p.communicate(message(n), timeout=WAIT)
        assert p.returncode == 0
    for f in flushers:
        f.communicate(timeout=WAIT)
        assert f.returncode == 0
    assert run([GMAIL, "-q"], env).returncode == 0  # whatever the racing flushers missed
    assert server.deliveries() == Counter({f"<msg{n}@example.com>": 1 for n in range(8)})


REFUSED = (
    b"From: sender@example.com\nTo: a@example.com\nSubject: bad\n"
    b"Message-ID: <bad@example.com>\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\n"
    b"hi\n--B\nContent-Type: application/octet-stream\n"
    b"Content-Disposition: attachment; filename=evil.exe\n\nMZ\n--B--\n"
)


def test_permanent_refusal_moves_to_failed_and_bounces(server: Server, tmp_path: Path) -> None:
    env = gmail_env(server.envdir, tmp_path / "queue")
    assert run([GMAIL, "-odq", "-t", "-i"], env, REFUSED).returncode == 0
    assert run([GMAIL, "-q"], env).returncode == 0
    failed = run(
        [GAEMAIL, "queue", "list", "--failed", "--queue-dir", str(tmp_path / "queue")], env
    ).stdout.decode()
    assert "a@example.com" in failed and "1 message failed" in failed
    bounces = [p.read_bytes() for p in (server.outbox / "new").iterdir()]
    assert len(bounces) == 1
    assert b"X-Envelope-To: sender@example.com" in bounces[0]
    assert b"Undelivered mail: bad" in bounces[0]


def test_interactive_refusal_exits_65_and_queues_nothing(server: Server, tmp_path: Path) -> None:
    env = gmail_env(server.envdir, tmp_path / "queue")
    done = run([GMAIL, "-odi", "-t", "-i"], env, REFUSED)
    assert done.returncode == 65, done.stderr
    assert not (tmp_path / "queue" / "new").exists() or not list(
        (tmp_path / "queue" / "new").iterdir()
    )


def drop_replies_proxy(target_port: int) -> tuple[int, threading.Thread, socket.socket]:
    """Forwards each request to the proxy, then closes without passing the answer on."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(WAIT)

    def serve_one() -> None:
        client, _ = listener.accept()
        with client, socket.create_connection(("127.0.0.1", target_port), timeout=WAIT) as up:
            client.settimeout(WAIT)
            data = b""
            while b"\r\n\r\n" not in data:
                data += client.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
            while len(body) < length:
                body += client.recv(65536)
            up.sendall(head + b"\r\n\r\n" + body)
            up.recv(65536)  # the proxy has answered: the message was sent
        # the client's connection closes here with no answer

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    return int(listener.getsockname()[1]), thread, listener


def test_lost_answer_then_retry_is_delivered_once(server: Server, tmp_path: Path) -> None:
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    relay_port, thread, listener = drop_replies_proxy(port)
    env = gmail_env(
        server.envdir, tmp_path / "queue", GMAIL_PROXY_URL=f"http://127.0.0.1:{relay_port}/"
    )
    try:
        done = run([GMAIL, "-odi", "-i", "rcpt1@example.com"], env, message(1))
        thread.join(WAIT)
    finally:
        listener.close()
    assert done.returncode == 0 and b"queued as" in done.stderr
    assert server.deliveries() == Counter({"<msg1@example.com>": 1})  # sent, answer lost
    del env["GMAIL_PROXY_URL"]
    assert run([GMAIL, "-q"], env).returncode == 0  # the retry reaches the proxy itself
    assert "Mail queue is empty" in run([GMAIL, "-bp"], env).stdout.decode()
    assert server.deliveries() == Counter({"<msg1@example.com>": 1})

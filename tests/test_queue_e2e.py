"""The queue end to end: installed gmail and gaemail against a real `gaemail serve`.

Each test counts deliveries in the outbox by the client's Message-ID: every message
acknowledged with exit 0 arrives exactly once, and nothing else arrives.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultproxy import FaultProxy
from queue_support import (
    GAEMAIL,
    GMAIL,
    WAIT,
    Server,
    free_port,
    gmail_env,
    message,
    run,
    running_server,
    start_server,
    stop,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path / "server") as s:
        yield s


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


def test_lost_answer_then_retry_is_delivered_once(server: Server, tmp_path: Path) -> None:
    # The proxy forwards the request, then closes without passing the answer on.
    with FaultProxy(server.port, ["forward-then-close"]) as relay:
        env = gmail_env(server.envdir, tmp_path / "queue", GMAIL_PROXY_URL=relay.url)
        done = run([GMAIL, "-odi", "-i", "rcpt1@example.com"], env, message(1))
        relay.wait_settled()
    assert done.returncode == 0 and b"queued as" in done.stderr
    assert server.deliveries() == Counter({"<msg1@example.com>": 1})  # sent, answer lost
    del env["GMAIL_PROXY_URL"]
    assert run([GMAIL, "-q"], env).returncode == 0  # the retry reaches the proxy itself
    assert "Mail queue is empty" in run([GMAIL, "-bp"], env).stdout.decode()
    assert server.deliveries() == Counter({"<msg1@example.com>": 1})

"""Nothing lost, nothing twice: gmail and its queue against a misbehaving proxy.

A FaultProxy on loopback stands between gmail and a real `gaemail serve`.  Every
test counts what reaches the outbox by the client's Message-ID: each message
acknowledged with exit 0 arrives exactly once after the proxy recovers and the
queue is flushed, and nothing arrives that was not acknowledged.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from faultproxy import Exchange, FaultProxy
from queue_support import (
    GMAIL,
    WAIT,
    Server,
    attempted_and_unlocked,
    gmail_env,
    message,
    message_id,
    queued,
    run,
    running_server,
    wait_for,
)

pytestmark = pytest.mark.e2e
TIMEOUT = "1"  # GMAIL_TIMEOUT, seconds: long enough for loopback, short for the tests


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path / "server") as s:
        yield s


def one_line(stderr: bytes) -> str:
    lines = stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def queue_messages(env: dict[str, str], count: int) -> Counter[str]:
    """Queue message(0..count-1) with gmail -odq, 8 at a time; their Message-IDs."""
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda n: run([GMAIL, "-t", "-i", "-odq"], env, message(n)), range(count))
        )
    assert [r.returncode for r in results] == [0] * count
    return Counter(message_id(n) for n in range(count))


def flush(env: dict[str, str]) -> None:
    done = run([GMAIL, "-q"], env)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------------------
# The proxy answers 500 or 503, then recovers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, "Internal Server Error"),
        (503, "Service Unavailable"),
        # Some web page, not the proxy: the message was not sent, so it is kept.
        (200, "that URL is not a gaemail proxy"),
    ],
)
def test_server_error_queues_then_flush_delivers_once(
    server: Server, tmp_path: Path, status: int, reason: str
) -> None:
    queue = tmp_path / "queue"
    with FaultProxy(server.port, [f"status {status}"] * 3) as proxy:
        env = gmail_env(server.envdir, queue, GMAIL_PROXY_URL=proxy.url)
        mail_style = run([GMAIL, "-s", "mail style", "rcpt0@example.com"], env, b"body\n")
        interactive = run([GMAIL, "-odi", "-i", "rcpt1@example.com"], env, message(1))
        background = run([GMAIL, "-t", "-i"], env, message(2))
        for done in (mail_style, interactive):
            assert done.returncode == 0, done.stderr
            line = one_line(done.stderr)
            assert reason in line and "queued as" in line
        assert background.returncode == 0 and background.stderr == b""
        wait_for(lambda: attempted_and_unlocked(queue), "the background attempt")
        assert [x.behaviour for x in proxy.exchanges] == [f"status {status}"] * 3
        assert server.deliveries() == Counter()
        acknowledged = queued(queue)
        assert len(acknowledged) == 3 and set(acknowledged.values()) == {1}
        assert {message_id(1), message_id(2)} < set(acknowledged)

        flush(env)  # through the proxy, which forwards now
    assert server.deliveries() == acknowledged
    assert queued(queue) == Counter()


def test_no_queue_with_503_exits_75_and_keeps_nothing(server: Server, tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    with FaultProxy(server.port, ["status 503"]) as proxy:
        env = gmail_env(server.envdir, queue, GMAIL_PROXY_URL=proxy.url)
        done = run([GMAIL, "--no-queue", "-i", "rcpt1@example.com"], env, message(1))
        assert done.returncode == 75
        assert "Service Unavailable" in one_line(done.stderr)
        assert queued(queue) == Counter()
        flush(env)
        assert [x.behaviour for x in proxy.exchanges] == ["status 503"]  # the flush had nothing
    assert server.deliveries() == Counter()


# ---------------------------------------------------------------------------
# The exchange is lost: no answer in time, or a reset, before or after the send
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "said"),
    [
        ("hang", "timed out"),
        ("forward-then-hang", "timed out"),
        ("reset", "cannot reach the proxy"),
        ("forward-then-reset", "cannot reach the proxy"),
    ],
)
def test_lost_exchange_queues_then_flush_delivers_once(
    server: Server, tmp_path: Path, behaviour: str, said: str
) -> None:
    queue = tmp_path / "queue"
    server_sent = behaviour.startswith("forward")
    with FaultProxy(server.port, [behaviour] * 2) as proxy:
        env = gmail_env(server.envdir, queue, GMAIL_PROXY_URL=proxy.url, GMAIL_TIMEOUT=TIMEOUT)
        interactive = run([GMAIL, "-odi", "-i", "rcpt1@example.com"], env, message(1))
        background = run([GMAIL, "-t", "-i"], env, message(2))
        assert interactive.returncode == 0, interactive.stderr
        line = one_line(interactive.stderr)
        assert said in line and "queued as" in line
        assert background.returncode == 0 and background.stderr == b""
        wait_for(lambda: attempted_and_unlocked(queue), "the background attempt")
        proxy.wait_settled()
        acknowledged = Counter({message_id(1): 1, message_id(2): 1})
        assert queued(queue) == acknowledged
        assert server.deliveries() == (acknowledged if server_sent else Counter())

        flush(env)  # through the proxy, which forwards now
        # The retries reached the server, which answered "sent" ...
        assert [x.upstream_status for x in proxy.exchanges[2:]] == [204, 204]
    # ... and sent each message once in all.
    assert server.deliveries() == acknowledged
    assert queued(queue) == Counter()


@pytest.mark.parametrize(
    "behaviour",
    [
        "status 503",
        "hang",
        "forward-then-hang",
        "reset",
        "forward-then-reset",
        "forward-then-trickle",
    ],
)
def test_flush_through_a_failing_proxy_keeps_then_delivers_once(
    server: Server, tmp_path: Path, behaviour: str
) -> None:
    queue = tmp_path / "queue"
    env = gmail_env(server.envdir, queue)
    acknowledged = queue_messages(env, 3)
    # A trickled answer comes a byte every 0.2 s: no read waits, the whole takes 30 s.
    with FaultProxy(server.port, [behaviour] * 3, delay=0.2) as proxy:
        env = {**env, "GMAIL_PROXY_URL": proxy.url, "GMAIL_TIMEOUT": TIMEOUT}
        flush(env)  # every attempt fails: the messages stay queued
        proxy.wait_settled()
        assert queued(queue) == acknowledged
        server_sent = behaviour.startswith("forward")
        assert server.deliveries() == (acknowledged if server_sent else Counter())

        flush(env)  # the proxy forwards now
    assert server.deliveries() == acknowledged
    assert queued(queue) == Counter()


def test_trickled_answer_times_out_then_flush_delivers_once(server: Server, tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    # A byte every 0.2 s: no read waits a second, the answer takes half a minute.
    with FaultProxy(server.port, ["forward-then-trickle"], delay=0.2) as proxy:
        env = gmail_env(server.envdir, queue, GMAIL_PROXY_URL=proxy.url, GMAIL_TIMEOUT=TIMEOUT)
        done = subprocess.run(
            [GMAIL, "-odi", "-i", "rcpt1@example.com"],
            input=message(1),
            env=env,
            capture_output=True,
            timeout=3 * float(TIMEOUT) + 1,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        line = one_line(done.stderr)
        assert "timed out" in line and "queued as" in line
        flush(env)
    assert server.deliveries() == Counter({message_id(1): 1})
    assert queued(queue) == Counter()


# ---------------------------------------------------------------------------
# A flusher killed with SIGKILL in the middle of its run
# ---------------------------------------------------------------------------


def kill_flusher_when(env: dict[str, str], proxy: FaultProxy, stalled: str, what: str) -> None:
    """Run gmail -q through `proxy`; SIGKILL it once an exchange `stalled`."""
    flusher = subprocess.Popen(
        [GMAIL, "-q"],
        env={**env, "GMAIL_PROXY_URL": proxy.url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proxy.wait(lambda xs: any(_stalled(x, stalled) for x in xs), what)
    finally:
        flusher.kill()  # this PID only
        flusher.wait(WAIT)
    assert flusher.returncode == -9
    proxy.wait_settled()  # no request of the dead flusher is still on its way


def _stalled(exchange: Exchange, behaviour: str) -> bool:
    return exchange.behaviour == behaviour and exchange.settled


def test_killed_flusher_then_flush_delivers_each_once(server: Server, tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    env = gmail_env(server.envdir, queue)
    acknowledged = queue_messages(env, 100)
    # A slowed proxy takes 40 messages, then stops answering: the flusher is mid-run.
    with FaultProxy(server.port, ["slow-forward"] * 40, default="hang", delay=0.01) as proxy:
        kill_flusher_when(env, proxy, "hang", "the flusher to be mid-run")
    delivered = server.deliveries()
    assert 0 < sum(delivered.values()) < 100
    assert set(delivered.values()) == {1} and set(delivered) < set(acknowledged)
    # Each message is still queued, or delivered, or both (sent, answer not yet read).
    assert set(queued(queue).values()) == {1}
    assert set(queued(queue)) | set(delivered) == set(acknowledged)

    flush(env)  # straight to the server; the dead flusher's locks are gone with it
    assert server.deliveries() == acknowledged
    assert queued(queue) == Counter()


def test_flusher_killed_while_the_server_sends_then_flush_delivers_once(
    server: Server, tmp_path: Path
) -> None:
    queue = tmp_path / "queue"
    env = gmail_env(server.envdir, queue)
    acknowledged = queue_messages(env, 30)
    # The 11th request is sent by the server; its answer never reaches the flusher.
    with FaultProxy(server.port, ["forward"] * 10 + ["forward-then-hang"], default="hang") as proxy:
        kill_flusher_when(env, proxy, "forward-then-hang", "the server to send")
        (in_flight,) = [x for x in proxy.exchanges if x.behaviour == "forward-then-hang"]
    assert in_flight.upstream_status == 204 and in_flight.message_id is not None
    delivered = server.deliveries()
    assert delivered[in_flight.message_id] == 1  # sent ...
    assert queued(queue)[in_flight.message_id] == 1  # ... and still queued
    assert set(delivered.values()) == {1} and sum(delivered.values()) < 30

    flush(env)
    assert server.deliveries() == acknowledged
    assert queued(queue) == Counter()


# ---------------------------------------------------------------------------
# A retry is known by its bytes, not by its Message-ID alone
# ---------------------------------------------------------------------------


def test_reused_message_id_is_not_taken_for_a_retry(server: Server, tmp_path: Path) -> None:
    # Some scripts write a fixed Message-ID; each of their messages must still arrive.
    first, second = (
        f"From: a@example.com\nTo: b@example.com\nSubject: {subject}\n"
        f"Message-ID: <fixed@example.com>\n\n{subject}\n".encode()
        for subject in ("first", "second")
    )
    queue = tmp_path / "queue"
    with FaultProxy(server.port, ["forward-then-close"]) as proxy:
        env = gmail_env(server.envdir, queue, GMAIL_PROXY_URL=proxy.url)
        lost = run([GMAIL, "-odi", "-t", "-i"], env, first)  # sent, answer lost: queued
        assert lost.returncode == 0 and "queued as" in one_line(lost.stderr)
        # --no-queue: -odi would start a background flush that races with ours.
        sent = run([GMAIL, "--no-queue", "-t", "-i"], env, second)
        assert sent.returncode == 0 and sent.stderr == b""
        flush(env)  # the retry of the first
    assert server.deliveries() == Counter({"<fixed@example.com>": 2})
    assert sorted(server.subjects()) == ["first", "second"]
    assert queued(queue) == Counter()

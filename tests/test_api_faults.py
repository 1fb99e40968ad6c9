"""GmailProxy against a misbehaving proxy: the scenarios test_faults proves for gmail.

A FaultProxy on loopback stands between GmailProxy and a real `gaemail serve`.
Each failure is the documented error, worded as gmail words it, within the
timeout; with `queue=True` the message is kept in gmail's queue, and `gmail -q`
then delivers every message exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from faultproxy import FaultProxy
from gaemail import GmailProxy, TemporaryFailure
from queue_support import GMAIL, Server, gmail_env, queued, run, running_server

pytestmark = pytest.mark.e2e
TIMEOUT = 1.0  # seconds: long enough for loopback, short for the tests


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("api-faults") / "server") as s:
        yield s


def message(tag: str, n: int) -> bytes:
    return (
        f"From: sender@example.com\nTo: rcpt{n}@example.com\nSubject: {tag} {n}\n"
        f"Message-ID: <{tag}.{n}@example.com>\n\nbody {n}\n"
    ).encode()


def arrived(server: Server, tag: str) -> Counter[str]:
    return Counter({k: v for k, v in server.deliveries().items() if f"<{tag}." in k})


def flush(env: dict[str, str]) -> None:
    done = run([GMAIL, "-q"], env)
    assert done.returncode == 0, done.stderr


SCENARIOS = [
    # behaviour, words in the error, HTTP status, whether the server sent it
    ("status 500", "Internal Server Error", 500, False),
    ("status 503", "Service Unavailable", 503, False),
    ("status 200", "that URL is not a gaemail proxy", 200, False),
    ("hang", "timed out", None, False),
    ("forward-then-hang", "timed out", None, True),
    ("reset", "cannot reach the proxy", None, False),
    ("forward-then-reset", "cannot reach the proxy", None, True),
    ("forward-then-trickle", "timed out", None, True),
]


@pytest.mark.parametrize(("behaviour", "said", "status", "server_sent"), SCENARIOS)
def test_failure_is_reported_then_queued_then_delivered_once(
    server: Server,
    tmp_path: Path,
    tag: str,
    behaviour: str,
    said: str,
    status: int | None,
    server_sent: bool,
) -> None:
    queue = tmp_path / "queue"
    # A trickled answer comes a byte every 0.2 s: no read waits, the whole takes 30 s.
    with FaultProxy(server.port, [behaviour] * 2, delay=0.2) as proxy:
        env = gmail_env(server.envdir, queue, GMAIL_PROXY_URL=proxy.url)
        with GmailProxy(environ=env, timeout=TIMEOUT) as plain:
            started = time.monotonic()
            with pytest.raises(TemporaryFailure) as caught:
                plain.send_mail(message(tag, 0))
            assert time.monotonic() - started < 3 * TIMEOUT
        assert said in str(caught.value) and caught.value.status == status
        assert caught.value.temporary
        with GmailProxy(environ=env, timeout=TIMEOUT, queue=True) as queueing:
            assert queueing.send_mail(message(tag, 1)) is True
        proxy.wait_settled()
        assert queued(queue) == Counter({f"<{tag}.1@example.com>": 1})
        sent = Counter({f"<{tag}.{n}@example.com>": 1 for n in (0, 1)})
        assert arrived(server, tag) == (sent if server_sent else Counter())

        flush(env)  # through the proxy, which forwards now
    assert queued(queue) == Counter()
    expected = sent if server_sent else Counter({f"<{tag}.1@example.com>": 1})
    assert arrived(server, tag) == expected


def test_after_a_failure_the_same_proxy_object_sends_again(
    server: Server, tmp_path: Path, tag: str
) -> None:
    with FaultProxy(server.port, ["reset", "forward", "forward"]) as proxy:
        env = gmail_env(server.envdir, tmp_path / "queue", GMAIL_PROXY_URL=proxy.url)
        with GmailProxy(environ=env, timeout=TIMEOUT) as client:
            with pytest.raises(TemporaryFailure, match="Connection reset by peer"):
                client.send_mail(message(tag, 0))
            assert client.send_mail(message(tag, 0)) is True  # the retry: sent once
            assert client.send_mail(message(tag, 1)) is True
    assert arrived(server, tag) == Counter({f"<{tag}.{n}@example.com>": 1 for n in (0, 1)})


def test_proxy_down_with_the_queue_loses_nothing(tmp_path: Path, tag: str) -> None:
    from queue_support import free_port, start_server, stop

    port = free_port()
    state = tmp_path / "server"
    up = start_server(state, port)  # once, to create the envdir with this port
    stop(up)
    env = gmail_env(up.envdir, tmp_path / "queue")
    with GmailProxy(environ=env, timeout=TIMEOUT, queue=True) as client:
        assert client.send_mail(message(tag, 0)) is True
    client = GmailProxy(environ=env, timeout=TIMEOUT)
    with client, pytest.raises(TemporaryFailure, match="Connection refused"):
        client.send_mail(message(tag, 1))
    again = start_server(state, port)
    try:
        flush(env)
        assert arrived(again, tag) == Counter({f"<{tag}.0@example.com>": 1})
    finally:
        stop(again)

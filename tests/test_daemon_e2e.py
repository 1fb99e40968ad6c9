"""The queue runs itself: `gaemail queue run --daemon` against a real `gaemail serve`.

Every test counts the outbox by Message-ID: each message acknowledged with exit
0 arrives exactly once, with no manual command.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from faultproxy import FaultProxy
from queue_support import (
    GAEMAIL,
    GMAIL,
    WAIT,
    attempted_and_unlocked,
    gmail_env,
    message,
    message_id,
    queued,
    run,
    start_server,
    stop,
    wait_for,
)
from syslog_sink import mail_log

pytestmark = pytest.mark.e2e
RETRY = "1s,2s"  # GMAIL_RETRY for the tests: the schedule of a queue, in seconds


@contextmanager
def deliverer(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """The daemon, as the service runs it; stopped with SIGTERM, which it must obey."""
    process = subprocess.Popen(
        [GAEMAIL, "queue", "run", "--daemon"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        mail_log().wait_for(f"deliverer started on {env['GMAIL_QUEUE_DIR']}")
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=WAIT)
            pytest.fail("the deliverer did not stop on SIGTERM")
        assert process.returncode == 0, err


def queued_ids(queue: Path) -> list[str]:
    return sorted(p.name for p in (queue / "new").iterdir())


def queue_only(env: dict[str, str], numbers: range) -> Counter[str]:
    for n in numbers:
        done = run([GMAIL, "-t", "-i", "-odq"], env, message(n))
        assert done.returncode == 0, done.stderr
    return Counter(message_id(n) for n in numbers)


def test_new_mail_goes_out_as_it_arrives(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server")
    try:
        queue = tmp_path / "queue"
        env = gmail_env(server.envdir, queue, GMAIL_RETRY=RETRY)
        assert run([GAEMAIL, "queue", "list"], env).returncode != 0  # no such queue yet
        queue.mkdir()
        with deliverer(env):
            # The daemon sleeps until woken: without the trigger it would wait minutes.
            sent = queue_only(env, range(3))
            wait_for(lambda: server.deliveries() == sent, "the three messages")
            # The proxy answers before the deliverer removes the file: wait for that too.
            wait_for(lambda: queued(queue) == Counter(), "the queue to empty")
            assert server.deliveries() == sent
    finally:
        stop(server)


def test_proxy_down_then_back_each_message_once_without_a_command(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server")
    queue = tmp_path / "queue"
    queue.mkdir()
    try:
        # The proxy is down: every connection to its URL is reset.
        with FaultProxy(server.port, default="reset") as proxy:
            env = gmail_env(
                server.envdir,
                queue,
                GMAIL_RETRY=RETRY,
                GMAIL_TIMEOUT="2",
                GMAIL_PROXY_URL=proxy.url,
            )
            with deliverer(env):
                acknowledged = queue_only(env, range(5))
                wait_for(lambda: attempted_and_unlocked(queue), "a failed attempt at each message")
                idents = queued_ids(queue)
                assert queued(queue) == acknowledged
                assert server.deliveries() == Counter()
                proxy.default = "forward"  # back, on the same URL
                wait_for(lambda: server.deliveries() == acknowledged, "each message, once")
                # The proxy answers before the deliverer removes the file: wait for that too.
                wait_for(lambda: queued(queue) == Counter(), "the queue to empty")
                assert server.deliveries() == acknowledged
    finally:
        stop(server)
    for ident in idents:
        assert mail_log().lines(f"{ident}: status=deferred")
        assert len(mail_log().lines(f"{ident}: status=sent")) == 1


# What the proxy says of a key it does not know, in each protocol.
UNKNOWN_KEY = {"v1": b"Signature doesn't match", "v2": b"names a key this proxy knows"}


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_wrong_key_holds_then_the_fixed_key_sends_once(tmp_path: Path, protocol: str) -> None:
    server = start_server(tmp_path / "server")
    try:
        envdir = tmp_path / "envdir"
        shutil.copytree(server.envdir, envdir)
        right_key = (envdir / "GMAIL_SECRET_KEY").read_text()
        (envdir / "GMAIL_SECRET_KEY").write_text("a-rotated-away-key\n")
        queue = tmp_path / "queue"
        env = gmail_env(envdir, queue, GMAIL_RETRY=RETRY, GMAIL_PROTOCOL=protocol)
        done = run([GMAIL, "-odi", "-i", "rcpt7@example.com"], env, message(7))
        assert done.returncode == 0, done.stderr
        assert b"held until the setup is fixed" in done.stderr
        (ident,) = queued_ids(queue)
        with deliverer(env):
            mail_log().wait_for(f"{ident}: status=held", count=2)  # loud, every attempt
            table = run([GAEMAIL, "queue", "list"], env)
            assert b"setup" in table.stdout and UNKNOWN_KEY[protocol] in table.stdout
            failed = run([GAEMAIL, "queue", "list", "--failed"], env)
            assert b"No failed messages" in failed.stdout
            assert server.deliveries() == Counter()
            (envdir / "GMAIL_SECRET_KEY").write_text(right_key)  # the operator fixes it
            wait_for(lambda: server.deliveries() == Counter({message_id(7): 1}), "the send")
            # The proxy answers before the deliverer removes the file: wait for that too.
            wait_for(lambda: queued(queue) == Counter(), "the queue to empty")
            assert server.deliveries() == Counter({message_id(7): 1})
    finally:
        stop(server)

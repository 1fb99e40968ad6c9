"""The spool's guarantees, in-process: durability layout, exclusive claims, backoff."""

from __future__ import annotations

import os
import signal
import socket
import stat
from pathlib import Path

import pytest

from gaemail.errors import TemporaryFailure
from gaemail.message.compose import Outgoing
from gaemail.message.envelope import Envelope
from gaemail.queue.delivery import BUSY, DEFERRED, FAILED, NOT_DUE, SENT, Deliverer
from gaemail.queue.journal import Journal
from gaemail.queue.spool import Entry, Schedule, Spool, State, default_queue_dir

MSG = b"From: s@example.com\nTo: a@example.com\nMessage-ID: <m1@example.com>\n\nhi\n"


OUTGOING = Outgoing(MSG, Envelope(("a@example.com",), "s@example.com"), "<m1@example.com>", False)


def entry(created: float = 1000.0) -> Entry:
    return Entry.of(OUTGOING, created)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(str(tmp_path / "queue"))


def test_enqueue_writes_complete_files_only(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    assert spool.ids() == [ident]
    assert os.listdir(spool.dir("tmp")) == []
    found, data = spool.read(ident)
    assert data == MSG and found.envelope.recipients == ("a@example.com",)
    assert found == entry() and spool.entry(ident) == entry()
    mode = stat.S_IMODE(os.stat(os.path.join(spool.dir("new"), ident)).st_mode)
    assert mode == 0o640


def test_tmp_files_are_never_listed(spool: Spool) -> None:
    spool.ensure()
    Path(spool.dir("tmp"), "partial").write_bytes(b"half a mess")
    assert spool.ids() == []


def test_a_claimed_message_cannot_be_claimed_again(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    with spool.claim(ident) as first:
        assert first is not None
        with spool.claim(ident) as second:
            assert second is None


def test_a_sent_message_is_gone_for_a_flusher_that_opened_it_before(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    with spool.claim(ident) as claim:
        assert claim is not None
        claim.sent()
    with spool.claim(ident) as late:
        assert late is None
    assert spool.ids() == []


def test_lock_of_a_killed_process_is_released(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the "flusher" that dies holding the lock
        with spool.claim(ident):
            os.write(ready_w, b"x")
            signal.pause()
        os._exit(0)
    os.read(ready_r, 1)
    with spool.claim(ident) as claim:
        assert claim is None  # held by the child
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with spool.claim(ident) as claim:
        assert claim is not None


def test_backoff_doubles_and_is_capped() -> None:
    state = State()
    delays = []
    for _ in range(10):
        state = state.deferred(0.0, "down", Schedule(), forced=False)
        delays.append(state.next_attempt)
    assert delays[:4] == [60.0, 120.0, 240.0, 480.0]
    assert delays[-1] == 3600.0
    assert state.attempts == 10 and state.last_error == "down"


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []


def deliverer(
    spool: Spool,
    outcomes: list[Exception | None],
    now: float = 2000.0,
    sent: list[tuple[bytes, bool]] | None = None,
) -> Deliverer:
    sent = sent if sent is not None else []

    def send(data: bytes, envelope: Envelope, fix: bool) -> None:
        sent.append((data, fix))
        result = outcomes.pop(0)
        if result is not None:
            raise result

    return Deliverer(
        spool, send, Journal("test", {"GMAIL_SYSLOG_SOCKET": "/nonexistent"}), lambda: now
    )


def test_temporary_failure_defers_with_backoff_then_respects_it(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    d = deliverer(spool, [TemporaryFailure("down", 503)])
    assert d.attempt(ident, force=False) == DEFERRED
    state = spool.state(ident)
    assert (state.attempts, state.next_attempt, state.last_error) == (1, 2060.0, "down (HTTP 503)")
    assert d.attempt(ident, force=False) == NOT_DUE
    d2 = deliverer(spool, [None])
    assert d2.attempt(ident, force=True) == SENT
    assert spool.ids() == []


def test_permanent_refusal_fails_and_bounces_to_sender(spool: Spool) -> None:
    from gaemail.errors import MessageRejected

    ident = spool.enqueue(OUTGOING, 1000.0)
    sent: list[tuple[bytes, bool]] = []
    d = deliverer(spool, [MessageRejected("Unauthorized sender", 400), None], sent=sent)
    assert d.attempt(ident, force=True) == FAILED
    assert spool.ids() == [] and spool.failed_ids() == [ident]
    assert spool.state(ident, "failed").last_error == "Unauthorized sender (HTTP 400)"
    bounce, fix_sender = sent[1]
    assert fix_sender
    assert b"To: s@example.com\n" in bounce and b"Auto-Submitted: auto-replied" in bounce
    assert b"Unauthorized sender" in bounce


def test_expired_message_fails_without_sending(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 0.0)
    sent: list[tuple[bytes, bool]] = []
    d = deliverer(spool, [None], now=6 * 86400.0, sent=sent)
    assert d.attempt(ident, force=True) == FAILED
    assert len(sent) == 1 and sent[0][0].startswith(b"To: s@example.com")  # only the bounce


def test_busy_when_another_holds_it(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    with spool.claim(ident):
        assert deliverer(spool, []).attempt(ident, force=True) == BUSY


def test_journal_writes_one_syslog_line(tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        Journal("gmail", {"GMAIL_SYSLOG_SOCKET": path}).record("sent", "ID1", entry())
        packet = server.recv(65536).decode()
    assert packet.startswith("<22>")  # facility mail, severity info
    assert "gmail[" in packet
    assert (
        "ID1: status=sent msgid=<m1@example.com> from=<s@example.com> to=<a@example.com>" in packet
    )


def test_users_queue_in_the_shared_drop_box_once_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 33)  # www-data: no home of its own
    shared = tmp_path / "spool"
    environ = {"HOME": str(tmp_path / "home")}
    own = str(tmp_path / "home" / ".local" / "state" / "gaemail" / "queue")
    assert default_queue_dir(environ, str(shared)) == own
    Spool(str(shared)).ensure()
    assert default_queue_dir(environ, str(shared)) == str(shared)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_queue_dir(environ, str(tmp_path / "absent")) == str(tmp_path / "absent")

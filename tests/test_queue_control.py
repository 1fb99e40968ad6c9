"""Holds, setup problems, retries and the schedule, in-process on a real spool."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from gaemail.config import Settings
from gaemail.errors import (
    ConfigurationError,
    LocalIOError,
    MessageRejected,
    ProxyURLError,
    SignatureRejected,
    TemporaryFailure,
)
from gaemail.message.compose import Outgoing
from gaemail.message.envelope import Envelope
from gaemail.queue import control, daemon, listing
from gaemail.queue.delivery import DEFERRED, FAILED, HELD, NOT_DUE, SENT, WAITING, Deliverer
from gaemail.queue.journal import Journal
from gaemail.queue.spool import Schedule, Spool, open_spool
from syslog_sink import mail_log

MSG = b"From: s@example.com\nTo: a@example.com\nMessage-ID: <m1@example.com>\n\nhi\n"
OUTGOING = Outgoing(MSG, Envelope(("a@example.com",), "s@example.com"), "<m1@example.com>", False)
SCHEDULE = Schedule(first=60.0, maximum=3600.0, max_age=5 * 86400.0)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(str(tmp_path / "queue"))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def deliverer(spool: Spool, outcomes: list[Exception | None], clock: Clock) -> Deliverer:
    def send(data: bytes, envelope: Envelope, fix: bool) -> None:
        result = outcomes.pop(0)
        if result is not None:
            raise result

    journal = Journal("test", {"GMAIL_SYSLOG_SOCKET": str(mail_log().path)})
    return Deliverer(spool, send, journal, clock, SCHEDULE)


@pytest.mark.parametrize(
    "problem",
    [
        SignatureRejected("Signature doesn't match", 400),
        ConfigurationError("no signing secret configured"),
        ProxyURLError("that URL is not a gaemail proxy: check GMAIL_PROXY_URL", 404),
    ],
    ids=["unknown key", "no secret", "not a proxy"],
)
def test_a_setup_problem_holds_the_message_until_it_is_fixed(
    spool: Spool, problem: Exception
) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    clock = Clock(2000.0)
    d = deliverer(spool, [problem, problem, None], clock)
    assert d.attempt(ident, force=False) == WAITING
    state = spool.state(ident)
    assert state.setup and not state.permanent and state.status() == "setup"
    assert spool.failed_ids() == [] and spool.ids() == [ident]
    assert "setup" in listing.listing(spool)
    # Long past the maximum age it still waits, and still no bounce is sent.
    clock.now = 1000.0 + 10 * 86400.0
    assert d.attempt(ident, force=False) == WAITING
    assert spool.failed_ids() == []
    clock.now += 3600.0
    assert d.attempt(ident, force=False) == SENT  # the key was fixed meanwhile
    assert spool.ids() == []


def test_a_setup_hold_is_logged_loudly_on_every_attempt(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    problem = SignatureRejected("Signature doesn't match", 400)
    d = deliverer(spool, [problem, problem], Clock(2000.0))
    d.attempt(ident, force=True)
    d.attempt(ident, force=True)
    lines = mail_log().wait_for(f"{ident}: status=held", count=2)
    assert all(line.startswith("<19>") for line in lines)  # facility mail, LOG_ERR
    assert all("setup problem" in line for line in lines)


def test_a_manual_flush_does_not_push_the_schedule_out(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    clock = Clock(2000.0)
    down = TemporaryFailure("down", 503)
    d = deliverer(spool, [down, down, down, down], clock)
    assert d.attempt(ident, force=False) == DEFERRED  # scheduled: next in 60 s
    assert spool.state(ident).next_attempt == 2060.0
    clock.now = 2010.0
    assert d.attempt(ident, force=True) == DEFERRED  # gmail -q, before it was due
    assert d.attempt(ident, force=True) == DEFERRED
    state = spool.state(ident)
    assert (state.attempts, state.next_attempt) == (3, 2060.0)
    clock.now = 2060.0
    assert d.attempt(ident, force=False) == DEFERRED  # the second scheduled one: 120 s
    assert spool.state(ident).next_attempt == 2180.0


def test_held_messages_are_never_attempted_until_released(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    control.hold(spool, ident)
    d = deliverer(spool, [None], Clock(2000.0))
    assert d.attempt(ident, force=True) == HELD
    assert "held" in listing.listing(spool)
    control.release(spool, ident)
    assert d.attempt(ident, force=False) == SENT


def test_retry_brings_a_failed_message_back_due_now(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    clock = Clock(2000.0)
    d = deliverer(spool, [MessageRejected("Bad attachment", 400), None, None], clock)
    assert d.attempt(ident, force=False) == FAILED
    assert spool.failed_ids() == [ident] and spool.ids() == []
    assert "No failed messages" not in listing.listing(spool, failed=True)
    assert control.retry(spool, ident) == "failed"
    assert spool.failed_ids() == [] and spool.ids() == [ident]
    assert spool.state(ident).next_attempt == 0.0
    assert d.attempt(ident, force=False) == SENT


def test_retry_of_a_deferred_message_makes_it_due(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    d = deliverer(spool, [TemporaryFailure("down", 503)], Clock(2000.0))
    d.attempt(ident, force=False)
    assert d.attempt(ident, force=False) == NOT_DUE
    assert control.retry(spool, ident) == "new"
    assert spool.state(ident).next_attempt == 0.0


def test_changing_a_message_being_delivered_is_refused(spool: Spool) -> None:
    ident = spool.enqueue(OUTGOING, 1000.0)
    with spool.claim(ident), pytest.raises(LocalIOError, match="being delivered"):
        control.hold(spool, ident)
    with pytest.raises(LocalIOError, match="no queued message"):
        control.delete(spool, "nosuchid")


def test_listing_reads_only_the_entry_line(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    spool.enqueue(OUTGOING, 1000.0)

    def no_full_reads(*args: object, **kwargs: object) -> None:
        raise AssertionError("the listing read a whole message")

    monkeypatch.setattr(Spool, "read", no_full_reads)
    table = listing.listing(spool)
    assert "<s@example.com>" in table and "a@example.com" in table and "1 message queued" in table


def test_a_named_queue_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    settings = Settings({"queue_dir": str(tmp_path / "typo")}, {})
    with pytest.raises(ConfigurationError, match="does not exist"):
        open_spool(settings, {}, must_exist=True)
    assert open_spool(settings, {}).path == str(tmp_path / "typo")  # queueing may create it


def test_a_queue_that_cannot_be_created_says_where_and_what_to_do(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(LocalIOError, match=r"GMAIL_QUEUE_DIR.*gaemail queue init"):
        Spool(str(blocked / "queue")).enqueue(OUTGOING, 1.0)


@pytest.mark.parametrize(
    ("value", "waits"),
    [("1m,1h", (60.0, 3600.0)), ("30", (30.0, 30.0)), ("2s,1d", (2.0, 86400.0))],
)
def test_retry_schedule_setting(value: str, waits: tuple[float, float]) -> None:
    assert Settings({"retry": value}, {}).retry_schedule() == waits


@pytest.mark.parametrize("value", ["0,1h", "1h,1m", "soon", "1m,x", "nan"])
def test_a_bad_retry_schedule_names_its_source(value: str) -> None:
    with pytest.raises(ConfigurationError, match="GMAIL_RETRY"):
        Settings({}, {"GMAIL_RETRY": value}).retry_schedule()


def test_max_age_setting() -> None:
    assert Settings({}, {"GMAIL_MAX_AGE": "12h"}).max_age() == 12 * 3600.0
    with pytest.raises(ConfigurationError, match="maximum age"):
        Settings({}, {"GMAIL_MAX_AGE": "-1d"}).max_age()


def test_next_due_skips_held_messages(spool: Spool) -> None:
    assert daemon.next_due(spool, 0.0) is None
    first = spool.enqueue(OUTGOING, 1000.0)
    deliverer(spool, [TemporaryFailure("down", 503)], Clock(2000.0)).attempt(first, force=False)
    assert daemon.next_due(spool, 2000.0) == 60.0
    control.hold(spool, first)
    assert daemon.next_due(spool, 2000.0) is None


def test_no_syslog_is_said_once_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Journal, "_told_no_syslog", False)
    err = io.StringIO()
    journal = Journal("gmail", {"GMAIL_SYSLOG_SOCKET": str(tmp_path / "none")}, err)
    journal.write(6, "first line")
    journal.write(6, "second line")
    lines = err.getvalue().splitlines()
    assert len(lines) == 1
    assert "cannot write the mail log" in lines[0] and "first line" in lines[0]
    assert "GMAIL_SYSLOG_SOCKET" in lines[0]


def test_log_fields_escape_control_characters_and_are_capped() -> None:
    from gaemail.queue.journal import MAX_FIELD, _clean

    assert _clean("<a\x00b\x1bc@x>") == "<a\\x00b\\x1bc@x>"
    assert _clean("a\r\nINFO sent") == "a INFO sent"
    assert len(_clean("x" * 5000)) == MAX_FIELD + 3


def test_enqueue_wakes_a_listening_daemon(spool: Spool) -> None:
    spool.ensure()
    with daemon.trigger(spool) as fd:
        assert fd is not None
        spool.enqueue(OUTGOING, 1.0)
        assert os.read(fd, 10) == b"\n"


def test_a_syslog_that_stops_reading_never_hangs_the_mail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import threading

    monkeypatch.setattr(Journal, "_told_no_syslog", False)
    path = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stuck:
        stuck.bind(path)  # bound, never read: its queue fills
        err = io.StringIO()
        journal = Journal("gmail", {"GMAIL_SYSLOG_SOCKET": path}, err)
        writer = threading.Thread(
            target=lambda: [journal.write(6, "x" * 1000) for _ in range(500)], daemon=True
        )
        writer.start()
        writer.join(30)
        assert not writer.is_alive(), "a full syslog queue blocked the mail log"
    assert "cannot write the mail log" in err.getvalue()

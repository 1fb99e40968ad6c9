"""`gaemail` in-process through click's CliRunner: each subcommand and its exit codes.

`install-links` has its own file (test_admin_install_links.py); `serve` is driven
as a real process by the e2e suites.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conftest import Gmail, MailLog, command_environment
from gaemail.admin import gaemail
from queue_support import Server, running_server

MESSAGE = b"From: sender@example.com\nTo: rcpt@example.org\nSubject: queued\n\nbody\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("serve")) as server:
        yield server


class Admin:
    """admin(*args, **environ): one in-process run of `gaemail`."""

    def __init__(self, home: Path, log: MailLog) -> None:
        self.home, self.log = home, log

    def __call__(self, *args: str, **environ: str) -> Result:
        env = command_environment(self.home, self.log, **environ)
        return CliRunner().invoke(
            gaemail, list(args), env=env, prog_name="gaemail", catch_exceptions=False
        )


@pytest.fixture
def admin(tmp_path: Path, mail_log: MailLog) -> Admin:
    (tmp_path / "queue").mkdir()  # the queue GMAIL_QUEUE_DIR names exists, empty
    return Admin(tmp_path, mail_log)


@pytest.mark.parametrize("verb", ["list", "hold", "retry"])
def test_a_named_queue_directory_that_does_not_exist_is_an_error(
    admin: Admin, tmp_path: Path, verb: str
) -> None:
    typo = tmp_path / "queeu"
    args = ["queue", verb] + ([] if verb == "list" else ["--all"])
    done = admin(*args, GMAIL_QUEUE_DIR=str(typo))
    assert done.exit_code == 78
    assert done.stderr.splitlines() == [
        f"gaemail: the queue directory {typo} (from environment GMAIL_QUEUE_DIR) does not exist"
    ]


def queue_one(gmail: Gmail, message: bytes = MESSAGE) -> str:
    done = gmail("-odq", "-t", "-i", input=message)
    assert done.exit_code == 0, done.stderr
    return gmail.queued()[-1]


def test_version_and_help(admin: Admin) -> None:
    assert re.match(r"gaemail, version \S+", admin("--version").stdout)
    for flag in ("-h", "--help"):
        done = admin(flag)
        assert done.exit_code == 0
        assert "queue" in done.stdout and "config" in done.stdout


def test_unknown_command_is_one_line_and_exits_64(admin: Admin) -> None:
    done = admin("frobnicate")
    assert done.exit_code == 64
    assert done.stderr.splitlines() == ["gaemail: No such command 'frobnicate'."]


def test_config_shows_where_each_setting_comes_from_and_never_the_secret(
    admin: Admin, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("very-secret-key\n")
    done = admin("config", "--url", "http://127.0.0.1:9/", "--secret-file", str(secret))
    assert done.exit_code == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert "http://127.0.0.1:9/  [--url]" in rows["GMAIL_PROXY_URL"]
    assert "(hidden, 15 characters)" in rows["GMAIL_SECRET_KEY"]
    assert "very-secret-key" not in done.stdout
    assert "[default]" in rows["GMAIL_TIMEOUT"]
    assert "(not set)" in rows["GMAIL_FROM"]


def test_config_reports_an_unreadable_setting_in_its_row(admin: Admin, tmp_path: Path) -> None:
    done = admin("config", "--secret-file", str(tmp_path / "missing"))
    assert done.exit_code == 0
    row = next(line for line in done.stdout.splitlines() if line.startswith("GMAIL_SECRET_KEY"))
    assert "(error)" in row and "missing" in row


def test_queue_list_show_delete(admin: Admin, gmail: Gmail) -> None:
    assert "Mail queue is empty." in admin("queue", "list").stdout
    ident = queue_one(gmail)
    listed = admin("queue", "list")
    assert listed.exit_code == 0
    assert ident in listed.stdout and "rcpt@example.org" in listed.stdout
    shown = admin("queue", "show", ident)
    assert shown.exit_code == 0, shown.stderr
    assert f"Queue-Id: {ident}" in shown.stdout
    assert "Recipients: rcpt@example.org" in shown.stdout
    assert "Subject: queued" in shown.stdout and shown.stdout.endswith("body\n")
    deleted = admin("queue", "delete", ident)
    assert (deleted.exit_code, deleted.stdout) == (0, f"deleted {ident}\n")
    assert gmail.queued() == []


@pytest.mark.parametrize("verb", ["show", "delete"])
def test_queue_show_or_delete_of_no_such_message_exits_74(admin: Admin, verb: str) -> None:
    done = admin("queue", verb, "nope")
    assert done.exit_code == 74
    assert done.stderr.splitlines() == ["gaemail: no queued message nope"]


def test_queue_show_without_an_id_is_a_usage_error(admin: Admin) -> None:
    done = admin("queue", "show")
    assert done.exit_code == 64
    assert done.stderr.splitlines() == ["gaemail: Missing argument 'IDENT'."]


def test_queue_flush_sends_everything(admin: Admin, gmail: Gmail, server: Server) -> None:
    queue_one(gmail)
    queue_one(gmail, MESSAGE.replace(b"queued", b"second"))
    done = admin("queue", "flush", GMAIL_ENVDIR=str(server.envdir))
    assert done.exit_code == 0, done.stderr
    assert done.stderr == "2 queued messages: 2 sent\n"
    assert gmail.queued() == []
    assert {"queued", "second"} <= set(server.subjects())


def test_queue_run_is_quiet_and_sends_what_is_due(
    admin: Admin, gmail: Gmail, server: Server
) -> None:
    queue_one(gmail, MESSAGE.replace(b"queued", b"due"))
    done = admin("queue", "run", GMAIL_ENVDIR=str(server.envdir))
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    assert gmail.queued() == []
    assert "due" in server.subjects()


def test_queue_flush_to_no_proxy_defers_and_exits_0(admin: Admin, gmail: Gmail) -> None:
    queue_one(gmail)
    done = admin("queue", "flush", "--url", "http://127.0.0.1:9/", GMAIL_SECRET_KEY="k")
    assert (done.exit_code, done.stderr) == (0, "1 queued message: 1 deferred\n")
    assert len(gmail.queued()) == 1


def test_queue_flush_without_a_secret_exits_78(admin: Admin, gmail: Gmail) -> None:
    queue_one(gmail)
    done = admin("queue", "flush", "--url", "http://127.0.0.1:9/")
    assert done.exit_code == 78
    (line,) = done.stderr.splitlines()
    assert line.startswith("gaemail: no shared signing secret configured")
    assert len(gmail.queued()) == 1


def test_queue_init_in_an_impossible_place_is_one_line(admin: Admin) -> None:
    done = admin("queue", "init", "--queue-dir", "/proc/nope", "--user", "root")
    assert done.exit_code == 74
    assert done.stderr.splitlines() == [
        "gaemail: cannot set up the queue: /proc/nope: No such file or directory"
    ]
    assert "Traceback" not in done.output


def test_queue_init_with_an_unknown_user_exits_64(admin: Admin, tmp_path: Path) -> None:
    done = admin("queue", "init", "--queue-dir", str(tmp_path / "q"), "--user", "no-such-user-x")
    assert done.exit_code == 64
    assert "no user 'no-such-user-x'" in done.stderr


def test_queue_init_makes_a_drop_box(admin: Admin, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("queue init changes owners: run as root")
    spool = tmp_path / "spool"
    done = admin("queue", "init", "--queue-dir", str(spool), "--user", "nobody")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith(f"queue ready at {spool} (deliverer nobody")
    assert (spool / "new").stat().st_mode & 0o7777 == 0o3733
    assert (spool / "failed").stat().st_mode & 0o7777 == 0o2770


def test_unexpected_error_exits_75_not_1(
    admin: Admin, monkeypatch: pytest.MonkeyPatch, mail_log: MailLog
) -> None:
    from gaemail.queue import listing

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("listing broke")

    monkeypatch.setattr(listing, "listing", broken)
    done = admin("queue", "list")
    assert done.exit_code == 75
    assert done.stderr.splitlines() == [
        "gaemail: internal error: RuntimeError: listing broke; "
        "the traceback is in the mail log; try again"
    ]
    (logged,) = mail_log.lines()
    assert "RuntimeError: listing broke" in logged and "Traceback" in logged


@pytest.mark.parametrize("args", [[], ["queue"]])
def test_a_group_alone_shows_its_help_and_exits_64(admin: Admin, args: list[str]) -> None:
    done = admin(*args)
    assert done.exit_code == 64
    assert done.stderr.startswith(f"Usage: gaemail {' '.join([*args, ''])}[OPTIONS] COMMAND")
    assert "\nCommands:\n" in done.stderr

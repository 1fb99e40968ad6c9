"""`gmail` in-process through click's CliRunner: its modes, exit codes and error lines.

The entry point of the console script is the click command itself; these tests
drive it as the script does, with a real `gaemail serve` on loopback where a
proxy is needed.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from conftest import Gmail
from gaemail import cli
from queue_support import Server, running_server

MESSAGE = b"From: sender@example.com\nTo: rcpt@example.org\nSubject: hello\n\nbody\n"
REFUSED = (
    b"From: sender@example.com\nTo: a@example.com\nSubject: bad\n"
    b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n\n--B\n"
    b"Content-Type: text/plain\n\nhi\n--B\nContent-Type: application/octet-stream\n"
    b"Content-Disposition: attachment; filename=evil.exe\n\nMZ\n--B--\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("serve")) as server:
        yield server


@pytest.fixture
def closed_url() -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


# -- the mode table -------------------------------------------------------------


def test_queue_only_queues_and_says_nothing(gmail: Gmail) -> None:
    done = gmail("-odq", "-t", "-i", input=MESSAGE)
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    assert len(gmail.queued()) == 1


def test_sendmail_style_without_a_proxy_queues_in_the_foreground(gmail: Gmail) -> None:
    # Background is the sendmail default; with no URL nobody can deliver, so no child.
    done = gmail("-t", "-i", "-v", input=MESSAGE)
    assert done.exit_code == 0
    assert re.fullmatch(r"gmail: queued <[^>]+> as \S+", one_line(done.stderr))
    assert len(gmail.queued()) == 1


@pytest.mark.parametrize("program_args", [("mailq", ()), ("gmail", ("-bp",))])
def test_mailq_and_bp_list_the_queue(gmail: Gmail, program_args: tuple[str, tuple[str]]) -> None:
    program, args = program_args
    assert gmail("-odq", "-i", "a@example.com", input=MESSAGE).exit_code == 0
    done = gmail(*args, program=program)
    assert done.exit_code == 0, done.stderr
    assert gmail.queued()[0] in done.stdout
    assert "-- 1 message queued" in done.stdout
    assert "No failed messages." in gmail(*args, "--failed", program=program).stdout


def test_failed_without_a_listing_is_a_usage_error(gmail: Gmail) -> None:
    done = gmail("--failed", "a@example.com")
    assert done.exit_code == 64
    assert "--failed goes with -bp or mailq" in one_line(done.stderr)


def test_flush_of_an_empty_queue(gmail: Gmail) -> None:
    for args in (["-q"], ["-q15m"], ["-qf", "-v"]):
        done = gmail(*args)
        assert done.exit_code == 0, done.stderr
    assert one_line(done.stderr) == "gmail: the queue is empty"


def test_no_queue_sends_now(gmail: Gmail, server: Server) -> None:
    done = gmail("-t", "-i", "--no-queue", "-v", input=MESSAGE, GMAIL_ENVDIR=str(server.envdir))
    assert done.exit_code == 0, done.stderr
    assert re.fullmatch(r"gmail: sent <[^>]+> to rcpt@example.org", one_line(done.stderr))
    assert gmail.queued() == []


def test_mail_style_sends_interactively(gmail: Gmail, server: Server) -> None:
    done = gmail("-s", "Grüße", "a@example.com", input=b"body\n", GMAIL_ENVDIR=str(server.envdir))
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    subjects = [str(make_header(decode_header(s))) for s in server.subjects()]
    assert "Grüße" in subjects


def test_no_queue_and_unreachable_exits_75(gmail: Gmail, closed_url: str) -> None:
    done = gmail(
        "--no-queue", "-i", "a@example.com", input=MESSAGE,
        GMAIL_PROXY_URL=closed_url, GMAIL_SECRET_KEY="k",
    )  # fmt: skip
    assert done.exit_code == 75
    assert one_line(done.stderr).startswith("gmail: ")
    assert gmail.queued() == []


def test_interactive_and_unreachable_queues_and_exits_0(gmail: Gmail, closed_url: str) -> None:
    done = gmail(
        "-s", "s", "a@example.com", input=b"body\n",
        GMAIL_PROXY_URL=closed_url, GMAIL_SECRET_KEY="k",
    )  # fmt: skip
    assert done.exit_code == 0
    assert re.search(r"; queued as \S+ for a later attempt$", one_line(done.stderr))
    assert len(gmail.queued()) == 1


# -- exit codes and their lines ---------------------------------------------------


def test_refused_message_exits_65(gmail: Gmail, server: Server) -> None:
    done = gmail("-odi", "-t", "-i", input=REFUSED, GMAIL_ENVDIR=str(server.envdir))
    assert done.exit_code == 65, done.stderr
    assert "(HTTP 400)" in one_line(done.stderr)
    assert gmail.queued() == []


def test_wrong_secret_exits_77(gmail: Gmail, server: Server) -> None:
    url = (server.envdir / "GMAIL_PROXY_URL").read_text().strip()
    done = gmail(
        "--no-queue", "-t", "-i", input=MESSAGE, GMAIL_PROXY_URL=url, GMAIL_SECRET_KEY="wrong"
    )
    assert done.exit_code == 77
    assert "HTTP 403" in one_line(done.stderr) or "ignature" in done.stderr


def test_missing_url_exits_78(gmail: Gmail) -> None:
    done = gmail("--no-queue", "-t", "-i", input=MESSAGE)
    assert done.exit_code == 78
    assert "GMAIL_PROXY_URL" in one_line(done.stderr)


def test_unqualified_recipient_exits_67(gmail: Gmail) -> None:
    done = gmail("-FCronDaemon", "-i", "-B8BITMIME", "-oem", "nobody", input=MESSAGE)
    assert done.exit_code == 67
    assert "'nobody' has no domain" in one_line(done.stderr)


def test_message_without_recipients_exits_65(gmail: Gmail) -> None:
    done = gmail("-t", "-i", "-odq", input=b"Subject: nobody\n\nbody\n")
    assert done.exit_code == 65
    assert one_line(done.stderr).startswith("gmail: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-Z", "a@x.org"], "gmail: unknown option -Z; see gmail --help"),
        (["--bogus"], "gmail: unknown option --bogus; see gmail --help"),
        (["--sendmail-mode", "p"], "gmail: unknown option --sendmail-mode; see gmail --help"),
        (["-s"], "gmail: option -s needs a value"),
        (["--url"], "gmail: --url needs a value"),
        (["--help=yes"], "gmail: --help takes no value"),
        (["-s", "x"], "gmail: no recipient given; usage: gmail [-s SUBJECT] ADDR... < body"),
        (["-t", "-s", "subject"], "belongs to the mail(1) style"),
        (["-s", "one\nBcc: evil@x.org", "a@x.org"], "gmail: the value of -s contains a line break"),
        (["-bs"], "gmail: -bs (SMTP on standard input) is not provided by gmail"),
        (
            ["-bz"],
            "gmail: unknown mode -bz; gmail provides -bm (send), -bp (list the queue)"
            " and -bv (verify addresses)",
        ),
        (["-odz", "a@x.org"], "gmail: unknown delivery mode -odz; use -odi, -odb or -odq"),
        (["-h"], "gmail: -h is sendmail's hop count and needs a value; for help, use --help"),
    ],
)
def test_usage_errors_are_one_line_and_exit_64(gmail: Gmail, args: list[str], message: str) -> None:
    done = gmail(*args)
    assert done.exit_code == 64
    assert message in one_line(done.stderr)
    assert done.stdout == ""


def test_h_with_a_value_is_the_hop_count(gmail: Gmail) -> None:
    assert gmail("-h", "17", "-odq", "-i", "a@example.com", input=MESSAGE).exit_code == 0


def test_help_is_click_help_wrapped_to_80_columns(gmail: Gmail) -> None:
    done = gmail("--help")
    assert done.exit_code == 0
    assert done.stdout.startswith("usage: gmail [-s SUBJECT]")
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    assert done.stdout == cli.help_text("gmail")
    assert "usage: sendmail " in gmail("--help", program="sendmail").stdout


def test_version(gmail: Gmail) -> None:
    done = gmail("--version")
    assert done.exit_code == 0
    assert re.fullmatch(r"gmail \(gaemail\) \S+\n", done.stdout)


# -- errors nobody planned: exit 75, or 0 once the message is safe; never 1 ---------------


def test_unexpected_error_exits_75_with_its_traceback_in_the_mail_log(
    gmail: Gmail, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("compose broke")

    monkeypatch.setattr(cli, "build", broken)
    done = gmail("-odq", "-t", "-i", input=MESSAGE)
    assert done.exit_code == 75
    line = one_line(done.stderr)
    assert line.startswith("gmail: internal error: RuntimeError: compose broke;")
    assert "mail log" in line
    (logged,) = gmail.log.lines()
    assert "unexpected error: Traceback (most recent call last)" in logged
    assert "RuntimeError: compose broke" in logged
    assert gmail.queued() == []


def test_error_after_queueing_exits_0(gmail: Gmail, monkeypatch: pytest.MonkeyPatch) -> None:
    from gaemail.queue.journal import Journal

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("journal broke")

    monkeypatch.setattr(Journal, "record", broken)
    done = gmail("-odq", "-t", "-i", input=MESSAGE)
    assert done.exit_code == 0
    line = one_line(done.stderr)
    assert "journal broke" in line and "the message is safe (queued as" in line
    assert any("RuntimeError: journal broke" in entry for entry in gmail.log.lines())
    assert len(gmail.queued()) == 1


def test_interrupt_exits_74_not_1(gmail: Gmail, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(stream: object) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "read_stdin", interrupted)
    done = gmail("-odq", "-t", "-i", input=MESSAGE)
    assert done.exit_code == 74
    assert one_line(done.stderr) == "gmail: interrupted; nothing was sent"


# -- shell completion ---------------------------------------------------------------


def test_completion_script_and_answers(gmail: Gmail) -> None:
    script = gmail(_GMAIL_COMPLETE="bash_source")
    assert script.exit_code == 0
    assert "_gmail_completion" in script.stdout
    answer = gmail(_GMAIL_COMPLETE="bash_complete", COMP_WORDS="gmail --no-q", COMP_CWORD="1")
    assert answer.exit_code == 0
    assert "plain,--no-queue" in answer.stdout.splitlines()


def test_completion_in_bash(gmail: Gmail) -> None:
    """The installed gmail's bash script, sourced by a real bash."""
    import shutil
    import sys

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    bindir = str(Path(sys.executable).parent)
    probe = (
        'eval "$(_GMAIL_COMPLETE=bash_source gmail)"; '
        "COMP_WORDS=(gmail --secret); COMP_CWORD=1; _gmail_completion gmail; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        [bash, "--norc", "-c", probe],
        env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(gmail.home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["--secret-file"]


@pytest.mark.parametrize(
    ("option", "kind"), [("--secret-file", "file"), ("--aliases", "file"), ("--queue-dir", "dir")]
)
def test_completion_of_paths(gmail: Gmail, option: str, kind: str) -> None:
    answer = gmail(_GMAIL_COMPLETE="bash_complete", COMP_WORDS=f"gmail {option} ", COMP_CWORD="2")
    assert answer.exit_code == 0
    assert answer.stdout.splitlines() == [f"{kind},"]


def test_bv_says_what_each_address_becomes(gmail: Gmail, tmp_path: Path) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("root: ops, admin@example.org\n")
    done = gmail(
        "-bv", "root", "bob@example.com", GMAIL_ALIASES=str(aliases), GMAIL_DEFAULT_DOMAIN="ex.net"
    )
    assert done.exit_code == 0, done.stderr
    assert done.stdout.splitlines() == [
        "root... deliverable: ops@ex.net, admin@example.org",
        "bob@example.com... deliverable: bob@example.com",
    ]


def test_bv_exits_67_naming_the_addresses_that_fail(gmail: Gmail) -> None:
    done = gmail("-bv", "nobody", "a@example.com", GMAIL_DEFAULT_DOMAIN="")
    if "deliverable: nobody@" in done.stdout:
        pytest.skip("this host has a mail domain of its own (/etc/mailname or its FQDN)")
    assert done.exit_code == 67
    assert done.stdout.splitlines()[1] == "a@example.com... deliverable: a@example.com"
    assert done.stdout.startswith("nobody... cannot be delivered: ")
    assert one_line(done.stderr) == "gmail: cannot deliver to nobody"

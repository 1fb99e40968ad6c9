"""gmail's command line: the exact argv real callers pass (shared/reference)."""

from __future__ import annotations

import pytest

from gaemail.cli import gmail, help_text, parse
from gaemail.command import option_names
from gaemail.errors import EX_USAGE, UsageError


@pytest.mark.parametrize(
    ("caller", "args", "recipients", "sender"),
    [
        (
            "cron",
            ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "a@x.org,b@y.org"],
            ["a@x.org,b@y.org"],
            None,
        ),
        ("bsd-mailx", ["-i", "-t"], [], None),
        ("bsd-mailx -r", ["-i", "-t", "-f", "s@x.org"], [], "s@x.org"),
        ("mailutils", ["-oi", "-f", "root@host", "-t"], [], "root@host"),
        ("s-nail", ["-i", "--", "a@x.org", "b@y.org"], ["a@x.org", "b@y.org"], None),
        ("php", ["-t", "-i", "-fbounce@x.org"], [], "bounce@x.org"),
        ("git send-email", ["-i", "a@x.org", "c@x.org"], ["a@x.org", "c@x.org"], None),
        ("git --envelope-sender", ["-f", "s@x.org", "-i", "a@x.org"], ["a@x.org"], "s@x.org"),
        (
            "mutt",
            ["-oem", "-oi", "-N", "failure,delay", "-R", "hdrs", "--", "a@x.org"],
            ["a@x.org"],
            None,
        ),
        ("exim pipe", ["-i", "-f", "", "--", "a@x.org", "b@y.org"], ["a@x.org", "b@y.org"], ""),
        ("cronie", ["-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"], [], "root"),
    ],
)
def test_real_callers_select_sendmail_personality(
    caller: str, args: list[str], recipients: list[str], sender: str | None
) -> None:
    inv = parse("gmail", args)
    assert inv.personality == "sendmail", caller
    assert inv.mode == "send"
    assert inv.recipients == tuple(recipients)
    assert inv.sender == sender
    assert inv.dot_ends is False  # every caller passes -i or -oi


def test_cron_full_name_and_ignored_options() -> None:
    inv = parse("gmail", ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"])
    assert inv.full_name == "CronDaemon"
    assert inv.read_headers is False


def test_mail_personality() -> None:
    inv = parse(
        "gmail", ["-s", "Grüße", "-c", "cc@x.org", "-b", "h@x.org", "-r", "me@x.org", "to@x.org"]
    )
    assert inv.personality == "mail"
    assert (inv.subject, inv.cc, inv.bcc, inv.sender) == (
        "Grüße",
        ("cc@x.org",),
        ("h@x.org",),
        "me@x.org",
    )
    assert inv.recipients == ("to@x.org",)


def test_options_may_follow_recipients() -> None:
    inv = parse("gmail", ["to@x.org", "-s", "subject"])
    assert inv.recipients == ("to@x.org",)
    assert inv.subject == "subject"


def test_program_name_selects_personality() -> None:
    assert parse("/usr/sbin/sendmail", ["a@x.org"]).personality == "sendmail"
    assert parse("gmail", ["a@x.org"]).personality == "mail"
    mailq = parse("mailq", [])
    assert (mailq.personality, mailq.mode) == ("sendmail", "list")


def test_dash_b_is_bcc_or_mode() -> None:
    assert parse("gmail", ["-bp"]).mode == "list"
    assert parse("gmail", ["-bm", "-t"]).mode == "send"
    assert parse("gmail", ["-bhidden@x.org", "to@x.org"]).bcc == ("hidden@x.org",)


@pytest.mark.parametrize("mode", ["-bs", "-bt", "-bi", "-bd"])
def test_unprovided_modes_fail_with_usage(mode: str) -> None:
    with pytest.raises(UsageError, match=r"not provided") as info:
        parse("sendmail", [mode])
    assert info.value.exit_code == EX_USAGE


def test_bv_verifies_the_addresses_given() -> None:
    inv = parse("sendmail", ["-bv", "root", "a@x.org"])
    assert (inv.mode, inv.recipients) == ("verify", ("root", "a@x.org"))
    with pytest.raises(UsageError, match="-bv needs the addresses"):
        parse("sendmail", ["-bv"])


def test_delivery_modes() -> None:
    assert parse("sendmail", ["-odq", "a@x.org"]).delivery == "queue"
    assert parse("sendmail", ["-odb", "a@x.org"]).delivery == "background"
    assert parse("sendmail", ["-odi", "a@x.org"]).delivery == "interactive"
    with pytest.raises(UsageError, match="delivery mode"):
        parse("sendmail", ["-odz", "a@x.org"])


def test_flush_forms() -> None:
    for args in (["-q"], ["-q15m"], ["-qf"]):
        assert parse("gmail", args).mode == "flush"


def test_clustered_flags() -> None:
    inv = parse("gmail", ["-ti"])
    assert inv.read_headers and not inv.dot_ends


def test_long_setting_flags() -> None:
    inv = parse("gmail", ["--url=http://127.0.0.1:1/", "--secret-file", "/k", "a@x.org"])
    assert inv.settings == {"url": "http://127.0.0.1:1/", "secret": "/k"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-Z", "a@x.org"], "unknown option -Z"),
        (["--bogus"], "unknown option --bogus"),
        (["-s"], "needs a value"),
        (["-s", "x"], "no recipient"),
        (["-i"], "no recipients"),
        (["-t", "-s", "subject"], "mail(1) style"),
        (["-s", "one\nBcc: evil@x.org", "a@x.org"], "line break"),
        (["-a", "X: y\r\nBcc: evil@x.org", "a@x.org"], "line break"),
        (["--help=yes"], "takes no value"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse("gmail", args)


def test_help_lists_every_option() -> None:
    text = help_text("gmail")
    names = option_names(gmail)
    assert {"-t", "-q", "--url", "--help", "--no-fix-sender"} <= set(names)
    for name in names:
        assert name in text, name


def test_optional_values_are_attached_only() -> None:
    flush = parse("gmail", ["-q", "a@x.org"])
    assert (flush.mode, flush.recipients) == ("flush", ("a@x.org",))
    cluster = parse("gmail", ["-iq15m"])
    assert (cluster.mode, cluster.dot_ends) == ("flush", False)
    for debug in (["-d"], ["-d0.1"], ["-dX", "-i"]):
        assert parse("gmail", [*debug, "a@x.org"]).recipients == ("a@x.org",)


def test_modes_inside_a_cluster_and_values_that_look_like_options() -> None:
    assert parse("gmail", ["-ibp"]).mode == "list"
    assert parse("gmail", ["-b", "p", "a@x.org"]).bcc == ("p",)
    inv = parse("gmail", ["-f", "-weird@x.org", "-s", "-q", "a@x.org"])
    assert (inv.sender, inv.subject, inv.mode) == ("-weird@x.org", "-q", "send")


def test_no_queue_wins_over_od() -> None:
    assert parse("gmail", ["--no-queue", "-odb", "-i", "a@x.org"]).delivery == "none"
    assert parse("gmail", ["-odq", "-odi", "-i", "a@x.org"]).delivery == "interactive"


def test_fix_sender_flags() -> None:
    assert parse("gmail", ["a@x.org"]).fix_sender is None
    assert parse("gmail", ["--fix-sender", "a@x.org"]).fix_sender is True
    assert parse("gmail", ["--no-fix-sender", "a@x.org"]).fix_sender is False

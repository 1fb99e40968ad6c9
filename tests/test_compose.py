"""Building the wire message: envelope semantics, Bcc, line ends, encodings."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from gaemail.errors import EX_NOUSER, MessageError, NoSuchUserError, UsageError
from gaemail.message.compose import (
    Defaults,
    HeaderBlock,
    compose_mail,
    prepare_message,
    read_input,
    render_field,
)
from gaemail.message.envelope import RecipientResolver, parse_aliases

DEFAULTS = Defaults(sender=None, hostname="host.example", clock=lambda: 1_800_000_000.0)


def resolver(
    domain: str | None = None, aliases: str | None = None, tmp: Path | None = None
) -> RecipientResolver:
    path = None
    if aliases is not None and tmp is not None:
        path = str(tmp / "aliases")
        Path(path).write_text(aliases)
    return RecipientResolver(path, domain)


def prepare(
    raw: bytes,
    recipients: list[str] | None = None,
    *,
    t: bool = False,
    i: bool = True,
    sender: str | None = None,
    full_name: str | None = None,
    res: RecipientResolver | None = None,
    defaults: Defaults = DEFAULTS,
):
    return prepare_message(
        raw,
        recipients=recipients or [],
        read_headers=t,
        dot_ends=not i,
        sender=sender,
        full_name=full_name,
        resolver=res or resolver(),
        defaults=defaults,
    )


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def addresses(msg: EmailMessage, name: str) -> list[str]:
    header = msg[name]
    return [a.addr_spec for a in header.addresses] if header else []


def test_bsd_mailx_bcc_is_delivered_and_moved_out_of_shown_headers() -> None:
    raw = (
        b"To: to@x.org\nCc: cc@x.org\nBcc: hidden@x.org\nSubject: s\n"
        b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nbody\n"
    )
    out = prepare(raw, t=True)
    assert out.envelope.recipients == ("to@x.org", "cc@x.org", "hidden@x.org")
    msg = parsed(out.data)
    assert addresses(msg, "To") == ["to@x.org"]
    assert addresses(msg, "Cc") == ["cc@x.org"]
    # On the wire, Bcc is how protocol v1 names hidden recipients; the proxy
    # never writes it into a delivered header.
    assert addresses(msg, "Bcc") == ["hidden@x.org"]
    assert out.data.endswith(b"\n\nbody\n")


def test_envelope_decides_recipients_without_t() -> None:
    raw = b'From: a@x.org\nTo: "Doe, John" <j@x.org>, b@y.org\nCc: c@z.org\n\nhello\n'
    out = prepare(raw, ["j@x.org,extra@q.org"])
    assert out.envelope.recipients == ("j@x.org", "extra@q.org")
    msg = parsed(out.data)
    assert [str(a) for a in msg["To"].addresses] == ['"Doe, John" <j@x.org>']
    assert msg["Cc"] is None
    assert addresses(msg, "Bcc") == ["extra@q.org"]


def test_headers_untouched_when_envelope_matches() -> None:
    raw = b"From: a@x.org\nTo: =?utf-8?q?J=C3=B6rg?= <j@x.org>,\n b@y.org\nSubject: s\n\nhi\n"
    out = prepare(raw, ["j@x.org", "b@y.org"])
    assert b"To: =?utf-8?q?J=C3=B6rg?= <j@x.org>,\n b@y.org\n" in out.data
    assert b"Bcc" not in out.data


def test_t_adds_argument_recipients_to_header_recipients() -> None:
    out = prepare(b"To: a@x.org\n\nhi\n", ["b@y.org"], t=True)
    assert out.envelope.recipients == ("b@y.org", "a@x.org")
    assert addresses(parsed(out.data), "Bcc") == ["b@y.org"]


def test_each_recipient_once() -> None:
    out = prepare(b"To: a@x.org, A@X.ORG\nCc: a@x.org\nBcc: a@x.org\n\nhi\n", ["a@x.org"], t=True)
    assert out.envelope.recipients == ("a@x.org",)
    msg = parsed(out.data)
    assert addresses(msg, "To") == ["a@x.org"]
    assert msg["Cc"] is None and msg["Bcc"] is None


def test_php_crlf_headers_and_lf_body() -> None:
    raw = (
        b"To: a@x.org\r\nSubject: PHP\r\nX-PHP-Originating-Script: 0:x.php\r\n\r\nline1\nline2\r\n"
    )
    out = prepare(raw, t=True)
    assert b"\r" not in out.data
    msg = parsed(out.data)
    assert msg["Subject"] == "PHP"
    assert msg.get_content() == "line1\nline2\n"


def test_adds_date_and_message_id_when_missing() -> None:
    out = prepare(b"To: a@x.org\n\nhi\n", t=True)
    msg = parsed(out.data)
    assert msg["Date"]
    assert msg["Message-ID"] == out.message_id
    assert out.message_id.startswith("<1800000000000000.") and out.message_id.endswith(
        "@host.example>"
    )


def test_keeps_existing_date_and_message_id() -> None:
    raw = b"To: a@x.org\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <keep@x.org>\n\nhi\n"
    out = prepare(raw, t=True)
    assert out.message_id == "<keep@x.org>"
    assert out.data.count(b"Message-ID") == 1 and out.data.count(b"Date:") == 1


def test_f_becomes_from_only_when_missing() -> None:
    out = prepare(b"To: a@x.org\n\nhi\n", t=True, sender="s@x.org", full_name="Cron Daemon")
    assert parsed(out.data)["From"] == "Cron Daemon <s@x.org>"
    assert out.envelope.sender == "s@x.org"
    out = prepare(b"From: real@x.org\nTo: a@x.org\n\nhi\n", t=True, sender="s@x.org")
    assert parsed(out.data)["From"] == "real@x.org"


def test_null_sender_and_no_from_leaves_it_to_the_proxy() -> None:
    out = prepare(b"To: a@x.org\n\nbounce\n", t=True, sender="")
    assert b"From:" not in out.data
    assert out.envelope.sender is None


def test_configured_sender_fills_missing_from() -> None:
    defaults = Defaults(sender="gmail@proj.appspotmail.com", hostname="h", clock=lambda: 0.0)
    out = prepare(b"To: a@x.org\n\nhi\n", t=True, defaults=defaults)
    assert parsed(out.data)["From"] == "gmail@proj.appspotmail.com"


def test_bare_names_get_default_domain_in_envelope_and_headers() -> None:
    raw = b"From: root (Cron Daemon)\nTo: nobody\nSubject: Cron <nobody@h> ls\n\noutput\n"
    out = prepare(raw, ["nobody"], res=resolver("example.com"))
    assert out.envelope.recipients == ("nobody@example.com",)
    msg = parsed(out.data)
    assert addresses(msg, "To") == ["nobody@example.com"]
    assert addresses(msg, "From") == ["root@example.com"]


def test_unqualified_without_alias_or_domain_is_nouser() -> None:
    with pytest.raises(NoSuchUserError) as info:
        prepare(b"To: root\n\nhi\n", ["root"])
    assert info.value.exit_code == EX_NOUSER
    assert "GMAIL_DEFAULT_DOMAIN" in str(info.value)


def test_aliases_expand_recursively(tmp_path: Path) -> None:
    aliases = (
        "# comment\npostmaster: root\nroot: admin@example.com,\n"
        '  ops\nops: ops@example.org, "|/usr/bin/something"\n'
    )
    res = resolver(None, aliases, tmp_path)
    out = prepare(b"To: postmaster\n\nhi\n", ["postmaster"], res=res)
    assert out.envelope.recipients == ("admin@example.com", "ops@example.org")


def test_parse_aliases_format() -> None:
    assert parse_aliases("a: b@x.org, c\n  , d@y.org\n# x: y\nbad line\n") == {
        "a": ["b@x.org", "c", "d@y.org"]
    }


def test_no_recipients_is_a_message_error() -> None:
    with pytest.raises(MessageError, match="no recipients"):
        prepare(b"Subject: nobody to send to\n\nhi\n", t=True)


def test_lone_dot_ends_message_without_i() -> None:
    assert read_input(b"To: a@x.org\n\nline\n.\nlost\n", dot_ends=True) == b"To: a@x.org\n\nline\n"
    assert read_input(b"To: a@x.org\n\nline\n.\nkept\n", dot_ends=False).endswith(b".\nkept\n")


def test_exim_mbox_from_line_is_dropped() -> None:
    data = read_input(b"From sender@x.org Sat Nov 21 12:00:00 2026\nTo: a@x.org\n\nhi\n", False)
    assert data == b"To: a@x.org\n\nhi\n"


@pytest.mark.parametrize(
    "first",
    [
        b"From MAILER-DAEMON Sat Nov 21 12:00:00 2026",  # the prefix of a bounce
        b"From s@x.org  Sat, Nov 21 9:05:00 2026",
    ],
)
def test_other_mbox_from_lines_are_dropped(first: bytes) -> None:
    assert read_input(first + b"\nTo: a@x.org\n\nhi\n", False) == b"To: a@x.org\n\nhi\n"


def test_text_that_starts_with_from_is_kept() -> None:
    # A message without headers is all body: its first line is text, not a separator.
    data = b"From now on, backups run at 2am.\nSecond line\n"
    assert read_input(data, False) == data
    out = prepare(data, ["a@x.org"])
    assert out.data.endswith(b"\n\nFrom now on, backups run at 2am.\nSecond line\n")


def test_eight_bit_latin1_body_kept_byte_for_byte() -> None:
    body = "Grüße aus Köln\n".encode("latin-1") + bytes(range(0x80, 0x100)) + b"\n"
    raw = b"To: a@x.org\nContent-Type: text/plain; charset=iso-8859-1\n\n" + body
    out = prepare(raw, t=True)
    assert out.data.endswith(b"\n\n" + body)


def test_message_without_headers_is_all_body() -> None:
    block = HeaderBlock.split(b"just a body line\nsecond\n")
    assert block.fields == []
    assert block.body == b"just a body line\nsecond\n"


def test_long_lines_untouched() -> None:
    line = b"x" * 5000 + b"\n"
    out = prepare(b"To: a@x.org\n\n" + line, t=True)
    assert out.data.endswith(line)


def test_compose_mail_encodes_non_ascii() -> None:
    out = compose_mail(
        "Grüße\n".encode(),
        to=["Jörg Müller <to@example.com>"],
        cc=["cc@example.com"],
        bcc=["hidden@example.com"],
        subject="Grüße aus Köln",
        sender=None,
        extra_headers=["X-Mailer: test"],
        resolver=resolver(),
        defaults=DEFAULTS,
    )
    assert out.data.isascii() or b"\n\nGr\xc3\xbc\xc3\x9fe\n" in out.data
    head = out.data.partition(b"\n\n")[0]
    assert head.isascii()  # RFC 2047 encoded-words, no raw 8-bit in headers
    msg = parsed(out.data)
    assert msg["Subject"] == "Grüße aus Köln"
    assert str(msg["To"]) == "Jörg Müller <to@example.com>"
    assert msg.get_content() == "Grüße\n"
    assert out.envelope.recipients == ("to@example.com", "cc@example.com", "hidden@example.com")
    assert out.fix_sender  # no From: the proxy's default sender sends it


def test_compose_mail_latin1_body_becomes_utf8_text() -> None:
    out = compose_mail(
        "Grüße\n".encode("latin-1"),
        to=["a@x.org"],
        cc=[],
        bcc=[],
        subject=None,
        sender="me@x.org",
        extra_headers=[],
        resolver=resolver(),
        defaults=DEFAULTS,
    )
    assert parsed(out.data).get_content() == "Grüße\n"
    assert not out.fix_sender


@pytest.mark.parametrize(
    "header", ["Bcc: x@y.org", "To: x@y.org", "no colon", "Bad Name: v", "Subject: s"]
)
def test_compose_mail_rejects_headers_that_would_change_recipients_or_are_invalid(
    header: str,
) -> None:
    with pytest.raises(UsageError):
        compose_mail(
            b"hi\n",
            to=["a@x.org"],
            cc=[],
            bcc=[],
            subject=None,
            sender=None,
            extra_headers=[header],
            resolver=resolver(),
            defaults=DEFAULTS,
        )


def test_full_name_with_newline_is_refused() -> None:
    with pytest.raises(UsageError, match="line break"):
        prepare(b"To: a@x.org\n\nhi\n", t=True, sender="s@x.org", full_name="x\nBcc: e@x.org")


FIELD_NAMES = ["To", "Cc", "Bcc", "From", "Reply-To", "Subject", "Date", "Message-ID", "X-Mailer"]
FIELD_VALUES = [
    "",
    "root",
    "a@example.com",
    "a@example.com, c@example.org",
    "a@example.com,c@example.org",
    '"Doe, John" <j@example.org>',
    "John Doe <j@example.org>",
    "root@web1.example.com (Cron Daemon)",
    "(comment) a@example.com",
    '"a b"@example.com',
    "undisclosed-recipients:;",
    "Team: a@example.com, b@example.com;",
    "<>",
    "foo@",
    "Sat, 21 Nov 2026 12:00:00 +0100",
    "<1763.42.abcdef@web1.example.com>",
    "<12@x> <13@y>",
    "hello  world",
    " leading space",
    "trailing space ",
    'a "quote and back\\slash',
    "Cron <root@web1> /usr/local/sbin/nightly-backup --verbose",
    "x" * 70,  # too long for the plain path
    "a " * 40,  # foldable
    "=?utf-8?q?looks_encoded?=",
    "tab\there",
]


@pytest.mark.parametrize("name", FIELD_NAMES)
def test_render_field_writes_what_the_email_policy_writes(name: str) -> None:
    """render_field skips loading email.policy for plain short values: same bytes."""
    policy = email.policy.default.clone(linesep="\n")
    for value in FIELD_VALUES:
        assert render_field(name, value) == policy.fold_binary(name, value), value


# -- the local identity: a message without From is from the calling user ------------

LOCAL = Defaults(
    hostname="host.example", clock=lambda: 0.0, user="www-data", user_name="Web Server"
)


def test_a_message_without_from_is_from_the_calling_user_at_the_mail_domain() -> None:
    out = prepare(b"To: a@x.org\n\nhi\n", t=True, res=resolver("example.net"), defaults=LOCAL)
    assert parsed(out.data)["From"] == "Web Server <www-data@example.net>"
    assert out.envelope.sender == "www-data@example.net"  # so a failure bounces to someone


def test_f_and_its_full_name_win_over_the_calling_user() -> None:
    out = prepare(
        b"To: a@x.org\n\nhi\n",
        t=True,
        sender="root",
        full_name="CronDaemon",
        res=resolver("example.net"),
        defaults=LOCAL,
    )
    assert parsed(out.data)["From"] == "CronDaemon <root@example.net>"


def test_without_a_mail_domain_the_calling_user_is_not_made_up() -> None:
    out = prepare(b"To: a@x.org\n\nhi\n", t=True, defaults=LOCAL)
    assert b"From:" not in out.data and out.envelope.sender is None


def test_a_null_sender_never_gets_the_calling_user() -> None:
    out = prepare(
        b"To: a@x.org\n\nx\n", t=True, sender="", res=resolver("example.net"), defaults=LOCAL
    )
    assert b"From:" not in out.data and out.envelope.sender is None


def test_mail_style_from_the_calling_user_asks_the_proxy_to_fix_the_sender() -> None:
    out = compose_mail(
        b"body\n",
        to=["root"],
        cc=[],
        bcc=[],
        subject="s",
        sender=None,
        extra_headers=[],
        resolver=resolver("example.net"),
        defaults=LOCAL,
    )
    msg = parsed(out.data)
    assert msg["From"] == "Web Server <www-data@example.net>" and msg["To"] == "root@example.net"
    assert out.fix_sender and out.envelope.sender == "www-data@example.net"

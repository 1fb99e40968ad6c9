"""8-bit and international mail end to end: the installed gmail, a real `gaemail serve`,
and what arrives in its outbox, decoded.

Also the envelope rule the man page documents: the envelope decides who gets the
message, and the shown To and Cc are cut down to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_support import (
    GMAIL,
    Account,
    Delivered,
    Server,
    addresses,
    caller_environ,
    run,
    running_server,
    tagged,
    write_envdir,
)

pytestmark = pytest.mark.e2e

LONG_ASCII = "x" * 1500 + "END"  # SMTP allows 998 octets per line
LONG_UTF8 = "ä€✓" * 400 + "END"  # 2800 octets


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("messages")) as s:
        yield s


@pytest.fixture
def env(server: Server, tmp_path: Path) -> dict[str, str]:
    paths = write_envdir(tmp_path / "envdir", server, Account.current())
    return caller_environ(paths["envdir"], path="/usr/bin:/bin", LANG="C.UTF-8")


def gmail(args: list[str], env: dict[str, str], stdin: bytes) -> None:
    result = run([str(GMAIL), *args], env, stdin)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result


def display_names(d: Delivered, name: str) -> list[str]:
    header = d.msg[name]
    return [a.display_name for a in header.addresses] if header else []


def test_8bitmime_utf8_body_and_raw_utf8_headers(
    server: Server, env: dict[str, str], tag: str
) -> None:
    message = (
        "From: Jürgen Groß <juergen@example.com>\n"
        "To: Zoë Ångström <zoe@example.com>\n"
        f"Subject: Grüße ✓ 日本語 {tag}\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=UTF-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        f"Grüße aus Köln ✓\n{LONG_UTF8}\n{LONG_ASCII}\n"
    ).encode()
    gmail(["-i", "-B8BITMIME", "-t"], env, message)

    (d,) = server.wait_for(tagged(tag))
    assert d.subject == f"Grüße ✓ 日本語 {tag}"
    assert d.envelope_to == ["zoe@example.com"]
    assert display_names(d, "To") == ["Zoë Ångström"]
    assert display_names(d, "From") == ["Jürgen Groß"]
    assert d.text() == f"Grüße aus Köln ✓\n{LONG_UTF8}\n{LONG_ASCII}\n"
    assert max(len(line) for line in d.raw.split(b"\n")) <= 998  # the outbox is valid mail


def test_rfc2047_encoded_headers(server: Server, env: dict[str, str], tag: str) -> None:
    message = (
        "From: =?iso-8859-1?q?J=FCrgen_Gro=DF?= <juergen@example.com>\n"
        "To: =?utf-8?b?Wm/DqyDDhW5nc3Ryw7Zt?= <zoe@example.com>,\n"
        " =?utf-8?q?Fran=C3=A7oise?= <francoise@example.org>\n"
        f"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_=E2=9C=93?= {tag}\n"
        "\n"
        "plain ASCII body\n"
    ).encode("ascii")
    gmail(["-i", "-t"], env, message)

    (d,) = server.wait_for(tagged(tag))
    assert d.subject == f"Grüße ✓ {tag}"
    assert d.envelope_to == ["zoe@example.com", "francoise@example.org"]
    assert display_names(d, "To") == ["Zoë Ångström", "Françoise"]
    assert display_names(d, "From") == ["Jürgen Groß"]
    assert d.text() == "plain ASCII body\n"


def test_latin1_body(server: Server, env: dict[str, str], tag: str) -> None:
    text = "Grüße aus Köln, Straße ½\n" + "é" * 1200 + "\n"
    message = (
        "From: sender@example.com\n"
        "To: to@example.com\n"
        f"Subject: latin-1 {tag}\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
    ).encode("ascii") + text.encode("latin-1")
    gmail(["-i", "-B8BITMIME", "to@example.com"], env, message)

    (d,) = server.wait_for(tagged(tag))
    assert d.text() == text
    assert d.envelope_to == ["to@example.com"]


def test_apostrophe_address_and_quoted_display_name(
    server: Server, env: dict[str, str], tag: str
) -> None:
    message = (
        "From: sender@example.com\n"
        "To: \"O'Brien, Pat\" <o'brien@example.com>\n"
        f"Subject: apostrophe {tag}\n"
        "\n"
        "hello\n"
    ).encode("ascii")
    # as s-nail and mutt pass it: the address once in argv, once in To
    gmail(["-i", "--", "o'brien@example.com"], env, message)

    (d,) = server.wait_for(tagged(tag))
    assert d.envelope_to == ["o'brien@example.com"]
    assert addresses(d.msg, "To") == ["o'brien@example.com"]
    assert display_names(d, "To") == ["O'Brien, Pat"]


def test_mail_style_international(server: Server, env: dict[str, str], tag: str) -> None:
    body = f"Grüße ✓\n{LONG_UTF8}\n"
    gmail(
        [
            "-s",
            f"Grüße ✓ {tag}",
            "-r",
            "Jürgen Groß <juergen@example.com>",
            "-c",
            "Françoise <francoise@example.org>",
            "-b",
            "hidden@example.net",
            "Zoë Ångström <zoe@example.com>",
            "o'brien@example.com",
        ],
        env,
        body.encode("utf-8"),
    )

    (d,) = server.wait_for(tagged(tag))
    assert d.subject == f"Grüße ✓ {tag}"
    assert d.envelope_to == [
        "zoe@example.com",
        "o'brien@example.com",
        "francoise@example.org",
        "hidden@example.net",
    ]
    assert addresses(d.msg, "To") == ["zoe@example.com", "o'brien@example.com"]
    assert display_names(d, "To") == ["Zoë Ångström", ""]
    assert display_names(d, "Cc") == ["Françoise"]
    assert display_names(d, "From") == ["Jürgen Groß"]
    assert d.msg.get_all("Bcc") is None
    assert d.text() == body


def test_mail_style_latin1_body_is_sent_as_utf8(
    server: Server, env: dict[str, str], tag: str
) -> None:
    gmail(["-s", f"latin-1 {tag}", "to@example.com"], env, "Köln, Straße\n".encode("latin-1"))

    (d,) = server.wait_for(tagged(tag))
    assert d.text() == "Köln, Straße\n"


def test_envelope_decides_the_shown_headers(server: Server, env: dict[str, str], tag: str) -> None:
    """The documented limitation: App Engine builds To and Cc from its recipients."""
    message = (
        "From: sender@example.com\n"
        "To: list@example.com\n"
        "Cc: Kept <kept@example.org>\n"
        f"Subject: envelope {tag}\n"
        "\n"
        "hello\n"
    ).encode("ascii")
    gmail(["-i", "kept@example.org", "extra@example.net"], env, message)

    (d,) = server.wait_for(tagged(tag))
    assert d.envelope_to == ["kept@example.org", "extra@example.net"]
    assert d.msg["To"] is None  # list@example.com was not in the envelope
    assert display_names(d, "Cc") == ["Kept"]
    assert d.msg.get_all("Bcc") is None  # extra@example.net got it unseen
    assert "extra@example.net" not in str(d.msg["Cc"])


def test_first_line_starting_with_from_is_text(
    server: Server, env: dict[str, str], tag: str
) -> None:
    """Only an mbox separator ("From sender date") is dropped, not a sentence."""
    gmail(["-i", "to@example.com"], env, f"From now on, backups run at 2am. {tag}\n".encode())

    (d,) = server.wait_for(lambda d: tag in d.text())
    assert d.text() == f"From now on, backups run at 2am. {tag}\n"

"""What `gmail` loads per message, and the light stand-ins that keep email.utils out.

gaemail.message.rfc5322 answers plain values itself and must answer exactly as
email.utils does; for anything else it hands over to email.utils.
"""

from __future__ import annotations

import email.utils
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gaemail.message import rfc5322

VALUES = [
    "ops@example.com",
    "root@web1.example.com (Cron Daemon)",
    "a@x.org, b@y.org",
    "a@x.org,b@y.org,c.d+tag@sub.z.example",
    "  spaced@example.com  ",
    "first.last@example.com (A (nested) comment)",
    "( padded ) x@example.com",
    "x@example.com ( padded )",
    "Alice <alice@example.com>",
    '"Smith, Bob" <bob@example.com>',
    "undisclosed-recipients:;",
    "root",
    "a@x.org,",
    "",
    "x@[127.0.0.1]",
    'quoted."local"@example.com',
    "bad@@example.com",
    "a@x.org (Comma, inside)",
    "o'brien@example.com",
    "x@example.com (Grüße)",
]


@pytest.mark.parametrize("value", VALUES)
def test_getaddresses_answers_as_email_utils(value: str) -> None:
    assert rfc5322.getaddresses([value]) == email.utils.getaddresses([value])


def test_getaddresses_of_several_values() -> None:
    values = ["a@x.org", "root@h (Cron Daemon)", "b@y.org, c@z.org"]
    assert rfc5322.getaddresses(values) == email.utils.getaddresses(values)
    mixed = ["a@x.org", "Bob <b@y.org>"]
    assert rfc5322.getaddresses(mixed) == email.utils.getaddresses(mixed)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kolkata"])
def test_formatdate_answers_as_email_utils(zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/usr/share/zoneinfo", zone).exists():
        pytest.skip(f"no zoneinfo for {zone} (apt-get install tzdata)")
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        # Both sides of a daylight-saving change, a leap day, and now.
        for stamp in (0.0, 951782400.5, 1711846800.0, 1730000000.25, time.time()):
            for local in (True, False):
                assert rfc5322.formatdate(stamp, localtime=local) == email.utils.formatdate(
                    stamp, localtime=local
                ), (zone, stamp, local)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_formataddr_is_email_utils() -> None:
    for pair in [("", "a@x.org"), ("Cron Daemon", "root@h"), ("Grüße, Bob", "b@y.org")]:
        assert rfc5322.formataddr(pair) == email.utils.formataddr(pair)


def test_queueing_a_cron_message_loads_neither_email_utils_nor_traceback(tmp_path: Path) -> None:
    gmail = Path(sys.executable).parent / "gmail"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GMAIL_ENVDIR": str(tmp_path / "none"),
        "GMAIL_QUEUE_DIR": str(tmp_path / "queue"),
        "GMAIL_SYSLOG_SOCKET": "/nonexistent",
        "PYTHONPROFILEIMPORTTIME": "1",
    }
    cron = (
        b"From: root@web1.example.com (Cron Daemon)\nTo: ops@example.com\n"
        b"Subject: Cron <root@web1> job\nX-Cron-Env: <SHELL=/bin/sh>\n\noutput\n"
    )
    done = subprocess.run(
        [str(gmail), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-odq", "ops@example.com"],
        input=cron,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    imported = {
        line.split("|")[-1].strip()
        for line in done.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert {"click", "gaemail.cli", "gaemail.message.compose"} <= imported
    assert not imported & {"email.utils", "email._parseaddr", "traceback", "urllib.parse"}
    assert len(os.listdir(tmp_path / "queue" / "new")) == 1


def test_the_program_flushes_what_it_wrote_before_it_ends(tmp_path: Path) -> None:
    """Run as the program, gmail ends without interpreter teardown: nothing may be lost."""
    gmail = str(Path(sys.executable).parent / "gmail")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GMAIL_ENVDIR": str(tmp_path)}
    version = subprocess.run([gmail, "--version"], capture_output=True, env=env, timeout=60)
    assert version.returncode == 0
    assert version.stdout.startswith(b"gmail (gaemail) ")
    helped = subprocess.run([gmail, "--help"], capture_output=True, env=env, timeout=60)
    assert helped.returncode == 0
    assert helped.stdout.rstrip().endswith(b"No error exits 1.  See gmail(1).")
    wrong = subprocess.run([gmail, "-Z"], capture_output=True, env=env, timeout=60)
    assert (wrong.returncode, wrong.stdout) == (64, b"")
    assert wrong.stderr == b"gmail: unknown option -Z; see gmail --help\n"

"""Real callers of sendmail, end to end: each hands a message to the installed gmail,
which delivers it through a real `gaemail serve` into its outbox Maildir.

What every test checks in the outbox: the envelope (X-Envelope-To, which lists
To, Cc and Bcc recipients alike), the shown headers (To, Cc, no Bcc), the decoded
Subject and the body.  Argv, stdin and environment of each caller are the ones
recorded on Debian 12 in shared/reference/sendmail-compat.md.

Settings reach gmail the way they do on a real system: from an envdir, not from
flags.  cron and Exim run gmail as the job's or transport's user (`nobody` here)
with almost no environment, so that envdir must be readable by that user:
GMAIL_PROXY_URL world-readable, GMAIL_SECRET_KEY mode 0640 in the senders' group
(nogroup stands in for a `gaemail` group), and a queue directory the user owns.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_support import (
    GMAIL,
    WAIT,
    Account,
    Delivered,
    Server,
    addresses,
    caller_environ,
    check_account_can_run_gmail,
    debian_program,
    need_root,
    queued,
    run,
    running_server,
    sendmail_link,
    stop_process,
    tagged,
    write_envdir,
)

pytestmark = pytest.mark.e2e

CRON_ARGS = ["-FCronDaemon", "-i", "-B8BITMIME", "-oem"]  # Debian cron 3.0pl1-162
CRON_MAILTO = "alice@example.com,bob@example.org"
CRON_WAIT = 75.0  # cron starts jobs at the next minute boundary


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("callers")) as s:
        yield s


def assert_no_bcc_header(d: Delivered) -> None:
    assert d.msg.get_all("Bcc") is None, d.raw.decode(errors="replace")


def wait_until_empty(spool: Path) -> None:
    """The background delivery removes the message from the queue once sent."""
    deadline = time.monotonic() + WAIT
    while queued(spool) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queued(spool) == [], f"still queued in {spool}"


# ---------------------------------------------------------------------------
# (a) cron: Debian cron's argv, stdin and environment, as `nobody`
# ---------------------------------------------------------------------------


def cron_stdin(to: str, tag: str, user: str = "nobody") -> bytes:
    """What Debian cron writes to sendmail for a job's output (no Date, no Message-ID)."""
    return textwrap.dedent(
        f"""\
        From: root (Cron Daemon)
        To: {to}
        Subject: Cron <{user}@host> echo {tag}
        MIME-Version: 1.0
        Content-Type: text/plain; charset=UTF-8
        Content-Transfer-Encoding: 8bit
        X-Cron-Env: <MAILTO={to}>
        X-Cron-Env: <SHELL=/bin/sh>
        X-Cron-Env: <HOME=/nonexistent>
        X-Cron-Env: <PATH=/usr/bin:/bin>
        X-Cron-Env: <LOGNAME={user}>

        {tag}
        Grüße aus cron ✓
        """
    ).encode("utf-8")


def cron_cwd() -> str:
    # cron runs sendmail in the job user's home, or its spool dir when there is none.
    return "/var/spool/cron" if os.path.isdir("/var/spool/cron") else "/"


def run_as_cron(
    public: Path, server: Server, mailto: str, stdin: bytes, **settings: str
) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    nobody = Account.nobody()
    paths = write_envdir(public / "envdir", server, nobody, **settings)
    env = caller_environ(paths["envdir"])
    check_account_can_run_gmail(nobody, env)
    sendmail = sendmail_link(public)
    result = run(nobody.command([str(sendmail), *CRON_ARGS, mailto]), env, stdin, cron_cwd())
    return result, paths["queue"]


def test_cron_mailto_list_as_nobody(server: Server, public: Path, tag: str) -> None:
    result, spool = run_as_cron(public, server, CRON_MAILTO, cron_stdin(CRON_MAILTO, tag))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")

    (d,) = server.wait_for(tagged(tag))
    assert d.envelope_to == ["alice@example.com", "bob@example.org"]
    assert addresses(d.msg, "To") == ["alice@example.com", "bob@example.org"]
    assert d.msg["Cc"] is None
    assert_no_bcc_header(d)
    assert d.subject == f"Cron <nobody@host> echo {tag}"
    assert d.text() == f"{tag}\nGrüße aus cron ✓\n"
    # cron writes neither: gmail added them
    assert d.message_id.startswith("<")
    assert d.msg["Date"]
    wait_until_empty(spool)


def test_cron_bare_user_with_default_domain(server: Server, public: Path, tag: str) -> None:
    result, _ = run_as_cron(
        public, server, "nobody", cron_stdin("nobody", tag), GMAIL_DEFAULT_DOMAIN="example.net"
    )
    assert result.returncode == 0, result.stderr

    (d,) = server.wait_for(tagged(tag))
    assert d.envelope_to == ["nobody@example.net"]
    assert addresses(d.msg, "To") == ["nobody@example.net"]
    # cron's "root (Cron Daemon)" gets the domain too, keeping its name
    assert str(d.msg["From"]) == "Cron Daemon <root@example.net>"
    assert d.message_id.endswith("@example.net>")  # cron wrote none: gmail's own
    assert_no_bcc_header(d)


def test_cron_bare_user_through_aliases(server: Server, public: Path, tag: str) -> None:
    aliases = public / "aliases"
    aliases.write_text("# as /etc/aliases\nnobody: ops@example.com,\n  dev@example.org\n")
    aliases.chmod(0o644)
    result, _ = run_as_cron(
        public, server, "nobody", cron_stdin("nobody", tag), GMAIL_ALIASES=str(aliases)
    )
    assert result.returncode == 0, result.stderr

    (d,) = server.wait_for(tagged(tag))
    assert d.envelope_to == ["ops@example.com", "dev@example.org"]
    assert addresses(d.msg, "To") == ["ops@example.com", "dev@example.org"]
    assert_no_bcc_header(d)


def test_cron_bare_user_without_domain_or_alias_is_67(
    server: Server, public: Path, tag: str
) -> None:
    result, spool = run_as_cron(public, server, "nobody", cron_stdin("nobody", tag))
    assert result.returncode == 67  # EX_NOUSER: cron logs it; nothing to retry
    stderr = result.stderr.decode()
    assert "'nobody' has no domain" in stderr
    assert "GMAIL_DEFAULT_DOMAIN" in stderr
    assert len(stderr.splitlines()) == 1
    assert queued(spool) == []
    assert not [d for d in server.delivered() if tag in d.subject]


@pytest.mark.debian
def test_real_cron_daemon_mails_job_output(server: Server, public: Path, tag: str) -> None:
    """Debian's cron daemon runs a /etc/cron.d job and mails its output through gmail.

    cron only runs /usr/sbin/sendmail and only reads /etc/cron.d, so it runs in a
    private mount namespace where both are bind mounts of ours: nothing on the
    host changes, and nothing is left behind if the test dies.
    """
    cron = debian_program("cron", "cron")
    need_root("cron reads /etc/cron.d and runs jobs as other users")
    unshare = debian_program("unshare", "util-linux")
    if not os.path.lexists("/usr/sbin/sendmail"):
        pytest.skip("no /usr/sbin/sendmail to overlay: apt-get install exim4-daemon-light")
    nobody = Account.nobody()
    paths = write_envdir(public / "envdir", server, nobody, GMAIL_DEFAULT_DOMAIN="example.net")
    check_account_can_run_gmail(nobody, caller_environ(paths["envdir"]))

    crond = public / "cron.d"
    crond.mkdir()
    (crond / "gaemail-test").write_text(
        f"MAILTO={CRON_MAILTO}\n* * * * * nobody echo {tag} Grüße ✓\n", encoding="utf-8"
    )
    (crond / "gaemail-test").chmod(0o644)
    empty_dir, empty_file, run_dir = public / "empty", public / "empty-file", public / "run"
    for directory in (empty_dir, run_dir):
        directory.mkdir()
    empty_file.touch()
    binds = [
        (GMAIL, "/usr/sbin/sendmail"),
        (crond, "/etc/cron.d"),
        (empty_file, "/etc/crontab"),  # no system jobs in the test
        (empty_dir, "/var/spool/cron/crontabs"),
        # cron's crond.pid lock and crond.reboot marker: a host cron keeps its own,
        # and its @reboot jobs still run at the next start.
        (run_dir, "/run"),
    ]
    mounts = " && ".join(
        f"mount --bind '{source}' '{target}'" for source, target in binds if os.path.exists(target)
    )
    daemon_env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",  # cron labels the output with the locale's charset
        **{k: v for k, v in caller_environ(paths["envdir"]).items() if k != "PATH"},
    }
    log = public / "cron.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                unshare,
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"{mounts} && exec {cron} -f",
            ],
            env=daemon_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        (d,) = server.wait_for(tagged(tag), timeout=CRON_WAIT)[:1]
    finally:
        stop_process(process)
    assert d.envelope_to == ["alice@example.com", "bob@example.org"]
    assert addresses(d.msg, "To") == ["alice@example.com", "bob@example.org"]
    assert_no_bcc_header(d)
    assert d.subject.startswith("Cron <nobody@")
    assert d.subject.endswith(f"> echo {tag} Grüße ✓")
    assert d.text() == f"{tag} Grüße ✓\n"
    assert str(d.msg["From"]) == "Cron Daemon <root@example.net>"
    assert d.message_id.endswith("@example.net>")  # cron wrote none: gmail's own


# ---------------------------------------------------------------------------
# (b) and (d): mail user agents and other programs, run as the calling user
# ---------------------------------------------------------------------------

UTF8_BODY = "Zeile eins\nGrüße aus Köln, ½ € ✓\n"


def user_environ(public: Path, envdir: Path, **extra: str) -> dict[str, str]:
    """A login-like environment: these callers pass the user's own on to sendmail."""
    home = public / "home"
    home.mkdir(exist_ok=True)
    return caller_environ(envdir, path="/usr/bin:/bin", HOME=str(home), LANG="C.UTF-8", **extra)


def user_setup(public: Path, server: Server) -> tuple[Path, dict[str, str]]:
    """The sendmail link and an environment whose envdir points at the server."""
    paths = write_envdir(public / "envdir", server, Account.current())
    return sendmail_link(public), user_environ(public, paths["envdir"])


def assert_to_cc_bcc(d: Delivered, to: str, cc: str, bcc: str) -> None:
    """The envelope has all three; the headers show To and Cc, never Bcc."""
    assert sorted(d.envelope_to) == sorted([to, cc, bcc])
    assert addresses(d.msg, "To") == [to]
    assert addresses(d.msg, "Cc") == [cc]
    assert_no_bcc_header(d)
    shown = [str(v) for k, v in d.msg.items() if k.lower() != "x-envelope-to"]
    assert not [v for v in shown if bcc in v]


def wait_for_greeting(server: Server, tag: str) -> Delivered:
    """The one message a mail(1) caller sent: "Grüße TAG", UTF8_BODY, To, Cc and Bcc."""
    (d,) = server.wait_for(tagged(tag))
    assert_to_cc_bcc(d, "to@example.com", "cc@example.org", "hidden@example.net")
    assert d.subject == f"Grüße {tag}"
    assert d.text() == UTF8_BODY
    return d


@pytest.mark.debian
def test_bsd_mailx_delivers_bcc_without_showing_it(server: Server, public: Path, tag: str) -> None:
    mailx = debian_program("bsd-mailx", "bsd-mailx")
    sendmail, env = user_setup(public, server)
    mailrc = public / "mailrc"
    mailrc.write_text(f"set sendmail={sendmail}\n")
    env["MAILRC"] = str(mailrc)
    result = run(
        [
            mailx,
            "-s",
            f"Grüße {tag}",
            "-c",
            "cc@example.org",
            "-b",
            "hidden@example.net",
            "to@example.com",
        ],
        env,
        UTF8_BODY.encode(),
        cwd=env["HOME"],
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")

    wait_for_greeting(server, tag)
    assert not (Path(env["HOME"]) / "dead.letter").exists()


@pytest.mark.debian
def test_s_nail_passes_recipients_after_double_dash(server: Server, public: Path, tag: str) -> None:
    s_nail = debian_program("s-nail", "s-nail")
    sendmail, env = user_setup(public, server)
    result = run(
        # -:/ loads no resource file; sendwait makes s-nail report gmail's status.
        [
            s_nail,
            "-:/",
            "-S",
            f"mta={sendmail}",
            "-S",
            "sendwait",
            "-s",
            f"Grüße {tag}",
            "-c",
            "cc@example.org",
            "-b",
            "hidden@example.net",
            "to@example.com",
        ],
        env,
        UTF8_BODY.encode(),
        cwd=env["HOME"],
    )
    assert (result.returncode, result.stderr) == (0, b"")

    wait_for_greeting(server, tag)


@pytest.mark.debian
def test_mailutils_mail_with_bcc_header(server: Server, public: Path, tag: str) -> None:
    mail = debian_program("mail.mailutils", "mailutils")
    sendmail, env = user_setup(public, server)
    result = run(
        [
            mail,
            "-E",
            f"set sendmail=sendmail://{sendmail}",
            "-s",
            f"Grüße {tag}",
            "-a",
            "Cc: cc@example.org",
            "-a",
            "Bcc: hidden@example.net",
            "to@example.com",
        ],
        env,
        UTF8_BODY.encode(),
        cwd=env["HOME"],
    )
    assert (result.returncode, result.stderr) == (0, b"")

    wait_for_greeting(server, tag)


@pytest.mark.debian
def test_php_mail_crlf_headers_and_bcc(server: Server, public: Path, tag: str) -> None:
    php = debian_program("php", "php-cli")
    sendmail, env = user_setup(public, server)
    script = public / "send.php"
    # as a PHP string literal, without the last newline: mail() ends the body with CRLF
    body = UTF8_BODY.rstrip("\n").replace("\n", "\\n")
    script.write_text(
        textwrap.dedent(
            f"""\
            <?php
            $headers = "From: Shop <shop@example.com>\\r\\n"
                . "Cc: cc@example.org\\r\\n"
                . "Bcc: hidden@example.net\\r\\n"
                . "MIME-Version: 1.0\\r\\n"
                . "Content-Type: text/plain; charset=UTF-8";
            $ok = mail("to@example.com", "Grüße {tag}", "{body}", $headers, "-fbounce@example.com");
            exit($ok ? 0 : 1);
            """
        ),
        encoding="utf-8",
    )
    # -n: no php.ini, so nothing but sendmail_path decides how mail() sends
    result = run(
        [php, "-n", "-d", f"sendmail_path={sendmail} -t -i", str(script)],
        env,
        cwd=env["HOME"],
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")

    d = wait_for_greeting(server, tag)
    assert str(d.msg["From"]) == "Shop <shop@example.com>"


@pytest.mark.debian
def test_git_send_email_with_sendmail_cmd(server: Server, public: Path, tag: str) -> None:
    git = debian_program("git", "git")
    if (
        run([git, "send-email", "-h"], {"PATH": "/usr/bin:/bin"}).returncode == 1
        and not Path("/usr/lib/git-core/git-send-email").exists()
    ):
        pytest.skip("git send-email not installed: apt-get install git-email")
    sendmail, env = user_setup(public, server)
    env |= {"GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z"}
    repo = public / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q"],
        ["config", "user.name", "Zoë Ångström"],
        ["config", "user.email", "zoe@example.com"],
    ):
        assert run([git, *args], env, cwd=repo).returncode == 0
    (repo / "notes.txt").write_text(UTF8_BODY, encoding="utf-8")
    assert run([git, "add", "notes.txt"], env, cwd=repo).returncode == 0
    assert run([git, "commit", "-q", "-m", f"Grüße {tag}"], env, cwd=repo).returncode == 0
    result = run(
        [
            git,
            "send-email",
            "--quiet",
            "--confirm=never",
            "--suppress-cc=all",
            f"--sendmail-cmd={sendmail}",
            "--to=to@example.com",
            "--cc=cc@example.org",
            "--bcc=hidden@example.net",
            "-1",
        ],
        env,
        cwd=repo,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")

    (d,) = server.wait_for(tagged(tag))
    assert_to_cc_bcc(d, "to@example.com", "cc@example.org", "hidden@example.net")
    assert d.subject == f"[PATCH] Grüße {tag}"
    assert str(d.msg["From"]) == "Zoë Ångström <zoe@example.com>"
    assert "+Grüße aus Köln, ½ € ✓" in d.text()
    # git writes its own Message-ID: gmail keeps it
    assert d.message_id.startswith("<") and "@" in d.message_id


@pytest.mark.debian
def test_mutt_batch_mode(server: Server, public: Path, tag: str) -> None:
    mutt = debian_program("mutt", "mutt")
    sendmail, env = user_setup(public, server)
    muttrc = public / "muttrc"
    muttrc.write_text(
        textwrap.dedent(
            f"""\
            set sendmail="{sendmail} -oem -oi"
            set from="Zoë Ångström <zoe@example.com>"
            set use_from=yes
            set charset=utf-8
            set send_charset=utf-8
            set record=""
            set folder={env["HOME"]}
            set tmpdir={env["HOME"]}
            """
        ),
        encoding="utf-8",
    )
    result = run(
        [
            mutt,
            "-n",
            "-F",
            str(muttrc),
            "-s",
            f"Grüße {tag}",
            "-c",
            "cc@example.org",
            "-b",
            "hidden@example.net",
            "to@example.com",
        ],
        env,
        UTF8_BODY.encode(),
        cwd=env["HOME"],
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")

    d = wait_for_greeting(server, tag)
    assert str(d.msg["From"]) == "Zoë Ångström <zoe@example.com>"

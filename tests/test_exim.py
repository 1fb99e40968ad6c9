"""Exim 4 hands mail to gmail through the pipe transport in exim/, end to end.

A real Exim (Debian's exim4-daemon-light) runs the committed configuration: the
stand-alone file with its site macros set for the test, and the split-config
router and transport turned into a configuration by Debian's update-exim4.conf.
Its pipe runs the installed gmail as nobody, which delivers into the outbox of a
real `gaemail serve`.

Exim runs in a private mount namespace per command, in which a temporary
directory is bind-mounted over /etc/exim4 (holding trusted_configs, so that
`exim4 -C` keeps the root privilege it needs to run the pipe as nobody) and, for
the Debian configuration, over its spool and log directories.  Nothing on the
host changes, nothing is left behind, and no Exim daemon is ever started: every
delivery is a foreground `-odf` submission or a single `-qf` queue run.
"""

from __future__ import annotations

import grp
import re
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
    run,
    running_server,
    start_server,
    tagged,
    write_envdir,
)

pytestmark = [pytest.mark.e2e, pytest.mark.debian]

EXIM_FILES = Path(__file__).resolve().parent.parent / "exim"
STANDALONE = "gmail-standalone.conf"
SENDER = "sender@example.net"


@dataclass
class Exim:
    """One Exim configuration, and how to run exim4 with it in its own mount namespace."""

    exim: str
    unshare: str
    config: str  # its path inside the namespace
    binds: list[tuple[Path, str]]
    log_dir: Path

    def __call__(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        mounts = " && ".join(f"mount --bind '{src}' '{dst}'" for src, dst in self.binds)
        script = f'{mounts} && exec "$0" -C {self.config} "$@"'
        argv = [self.unshare, "--mount", "--propagation", "private", "sh", "-c", script]
        # Exim passes its caller's environment to nothing (keep_environment =).
        return run([*argv, self.exim, *args], {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, stdin)

    def mainlog(self) -> str:
        path = self.log_dir / "mainlog"
        return path.read_text(errors="replace") if path.exists() else ""

    def queue_count(self) -> int:
        result = self("-bpc")
        assert result.returncode == 0, result.stderr
        return int(result.stdout.decode().strip())

    def wait_for_log(self, pattern: str) -> str:
        """The first group (or the whole match) of `pattern` once it is in the main log."""
        deadline = time.monotonic() + WAIT
        while not (found := re.search(pattern, self.mainlog())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert found, f"no {pattern!r} in the main log:\n{self.mainlog()}"
        return found.group(1) if found.groups() else found.group(0)

    def wait_for_empty_queue(self) -> None:
        """Bounces are delivered by a child Exim after the submission returns."""
        deadline = time.monotonic() + WAIT
        while self.queue_count() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.queue_count() == 0, self("-bp").stdout.decode()


def exim_programs() -> tuple[str, str]:
    exim = debian_program("exim4", "exim4-daemon-light")
    need_root("exim4 -C keeps root privilege only for root, to run the pipe as nobody")
    return exim, debian_program("unshare", "util-linux")


def exim_owned(path: Path) -> Path:
    """A spool or log directory Exim (Debian-exim) can write."""
    path.mkdir(mode=0o750)
    shutil.chown(path, "Debian-exim", "Debian-exim")
    return path


def set_macros(text: str, values: dict[str, str]) -> str:
    """The configuration with each `NAME = default` site macro line set to our value."""
    for name, value in values.items():
        text, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, flags=re.M)
        assert count == 1, f"no default for {name} in the configuration"
    return text


def gmail_macros(envdir: Path) -> dict[str, str]:
    # nogroup stands in for the gaemail group that may read the secret
    return {
        "GAEMAIL_COMMAND": str(GMAIL),
        "GAEMAIL_USER": "nobody",
        "GAEMAIL_GROUP": grp.getgrgid(Account.nobody().gid).gr_name,
        "GAEMAIL_ENVDIR": str(envdir),
    }


def prepare_envdir(public: Path, server: Server) -> Path:
    nobody = Account.nobody()
    envdir = write_envdir(public / "envdir", server, nobody)["envdir"]
    check_account_can_run_gmail(nobody, caller_environ(envdir, path="/bin:/usr/bin"))
    return envdir


def standalone_exim(public: Path, envdir: Path) -> Exim:
    exim, unshare = exim_programs()
    etc = public / "etc-exim4"
    etc.mkdir()
    spool, logs = exim_owned(public / "spool"), exim_owned(public / "log")
    macros = gmail_macros(envdir) | {"GAEMAIL_SPOOL": str(spool), "GAEMAIL_LOG": str(logs)}
    (etc / STANDALONE).write_text(set_macros((EXIM_FILES / STANDALONE).read_text(), macros))
    (etc / "trusted_configs").write_text(f"/etc/exim4/{STANDALONE}\n")
    return Exim(exim, unshare, f"/etc/exim4/{STANDALONE}", [(etc, "/etc/exim4")], logs)


def debian_split_exim(public: Path, envdir: Path) -> Exim:
    """Debian's own configuration, split, with the two conf.d files of exim/ added."""
    exim, unshare = exim_programs()
    update = debian_program("update-exim4.conf", "exim4-config")
    etc = public / "etc-exim4"
    shutil.copytree("/etc/exim4", etc, symlinks=True)
    conf = etc / "update-exim4.conf.conf"
    conf.write_text(
        re.sub(
            r"^dc_use_split_config=.*$", "dc_use_split_config='true'", conf.read_text(), flags=re.M
        )
    )
    for name in ("router/190_local_gmail", "transport/30_local_gmail_pipe"):
        shutil.copy(EXIM_FILES / "conf.d" / name, etc / "conf.d" / name)
    # Site values the way exim/README.md says: macros in a main/ file that sorts first
    (etc / "conf.d/main/00_local_gmail").write_text(
        "".join(f"{name} = {value}\n" for name, value in gmail_macros(envdir).items())
    )
    generated = etc / "exim4.conf.gaemail-test"
    result = run(
        [update, "-d", str(etc), "-o", str(generated)], {"PATH": "/usr/sbin:/usr/bin:/bin"}
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    (etc / "trusted_configs").write_text(f"/etc/exim4/{generated.name}\n")
    spool, logs = exim_owned(public / "spool"), exim_owned(public / "log")
    binds = [(etc, "/etc/exim4"), (spool, "/var/spool/exim4"), (logs, "/var/log/exim4")]
    return Exim(exim, unshare, f"/etc/exim4/{generated.name}", binds, logs)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("exim")) as s:
        yield s


def message(tag: str, headers: str = "To: alice@example.com\n") -> bytes:
    return (
        f"{headers}Subject: Exim {tag} Grüße\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
        "Content-Transfer-Encoding: 8bit\n\n"
        "Zeile eins\n.\nFrom the start of a line\nGrüße ✓\n"
    ).encode()


BODY = "Zeile eins\n.\nFrom the start of a line\nGrüße ✓\n"


def test_standalone_batch_is_one_gmail_call(server: Server, public: Path, tag: str) -> None:
    exim = standalone_exim(public, prepare_envdir(public, server))
    recipients = ["alice@example.com", "o'brien@example.org", "carol@other.example"]
    result = exim("-odf", "-oi", "-f", SENDER, *recipients, stdin=message(tag))
    assert result.returncode == 0, result.stderr.decode(errors="replace")

    (d,) = server.wait_for(tagged(tag))  # one message, all three recipients
    assert d.envelope_to == recipients
    assert addresses(d.msg, "To") == ["alice@example.com"]
    assert d.msg.get_all("Bcc") is None
    assert d.msg["Cc"] is None
    assert d.subject == f"Exim {tag} Grüße"
    assert d.text() == BODY  # no mbox From line before it, no blank line after it
    log = exim.mainlog()
    assert re.search(r"=> alice <alice@example.com> R=to_gmail T=gmail_pipe", log), log
    assert "-> o'brien <o'brien@example.org> R=to_gmail T=gmail_pipe" in log
    assert "-> carol <carol@other.example> R=to_gmail T=gmail_pipe" in log
    assert exim.queue_count() == 0


def test_debian_split_config_routes_remote_mail_to_gmail(
    server: Server, public: Path, tag: str
) -> None:
    exim = debian_split_exim(public, prepare_envdir(public, server))
    routing = exim("-bt", "alice@example.com", "root")
    assert "router = gmail, transport = gmail_pipe" in routing.stdout.decode()
    assert routing.stdout.decode().count("transport = gmail_pipe") == 1  # root stays local

    headers = "To: alice@example.com\nCc: carol@other.example\nBcc: hidden@example.org\n"
    result = exim("-odf", "-oi", "-t", "-f", SENDER, stdin=message(tag, headers))
    assert result.returncode == 0, result.stderr.decode(errors="replace")

    (d,) = server.wait_for(tagged(tag))
    assert d.envelope_to == ["alice@example.com", "carol@other.example", "hidden@example.org"]
    assert addresses(d.msg, "To") == ["alice@example.com"]
    assert addresses(d.msg, "Cc") == ["carol@other.example"]
    assert d.msg.get_all("Bcc") is None
    assert "hidden@example.org" not in str(d.msg["Cc"]) + str(d.msg["To"])
    assert d.text() == BODY
    assert "=> alice <alice@example.com> R=gmail T=gmail_pipe" in exim.mainlog()
    assert exim.queue_count() == 0


def test_standalone_defers_while_the_proxy_is_down(tmp_path: Path, public: Path, tag: str) -> None:
    with running_server(tmp_path) as first:
        envdir = prepare_envdir(public, first)
        exim = standalone_exim(public, envdir)
    # The proxy is gone: gmail --no-queue exits 75 and Exim keeps the message.
    result = exim("-odf", "-oi", "-f", SENDER, "alice@example.com", stdin=message(tag))
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    log = exim.mainlog()
    assert re.search(
        r"== alice@example.com R=to_gmail T=gmail_pipe defer \(0\): "
        r"Child process of gmail_pipe transport returned 75",
        log,
    ), log
    assert "cannot reach the proxy" in log  # log_output: gmail's one line
    assert exim.queue_count() == 1
    assert not [d for d in first.delivered() if tagged(tag)(d)]

    # Back, on another port: the queue run delivers it once.
    second = start_server(first.state_dir, first.outbox)
    try:
        (envdir / "GMAIL_PROXY_URL").write_text(second.url + "\n")
        result = exim("-qf")
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        (d,) = second.wait_for(tagged(tag))
    finally:
        second.stop()
    assert d.envelope_to == ["alice@example.com"]
    assert d.text() == BODY
    assert "=> alice <alice@example.com> R=to_gmail T=gmail_pipe" in exim.mainlog()
    assert exim.queue_count() == 0


def test_standalone_defers_while_the_key_is_wrong(server: Server, public: Path, tag: str) -> None:
    """A setup mistake (77, 78) delays mail instead of bouncing it (temp_errors)."""
    envdir = prepare_envdir(public, server)
    exim = standalone_exim(public, envdir)
    key = envdir / "GMAIL_SECRET_KEY"
    right = key.read_text()
    key.write_text("not-the-proxy-key\n")
    result = exim("-odf", "-oi", "-f", SENDER, "alice@example.com", stdin=message(tag))
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    log = exim.mainlog()
    assert re.search(
        r"== alice@example.com R=to_gmail T=gmail_pipe defer \(0\): "
        r"Child process of gmail_pipe transport returned 77",
        log,
    ), log
    assert exim.queue_count() == 1

    key.write_text(right)
    assert exim("-qf").returncode == 0
    (d,) = server.wait_for(tagged(tag))
    assert d.envelope_to == ["alice@example.com"]
    assert exim.queue_count() == 0


def send_refused_message(exim: Exim, tag: str) -> str:
    """Submit a message whose .exe attachment the Mail API refuses; the bounce's queue id."""
    result = exim("-odf", "-oi", "-f", SENDER, "alice@example.com", stdin=refused_message(tag))
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    # The bounce is submitted, then delivered by a child Exim: wait for its outcome.
    bounce = exim.wait_for_log(r"(\S+) <= <> R=\S+")
    exim.wait_for_log(rf"{bounce} (=>|\*\*|==) ")
    return bounce


def refused_message(tag: str) -> bytes:
    return textwrap.dedent(
        f"""\
        To: alice@example.com
        Subject: Exim {tag} tool
        MIME-Version: 1.0
        Content-Type: multipart/mixed; boundary="b"

        --b
        Content-Type: text/plain; charset=UTF-8

        Here is the tool.
        --b
        Content-Type: application/octet-stream
        Content-Disposition: attachment; filename="tool.exe"
        Content-Transfer-Encoding: base64

        TVqQAAMAAAAEAAAA
        --b--
        """
    ).encode()


def test_standalone_fails_a_message_the_proxy_refuses(
    server: Server, public: Path, tag: str
) -> None:
    exim = standalone_exim(public, prepare_envdir(public, server))
    send_refused_message(exim, tag)
    log = exim.mainlog()
    # gmail exits 65 (EX_DATAERR): a permanent failure, not a deferral
    assert re.search(
        r"\*\* alice@example.com R=to_gmail T=gmail_pipe: "
        r"Child process of gmail_pipe transport returned 65",
        log,
    ), log
    assert "InvalidAttachmentTypeError" in log  # log_output: gmail's reason
    assert "== alice@example.com" not in log
    assert not [d for d in server.delivered() if tag in d.subject]


def _attached_text(d: Delivered) -> str:
    """The text of every attachment (base64 in the outbox file)."""
    return "".join(str(part.get_content()) for part in d.msg.iter_attachments())


def test_standalone_bounce_reaches_the_sender(server: Server, public: Path, tag: str) -> None:
    exim = standalone_exim(public, prepare_envdir(public, server))
    bounce = send_refused_message(exim, tag)
    # The bounce (From <>, RFC 3464: text, message/delivery-status, text/rfc822-headers)
    # went through gmail; Exim logs the local part, then the address.
    delivered = rf"{bounce} => \S+ <{re.escape(SENDER)}> R=to_gmail T=gmail_pipe$"
    assert re.search(delivered, exim.mainlog(), re.M), exim.mainlog()
    (d,) = server.wait_for(lambda d: d.envelope_to == [SENDER] and tag in _attached_text(d))
    assert "alice@example.com" in d.text()
    assert "(HTTP 400)" in d.text()  # return_fail_output: gmail's line in the bounce
    # The report's parts arrive as text attachments, their text intact.
    attached = list(d.msg.iter_attachments())
    names = [str(part.get_filename()) for part in attached]
    assert len(names) == 2 and all(name.endswith(".txt") for name in names), names
    report = attached[0].get_content()
    assert "Final-Recipient: rfc822;alice@example.com" in report.replace("; ", ";"), report
    exim.wait_for_empty_queue()

"""The Debian package, built and installed as an administrator would.

`make deb`'s script builds dist/gaemail_<version>_<arch>.deb (lintian must find
no error), then tests/deb_scenario.sh installs it with apt into a throwaway
copy of this system (an overlay of / in a private mount and PID namespace),
replacing Exim; real cron, mail(1) and PHP's mail() send as `nobody` through
/usr/sbin/sendmail into the drop box; the deliverer service's own command,
as its own account, delivers them to the package's own `gaemail serve`; and
the purge leaves nothing behind.  Each step writes what it saw to a results
directory, and the assertions below read it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_support import Delivered, debian_program, need_root

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = Path(__file__).resolve().parent / "deb_scenario.sh"
BUILD_TIMEOUT = 600  # the first build makes the pinned environment (about 140 MB)
SCENARIO_TIMEOUT = 300

pytestmark = pytest.mark.debian


def installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return result.stdout.endswith("install ok installed")


def build_deb() -> Path:
    """scripts/build-deb without its lintian run: the fixture runs lintian beside the install."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-deb")],
        cwd=ROOT,
        env={**os.environ, "LINTIAN": "no"},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"build-deb failed:\n{result.stderr[-4000:]}"
    deb = ROOT / result.stdout.strip().splitlines()[-1]
    assert deb.name.startswith("gaemail_") and deb.name.endswith(".deb")
    return deb


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build, install, send, deliver and purge once; the results directory."""
    need_root("apt installs the package into an overlay of / in a private mount namespace")
    for program, package in (
        ("dpkg-deb", "dpkg"),
        ("lintian", "lintian"),
        ("fakeroot", "fakeroot"),
        ("unshare", "util-linux"),
        ("cron", "cron"),
        ("mail", "bsd-mailx"),
        ("php", "php-cli"),
    ):
        debian_program(program, package)
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "probe", "/mnt"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount in a private mount namespace here: {probe.stderr.strip()}")
    if not installed("exim4-daemon-light"):
        pytest.skip("the test replaces Exim: apt-get install exim4-daemon-light (setup-system)")
    deb = build_deb()
    base = Path(tempfile.mkdtemp(prefix="gaemail-deb-"))
    out = tmp_path_factory.mktemp("deb-results")
    (out / "outbox").mkdir()
    tag = f"debtest{os.getpid()}"
    # What build-deb does after dpkg-deb, run while the scenario runs.
    lint_log = (out / "lintian.log").open("w")
    lint = subprocess.Popen(
        ["lintian", "--fail-on", "error", str(deb)], stdout=lint_log, stderr=subprocess.STDOUT
    )
    try:
        run = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",  # a timeout ends the whole namespace, not only unshare
                "/bin/sh",
                str(SCENARIO),
                "outer",
                str(deb),
                str(base),
                str(out),
                tag,
            ],
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
            check=False,
        )
        (out / "tag").write_text(tag)
        (out / "scenario.log").write_text(run.stdout + run.stderr)
        assert run.returncode == 0, f"scenario failed:\n{(run.stdout + run.stderr)[-3000:]}"
        (out / "lintian.rc").write_text(str(lint.wait(timeout=BUILD_TIMEOUT)))
        yield out
    finally:
        if lint.poll() is None:
            lint.kill()
            lint.wait()
        lint_log.close()
        shutil.rmtree(base, ignore_errors=True)


def fact(results: Path, name: str) -> str:
    return (results / name).read_text(errors="replace")


def delivered(results: Path) -> list[Delivered]:
    return [Delivered.read(path) for path in sorted((results / "outbox" / "new").iterdir())]


def test_lintian_finds_no_error(results: Path) -> None:
    log = fact(results, "lintian.log")
    assert not [line for line in log.splitlines() if line.startswith("E: ")], log[-3000:]
    assert fact(results, "lintian.rc") == "0", log[-3000:]


def test_installing_replaces_exim_and_keeps_bsd_mailx(results: Path) -> None:
    packages = dict(line.split(" ", 1) for line in fact(results, "packages").splitlines())
    assert packages["gaemail"] == "install ok installed"
    assert packages["bsd-mailx"] == "install ok installed"
    assert not packages["exim4-daemon-light"].startswith("install ")


def test_the_four_sendmail_paths_and_both_commands_lead_to_gaemail(results: Path) -> None:
    links = dict(line.split(" ", 1) for line in fact(results, "links").splitlines())
    gmail = "/usr/lib/gaemail/bin/gmail"
    for path in ("/usr/sbin/sendmail", "/usr/lib/sendmail", "/usr/bin/mailq", "/usr/bin/gmail"):
        assert links[path] == gmail
    assert links["/usr/bin/newaliases"] == "/usr/lib/gaemail/bin/newaliases"
    assert links["/usr/bin/gaemail"] == "/usr/lib/gaemail/bin/gaemail"
    # man -w gmail gaemail sendmail newaliases: the last two are links to the first two.
    gmail_1, gaemail_8 = "/usr/share/man/man1/gmail.1.gz", "/usr/share/man/man8/gaemail.8.gz"
    assert fact(results, "man").splitlines() == [gmail_1, gaemail_8, gmail_1, gaemail_8]


def test_account_queue_and_settings_have_their_modes(results: Path) -> None:
    assert fact(results, "account").startswith("gaemail:")
    modes = {line.split()[0]: line.split()[1:] for line in fact(results, "modes").splitlines()}
    assert modes["/etc/envdir"] == ["755", "root", "root"]
    assert modes["/etc/envdir/GMAIL_PROXY_URL"] == ["644", "root", "root"]
    assert modes["/etc/envdir/GMAIL_SECRET_KEY"] == ["640", "root", "gaemail"]
    assert modes["/var/spool/gaemail"] == ["755", "gaemail", "gaemail"]
    for area, mode in (("tmp", "3733"), ("new", "3733"), ("state", "2770"), ("failed", "2770")):
        assert modes[f"/var/spool/gaemail/{area}"] == [mode, "gaemail", "gaemail"]


def test_reinstalling_keeps_the_settings_their_modes_and_the_queued_mail(results: Path) -> None:
    before = fact(results, "settings-before")
    assert "/etc/envdir/GMAIL_SECRET_KEY" in before
    assert fact(results, "settings-after") == before, fact(results, "reinstall.log")
    assert fact(results, "modes-after-reinstall") == fact(results, "modes")
    assert fact(results, "queued-after-reinstall") == fact(results, "queued")


def test_the_deliverer_service_is_enabled_and_systemd_accepts_it(results: Path) -> None:
    assert "gaemail-deliver.service" in fact(results, "wants").split()
    assert fact(results, "unit-verify.rc").strip() == "0", fact(results, "unit-verify.log")


def test_newaliases_checks_debians_aliases_file(results: Path) -> None:
    log = fact(results, "newaliases.log")
    assert fact(results, "newaliases.rc").strip() == "0", log
    assert "/etc/aliases: 12 aliases, no problems" in log


def test_cron_and_mailx_as_nobody_php_as_www_data_queue_and_the_deliverer_sends_them(
    results: Path,
) -> None:
    tag = fact(results, "tag")
    assert fact(results, "mailx.rc").strip() == "0", fact(results, "mailx.log")
    assert fact(results, "php.rc").strip() == "0", fact(results, "php.log")
    assert fact(results, "queued").strip() == "3", fact(results, "cron.log")
    # The unit's own command: the daemon, woken by the queue, sent all three.
    assert fact(results, "deliverer").strip() == "/usr/bin/gaemail queue run --daemon"
    assert fact(results, "after-delivery").strip() == "0", fact(results, "deliver.log")
    by_subject = {d.subject: d for d in delivered(results)}
    assert len(by_subject) == 3, sorted(by_subject)
    mailx = by_subject[f"{tag} mailx"]
    assert mailx.envelope_to == ["mailx@example.com"]
    assert mailx.text() == f"{tag} mailx body\n"
    php = by_subject[f"{tag} php"]
    assert php.envelope_to == ["php@example.com"]
    assert php.text().rstrip("\r\n") == "php body"
    (cron,) = (d for s, d in by_subject.items() if s.startswith("Cron <nobody@"))
    assert cron.subject.endswith(f"echo {tag} cron output")
    assert cron.envelope_to == ["cron@example.com"]
    assert cron.text() == f"{tag} cron output\n"


def test_purge_leaves_no_file_and_keeps_the_account(results: Path) -> None:
    assert fact(results, "present-after-purge") == ""
    assert fact(results, "leftovers") == ""
    # Debian keeps system accounts on purge: their uid may still own files.
    assert fact(results, "account-after-purge").startswith("gaemail:")

"""`gaemail install-links` and `newaliases`, run as installed commands on temp trees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
GAEMAIL = BIN / "gaemail"
NEWALIASES = BIN / "newaliases"
PATHS = ("sbin/sendmail", "lib/sendmail", "bin/mailq", "bin/newaliases")


def gaemail(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GAEMAIL), *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """A /usr with another MTA's sendmail (a symlink) and mailq (a program)."""
    for directory in ("sbin", "lib", "bin"):
        (tmp_path / directory).mkdir()
    (tmp_path / "sbin" / "exim4").write_text("#!/bin/sh\necho exim\n")
    (tmp_path / "sbin" / "sendmail").symlink_to("exim4")
    (tmp_path / "bin" / "mailq").write_text("#!/bin/sh\necho exim mailq\n")
    (tmp_path / "bin" / "mailq").chmod(0o751)
    return tmp_path


def test_refuses_to_replace_another_mta_without_force(prefix: Path) -> None:
    result = gaemail("install-links", "--prefix", str(prefix))
    assert result.returncode == 64
    assert "--force" in result.stderr
    assert os.readlink(prefix / "sbin" / "sendmail") == "exim4"  # nothing changed
    assert not (prefix / "lib" / "sendmail").exists()


def test_force_links_all_four_paths_and_undo_restores_what_was_there(prefix: Path) -> None:
    result = gaemail("install-links", "--prefix", str(prefix), "--force")
    assert result.returncode == 0, result.stderr
    gmail = os.path.realpath(BIN / "gmail")
    for path in PATHS[:3]:
        assert os.path.realpath(prefix / path) == gmail
    assert os.path.realpath(prefix / "bin" / "newaliases") == os.path.realpath(NEWALIASES)
    assert os.readlink(prefix / "sbin" / "sendmail.gaemail-orig") == "exim4"

    again = gaemail("install-links", "--prefix", str(prefix))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already points at") == 4

    undone = gaemail("install-links", "--prefix", str(prefix), "--undo")
    assert undone.returncode == 0, undone.stderr
    assert os.readlink(prefix / "sbin" / "sendmail") == "exim4"
    mailq = prefix / "bin" / "mailq"
    assert not mailq.is_symlink()
    assert mailq.read_text() == "#!/bin/sh\necho exim mailq\n"
    assert mailq.stat().st_mode & 0o777 == 0o751
    assert not os.path.lexists(prefix / "lib" / "sendmail")
    assert not os.path.lexists(prefix / "bin" / "newaliases")
    assert sorted(p.name for p in prefix.rglob("*.gaemail-*")) == []


def test_undo_leaves_links_that_are_not_ours(prefix: Path) -> None:
    result = gaemail("install-links", "--prefix", str(prefix), "--undo")
    assert result.returncode == 0, result.stderr
    assert os.readlink(prefix / "sbin" / "sendmail") == "exim4"
    assert "not gaemail's, left as it is" in result.stdout


def newaliases(tmp_path: Path, text: str, **settings: str) -> subprocess.CompletedProcess[str]:
    aliases = tmp_path / "aliases"
    aliases.write_text(text)
    envdir = tmp_path / "envdir"
    envdir.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "GMAIL_ENVDIR": str(envdir), **settings}
    return subprocess.run(
        [str(NEWALIASES), "--aliases", str(aliases)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_newaliases_reports_a_usable_file(tmp_path: Path) -> None:
    text = "# comment\npostmaster: root\nroot: admin@example.com,\n  ops@example.com\n"
    result = newaliases(tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert "2 aliases, no problems" in result.stdout
    assert result.stderr == ""


def test_newaliases_names_each_problem_with_its_line(tmp_path: Path) -> None:
    text = (
        "root: admin@example.com\n"
        "this line has no colon\n"
        "loop1: loop2\n"
        "loop2: loop1\n"
        "pipe: |/usr/bin/procmail\n"
        "bare: someone\n"
        "root: other@example.com\n"
    )
    result = newaliases(tmp_path, text)
    assert result.returncode == 65
    lines = result.stderr.splitlines()
    path = tmp_path / "aliases"
    assert any(line.startswith(f"newaliases: {path}:2: not `name: address") for line in lines)
    assert any(f"{path}:3: 'loop1' loops: loop1 -> loop2 -> loop1" in line for line in lines)
    assert any(f"{path}:5:" in line and "no address gmail can deliver to" in line for line in lines)
    assert any(f"{path}:6:" in line and "GMAIL_DEFAULT_DOMAIN" in line for line in lines)
    assert any(f"{path}:7: 'root' again (line 1)" in line for line in lines)
    assert len(lines) == 6, lines  # loop2 loops too


def test_newaliases_with_a_default_domain_qualifies_bare_names(tmp_path: Path) -> None:
    result = newaliases(tmp_path, "bare: someone\n", GMAIL_DEFAULT_DOMAIN="example.net")
    assert result.returncode == 0, result.stderr


def test_newaliases_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "GMAIL_ENVDIR": str(tmp_path)}
    result = subprocess.run(
        [str(NEWALIASES), "--aliases", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 78
    assert "missing" in result.stderr


def test_newaliases_rejects_unknown_options_with_64(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(NEWALIASES), "--bogus"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 64


def test_gaemail_newaliases_is_the_same_check(tmp_path: Path) -> None:
    (tmp_path / "aliases").write_text("x: y@example.com\n")
    result = gaemail("newaliases", "--aliases", str(tmp_path / "aliases"))
    assert result.returncode == 0, result.stderr
    assert "1 aliases, no problems" in result.stdout


def test_serve_without_the_server_libraries_says_what_to_install() -> None:
    # As on a client-only install: importing Flask fails.
    code = (
        "import sys; sys.modules['flask'] = None\n"
        "from gaemail.admin import gaemail; gaemail.main(['serve', '--port', '0'], 'gaemail')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 69
    assert result.stderr.splitlines() == [
        "gaemail serve needs the server's libraries (flask is missing): "
        "pip install 'gaemail[server]'"
    ]

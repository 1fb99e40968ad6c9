"""The Django 6.1 leg: tests/django6_leg.py on Python 3.12 against a real `gaemail serve`.

Django 6 needs Python 3.12, the project's own venv has the system's Python, so
this leg builds a small venv of its own (Django 6.1, httpx, click; gaemail from
src/) beside it, once, and skips with the reason where there is no python3.12.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration_support import Server, running_server, tagged

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
LEG_VENV = Path(sys.prefix) / "django6"  # inside the project's venv: ignored, rebuilt at will
REQUIREMENTS = ["django>=6.1,<6.2", "httpx>=0.27", "click>=8.1"]


def python312() -> str:
    """A python3.12 that runs: on PATH, or one of pyenv's versions (its shim may not be)."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates = [shutil.which("python3.12"), *sorted(map(str, pyenv.glob("3.12*/bin/python3.12")))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", ""], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return candidate
    pytest.skip("no python3.12 on this machine: the Django 6 leg needs it")


def leg_python() -> Path:
    python = LEG_VENV / "bin" / "python"
    stamp = LEG_VENV / ".installed"
    if not stamp.exists():
        base = python312()
        subprocess.run([base, "-m", "venv", "--clear", str(LEG_VENV)], check=True, timeout=120)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
            capture_output=True,
            timeout=300,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot install Django 6.1 for Python 3.12: {done.stderr[-300:]!r}")
        stamp.touch()
    return python


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path) as s:
        yield s


def test_django_61_mailers_send_through_gaemail(server: Server, tmp_path: Path, tag: str) -> None:
    python = leg_python()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GMAIL_", "PYTHON"))},
        "PYTHONPATH": str(ROOT / "src"),
        "GMAIL_ENVDIR": str(server.key_envdir),
        "GMAIL_QUEUE_DIR": str(tmp_path / "queue"),
        "GMAIL_SYSLOG_SOCKET": str(tmp_path / "no-syslog"),
    }
    done = subprocess.run(
        [str(python), str(ROOT / "tests" / "django6_leg.py"), server.url, tag],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    seen = json.loads(done.stdout)
    assert str(seen["django"]).startswith("6.1")
    assert seen["send_mail"] == 1 and seen["mailer"] == 1
    assert "proxy_ulr" in seen["typo"]
    assert seen["checks"] == []
    plain, rich = sorted(server.wait_for(tagged(tag), count=2), key=lambda d: d.subject)
    assert plain.subject == f"plain {tag} ☃" and plain.text() == "Grüße\n"
    assert sorted(rich.envelope_to) == ["audit@example.com", "to@example.org"]
    assert rich.msg["Bcc"] is None and rich.message_id == seen["message_id"]
    parts = {p.get_filename(): p for p in rich.msg.iter_attachments()}
    assert parts["data.bin"].get_content() == bytes(range(256))
    assert parts["logo.png"]["Content-ID"] == "<logo@example>"

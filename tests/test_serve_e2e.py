"""`gaemail serve` as a real process on loopback, driven with curl as the interface documents."""

from __future__ import annotations

import email
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from email import policy
from pathlib import Path

import pytest

from gaemail.protocol import v1

pytestmark = pytest.mark.e2e

TIMEOUT = 30  # seconds, for every wait on the server or curl
GAEMAIL = Path(sys.executable).with_name("gaemail")
CURL = shutil.which("curl")
LATIN1_MESSAGE = (
    b"From: Cron Daemon <cron@example.com>\nTo: admin@example.org\nSubject: nightly\n"
    b"Message-ID: <nightly-1@example.com>\n"
    b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
    b"Gr\xfc\xdfe, all done & 100% fine\n"
)


class ServeProcess:
    """A running `gaemail serve`, its stdout read line by line with timeouts."""

    def __init__(self, args: list[str], env: dict[str, str], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        with stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [str(GAEMAIL), "serve", "--host", "127.0.0.1", "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(b"")  # end of output: the process is gone

    def read_line(self) -> str:
        try:
            line = self._lines.get(timeout=TIMEOUT)
        except queue.Empty:
            line = None
        if not line:
            stderr = self.stderr_path.read_text()
            raise AssertionError(f"gaemail serve printed no line in {TIMEOUT}s: {stderr}")
        return line.decode().rstrip("\n")

    def startup(self, lines: int) -> tuple[str, Path, list[str]]:
        """The URL and outbox from the first lines of output, and all those lines."""
        output = [self.read_line() for _ in range(lines)]
        url = re.fullmatch(r"Listening on (http://127\.0\.0\.1:\d+/)", output[0])
        outbox = re.fullmatch(r"Outbox \(Maildir\): (.+)", output[1])
        assert url and outbox, output
        return url.group(1), Path(outbox.group(1)), output

    def stop(self) -> int:
        """SIGTERM, then the exit status; killed if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
            raise
        finally:
            self._reader.join(TIMEOUT)
            assert self.process.stdout is not None
            self.process.stdout.close()


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """start_serve(*args, env=...) runs the installed command; every one is stopped after."""
    if not GAEMAIL.exists():
        pytest.skip(f"the gaemail command is not installed next to {sys.executable}")
    started: list[ServeProcess] = []

    def start(*args: str, env: dict[str, str]) -> ServeProcess:
        serve = ServeProcess(list(args), env, tmp_path / f"stderr-{len(started)}.txt")
        started.append(serve)
        return serve

    yield start
    for serve in started:
        serve.stop()


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment without gaemail settings, state kept under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMAIL_", "GAEMAIL_"))}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["GMAIL_ENVDIR"] = str(tmp_path / "no-system-envdir")  # not the machine's /etc/envdir
    return env


def curl_post(url: str, msg_file: Path, signature: str) -> str:
    """POST exactly as the documented interface shows; returns the HTTP status."""
    if CURL is None:
        pytest.skip("curl is not installed; the interface is documented with curl")
    result = subprocess.run(
        [
            CURL, "-sS", "-o", os.devnull, "-w", "%{http_code}", "--max-time", str(TIMEOUT),
            "--data-urlencode", f"msg@{msg_file}",
            "--data-urlencode", f"signature={signature}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_serve_relays_curl_posts_into_the_maildir(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str], tmp_path: Path
) -> None:
    secret_file = tmp_path / "keys"
    secret_file.write_text("# current\ne2e-key\n")
    serve = start_serve(
        "--secret-file",
        str(secret_file),
        "--outbox",
        str(tmp_path / "box"),
        "--authorized-sender",
        "cron@example.com",
        env=clean_env,
    )
    url, outbox, _ = serve.startup(3)
    assert outbox == tmp_path / "box"
    msg_file = tmp_path / "msg.eml"
    msg_file.write_bytes(LATIN1_MESSAGE)

    assert curl_post(url, msg_file, v1.sign(b"e2e-key", LATIN1_MESSAGE)) == "204"
    assert curl_post(url, msg_file, v1.sign(b"wrong", LATIN1_MESSAGE)) == "400"

    (path,) = (outbox / "new").iterdir()
    delivered = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert delivered["X-Envelope-To"] == "admin@example.org"
    assert delivered["X-Gaemail-Message-Id"] == "<nightly-1@example.com>"
    body = delivered.get_body()
    assert body is not None
    assert body.get_content() == "Grüße, all done & 100% fine\n"

    assert serve.stop() == 0
    log = serve.stderr_path.read_text()
    assert "sent 204 message-id=<nightly-1@example.com> recipients=1" in log
    assert "refused 400 kind=signature" in log
    assert "e2e-key" not in log


def test_serve_without_a_secret_makes_a_development_envdir(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str], tmp_path: Path
) -> None:
    serve = start_serve("--authorized-sender", "cron@example.com", env=clean_env)
    url, outbox, output = serve.startup(4)
    envdir = tmp_path / "state" / "gaemail" / "envdir"
    assert output[2] == f"Outbox view: {url}outbox/"
    assert output[3] == f"export GMAIL_ENVDIR={envdir}"
    assert outbox == tmp_path / "state" / "gaemail" / "outbox"
    assert (envdir / "GMAIL_PROXY_URL").read_text() == url + "\n"
    key_file = envdir / "GMAIL_SECRET_KEY"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 32

    msg_file = tmp_path / "msg.eml"
    msg_file.write_bytes(LATIN1_MESSAGE)
    assert curl_post(url, msg_file, v1.sign(key.encode(), LATIN1_MESSAGE)) == "204"
    assert serve.stop() == 0
    assert key not in "\n".join(output) + serve.stderr_path.read_text()

    # A restart keeps the key, so a configured gmail keeps working, and updates the URL.
    again = start_serve(env=clean_env)
    new_url, _, _ = again.startup(4)
    assert key_file.read_text().strip() == key
    assert (envdir / "GMAIL_PROXY_URL").read_text() == new_url + "\n"


def test_serve_reports_a_busy_port(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str], tmp_path: Path
) -> None:
    first = start_serve(env=clean_env)
    url, _, _ = first.startup(4)
    port = url.rsplit(":", 1)[1].rstrip("/")
    result = subprocess.run(
        [str(GAEMAIL), "serve", "--host", "127.0.0.1", "--port", port],
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 78  # EX_CONFIG
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_serve_takes_its_limits_from_the_environment(
    start_serve: Callable[..., ServeProcess], clean_env: dict[str, str], tmp_path: Path
) -> None:
    secret_file = tmp_path / "keys"
    secret_file.write_text("e2e-key\n")
    env = {**clean_env, "GAEMAIL_LIMITS": "max_recipients=1"}
    serve = start_serve("--secret-file", str(secret_file), "--outbox", str(tmp_path / "box"),
                        "--authorized-sender", "cron@example.com", env=env)  # fmt: skip
    url, outbox, _ = serve.startup(3)
    two = LATIN1_MESSAGE.replace(b"To: admin@example.org", b"To: admin@example.org, b@example.org")
    assert two != LATIN1_MESSAGE
    msg_file = tmp_path / "msg.eml"
    msg_file.write_bytes(two)
    assert curl_post(url, msg_file, v1.sign(b"e2e-key", two)) == "400"
    assert list((outbox / "new").iterdir()) == []
    assert serve.stop() == 0
    assert "(limit max_recipients)" in serve.stderr_path.read_text()

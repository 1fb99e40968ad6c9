"""Resident memory of `gaemail serve` over many large messages: it must stay flat.

Starts the real `gaemail serve` (which keeps no sent message in memory: the
Maildir is the record), POSTs COUNT messages of about 25 MB each (a random
attachment, so every byte >= 0x80 case is there), and reads the server's
VmRSS from /proc after each.  Delivered files are removed as they arrive, to
spare the disk; the server never reads them back.  Target: after the first
WARMUP messages, RSS stays within +-10 % of its value then.

    .venv/bin/python bench/outbox_memory.py [--count N] [--megabytes M]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from stdlib_client import encode_form
from workbench import CRON_PATH, VENV_BIN

WARMUP = 10
TIMEOUT = 120.0


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def big_message(n: int, megabytes: float) -> bytes:
    msg = EmailMessage()
    msg["From"] = "bench@example.com"
    msg["To"] = "rcpt@example.org"
    msg["Subject"] = f"large {n}"
    msg["Message-ID"] = f"<large-{n}-{time.time_ns()}@example.com>"
    msg.set_content("A large attachment follows.\n")
    # base64 grows the attachment by 4/3: this makes the message `megabytes` long.
    raw = os.urandom(int(megabytes * 1_000_000 * 3 / 4))
    msg.add_attachment(raw, maintype="application", subtype="pdf", filename="big.pdf")
    return msg.as_bytes()


def start(state: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    env = {"PATH": CRON_PATH, "HOME": str(state), "LANG": "C.UTF-8"}
    env["GMAIL_ENVDIR"] = str(state / "no-envdir")
    argv = [str(VENV_BIN / "gaemail"), "serve", "--port", "0", "--state-dir", str(state)]
    argv += ["--authorized-sender", "*"]
    log = (state / "serve.log").open("wb")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env)
    assert proc.stdout is not None
    url = envdir = ""
    deadline = time.monotonic() + 60
    while not envdir and time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if line.startswith("Listening on "):
            url = line.split()[-1]
        if line.startswith("export GMAIL_ENVDIR="):
            envdir = line.strip().split("=", 1)[1]
    if not envdir:
        proc.kill()
        raise SystemExit("gaemail serve did not start")
    key = (Path(envdir) / "GMAIL_SECRET_KEY").read_text().strip()
    return proc, url, key


def post(url: str, body: bytes) -> int:
    host, port = re.fullmatch(r"http://([\d.]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.request("POST", "/", body, {"Content-Type": "application/x-www-form-urlencoded"})
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--megabytes", type=float, default=25.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gaemail-memory-") as tmp:
        state = Path(tmp)
        proc, url, key = start(state)
        new = state / "outbox" / "new"
        samples: list[int] = []
        try:
            for n in range(args.count):
                body = encode_form(big_message(n, args.megabytes), key.encode())
                status = post(url, body)
                if status != 204:
                    raise SystemExit(f"message {n}: HTTP {status}; see {state}/serve.log")
                for path in new.iterdir():
                    path.unlink()
                samples.append(rss_kib(proc.pid))
                print(f"message {n + 1:3d}: {len(body) / 1e6:5.1f} MB posted,"
                      f" RSS {samples[-1] / 1024:7.1f} MiB", flush=True)  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(30)
    base = samples[min(WARMUP, len(samples)) - 1]
    after = samples[WARMUP - 1 :] if len(samples) >= WARMUP else samples
    low, high = min(after) / base - 1, max(after) / base - 1
    print(
        f"RSS after message {WARMUP}: {base / 1024:.1f} MiB; after that:"
        f" min {min(after) / 1024:.1f}, median {statistics.median(after) / 1024:.1f},"
        f" max {max(after) / 1024:.1f} MiB"
        f" ({low:+.1%} .. {high:+.1%}); last {samples[-1] / 1024:.1f} MiB; target within +-10%:"
        f" {'met' if max(abs(low), abs(high)) <= 0.10 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()

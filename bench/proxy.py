"""The proxy the clients send to, and the SMTP sink msmtp sends to.

The proxy is `gaemail serve` (the real app on App Engine's mail stub, writing a
Maildir) when this checkout has it, else the stdlib 204 receiver; both clients
always send to the same one.
"""

from __future__ import annotations

from pathlib import Path

import services
from workbench import BENCH_DIR, VENV_BIN, Proxy, Workbench

URL = r"(http://127\.0\.0\.1:\d+/?)"
RECEIVER_SECRET = "bench-secret"


def start_proxy(bench: Workbench) -> services.Service:
    """Start the proxy and record where it listens in `bench.proxy`."""
    if bench.features.serve:
        state = bench.scratch / "serve"
        service = services.start(
            "gaemail-serve",
            [
                str(VENV_BIN / "gaemail"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--state-dir",
                str(state),
                "--outbox",
                str(state / "outbox"),
                "--authorized-sender",
                "*",
            ],
            bench.base_env(),
            bench.scratch,
            {"url": r"Listening on " + URL, "envdir": r"export GMAIL_ENVDIR=(\S+)"},
        )
        secret = _first_line(Path(service.found["envdir"]) / "GMAIL_SECRET_KEY")
        kind = "gaemail serve (App Engine mail stub, Maildir outbox)"
        bench.proxy = Proxy(service.found["url"], secret, kind, service.proc.pid)
        return service
    service = services.start(
        "receiver",
        [str(bench.python), str(BENCH_DIR / "receiver.py")],
        bench.base_env(),
        bench.scratch,
        {"url": URL},
    )
    kind = "stdlib 204 receiver (gaemail serve not available)"
    bench.proxy = Proxy(service.found["url"], RECEIVER_SECRET, kind)
    return service


def start_smtp_sink(bench: Workbench) -> tuple[services.Service, int]:
    """The SMTP sink and its port."""
    service = services.start(
        "smtp-sink",
        [str(bench.python), str(BENCH_DIR / "smtp_sink.py")],
        bench.base_env(),
        bench.scratch,
        {"port": r"smtp://127\.0\.0\.1:(\d+)"},
    )
    return service, int(service.found["port"])


def outbox_count(bench: Workbench) -> int | None:
    """Messages in the proxy's Maildir so far, or None for the 204 receiver."""
    new = bench.scratch / "serve" / "outbox" / "new"
    return sum(1 for _ in new.iterdir()) if new.is_dir() else None


def _first_line(path: Path) -> str:
    return path.read_text("utf-8").splitlines()[0].strip()

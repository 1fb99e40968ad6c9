"""Request rate of the gaemail local app with its Maildir against the 2010 handler.

Both run under the same `gunicorn -w 2` (sync workers) on the SDK's mail stub:
gaemail's app from `gaemail.server.local:app_from_environment()` (the stub
subclass writing each message into a Maildir on disk, fsynced), and
`baseline_2010.py` (the stock stub).  wrk posts the same signed form body of
msg.eml to each, in alternating rounds; the figure is the median of the
per-round ratios.  Target: >= 1.0.

    .venv/bin/python bench/outbox_throughput.py [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import services
from stdlib_client import encode_form
from throughput import LISTENING, parse_wrk
from workbench import BENCH_DIR, CRON_PATH, MESSAGE, VENV_BIN

SECRET = "bench-outbox-secret"
OURS = "gaemail + Maildir"
BASELINE = "2010 handler"


def gunicorn(name: str, app: str, env: dict[str, str], scratch: Path) -> services.Service:
    argv = [str(VENV_BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:0"]
    argv += ["--pythonpath", str(BENCH_DIR), app]
    base = {"PATH": CRON_PATH, "HOME": str(scratch), "LANG": "C.UTF-8"}
    base["GMAIL_SECRET_KEY"] = SECRET
    return services.start(name, argv, {**base, **env}, scratch, {"url": LISTENING})


def wrk(url: str, body: Path, seconds: int, connections: int) -> float:
    import subprocess

    program = shutil.which("wrk", path=CRON_PATH)
    if program is None:
        sys.exit("wrk is not installed (scripts/setup-system installs it)")
    argv = [program, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    argv += ["-s", str(BENCH_DIR / "post.lua"), url, "--", str(body)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    load = parse_wrk(done.stdout)
    if load.non_2xx or load.socket_errors:
        sys.exit(f"{url}: {load.non_2xx} non-2xx answers, {load.socket_errors} socket errors")
    return load.requests_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--outbox-under",
        type=Path,
        help="make the Maildir under this directory (e.g. /dev/shm) [default: the scratch dir]",
    )
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="gaemail-bench-")
    with tmp, contextlib.ExitStack() as stack:
        scratch = Path(tmp.name)
        body = scratch / "body.form"
        body.write_bytes(encode_form(MESSAGE.read_bytes(), SECRET.encode()))
        # On disk by default, as gaemail serve's is.
        under = args.outbox_under
        outbox = Path(tempfile.mkdtemp(dir=under)) / "outbox" if under else scratch / "outbox"
        if under:
            stack.callback(shutil.rmtree, outbox.parent, True)
        ours = gunicorn("gaemail", "gaemail.server.local:app_from_environment()",
                        {"GAEMAIL_OUTBOX": str(outbox)}, scratch)  # fmt: skip
        stack.callback(ours.stop)
        base = gunicorn("baseline", "baseline_2010:create_app()", {}, scratch)
        stack.callback(base.stop)
        urls = {OURS: ours.found["url"] + "/", BASELINE: base.found["url"] + "/"}
        for url in urls.values():
            wrk(url, body, 1, args.connections)  # warm-up, not counted
        rates: dict[str, list[float]] = {label: [] for label in urls}
        for n in range(args.rounds):
            order = list(urls.items()) if n % 2 == 0 else list(reversed(urls.items()))
            for label, url in order:
                rates[label].append(wrk(url, body, args.seconds, args.connections))
        ratios = [a / b for a, b in zip(rates[OURS], rates[BASELINE], strict=True)]
        delivered = len(list((outbox / "new").iterdir()))
    for label, runs in rates.items():
        print(f"{label:<20} req/s {spread(runs, 0)}")
    print(f"ratio gaemail/2010: {spread(ratios, 2)}; target >= 1.00;"
          f" {delivered} messages written to the Maildir")  # fmt: skip


def spread(values: list[float], digits: int) -> str:
    """median (min-max)."""
    return (
        f"{statistics.median(values):.{digits}f}"
        f" ({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


if __name__ == "__main__":
    main()

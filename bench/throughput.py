"""(b) Server throughput: the gaemail app against bare Flask, under the same gunicorn.

Both apps run as `gunicorn -w 2 -b 127.0.0.1:0` (sync workers) side by side; wrk
posts the same signed 4 KB form body over N connections for a few seconds per
endpoint, endpoints alternating round by round, and the ratio is the median of
per-round ratios of requests/s.  wrk shares the CPUs with the workers, so the
absolute figures are lower bounds; the ratio is what to watch.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import services
from paired import BenchError, Spread
from report import Section, at_least, table
from stdlib_client import encode_form
from workbench import BENCH_DIR, CRON_PATH, MESSAGE, VENV_BIN, Workbench

GAEMAIL_APP = "gaemail.server.local:app_from_environment()"
BARE_APP = "bare_app:create_app()"
SECRET = "bench-throughput-secret"
GAEMAIL = "gaemail app (local: mail stub + Maildir)"
BARE = "bare Flask 204"
TMPFS = Path("/dev/shm")
LISTENING = r"Listening at: (http://127\.0\.0\.1:\d+)"
UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class Load:
    """One wrk run's outcome."""

    requests_per_s: float
    requests: int
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


@dataclass(frozen=True)
class Endpoint:
    label: str
    url: str


def gunicorn(bench: Workbench, name: str, app: str, extra_env: dict[str, str]) -> services.Service:
    """One app under the bench's one gunicorn setup."""
    argv = [
        str(VENV_BIN / "gunicorn"),
        "-w",
        "2",
        "-b",
        "127.0.0.1:0",
        "--pythonpath",
        str(BENCH_DIR),
        app,
    ]
    env = {**bench.base_env(), **extra_env}
    return services.start(name, argv, env, bench.scratch, {"url": LISTENING})


def wrk(bench: Workbench, url: str, body: Path, seconds: int) -> Load:
    program = shutil.which("wrk", path=CRON_PATH)
    if program is None:
        raise BenchError("wrk is not installed (scripts/setup-system installs it)")
    argv = [
        program,
        "-t1",
        f"-c{bench.counts.wrk_connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(BENCH_DIR / "post.lua"),
        url,
        "--",
        str(body),
    ]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
        env=bench.base_env(),
    )
    if done.returncode != 0:
        raise BenchError(f"wrk exited {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def parse_wrk(text: str) -> Load:
    """The figures the report needs from wrk's --latency output."""

    def number(pattern: str, default: str | None = None) -> str:
        match = re.search(pattern, text)
        if match:
            return match.group(1)
        if default is None:
            raise BenchError(f"no {pattern!r} in wrk's output:\n{text}")
        return default

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
        if match is None:
            raise BenchError(f"no {percent}% latency in wrk's output:\n{text}")
        return float(match.group(1)) * UNITS_MS[match.group(2)]

    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return Load(
        requests_per_s=float(number(r"Requests/sec:\s+([\d.]+)")),
        requests=int(number(r"(\d+) requests in")),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        non_2xx=int(number(r"Non-2xx or 3xx responses: (\d+)", "0")),
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def measure(bench: Workbench, endpoints: list[Endpoint], body: Path) -> dict[str, list[Load]]:
    """A short untimed warm-up per endpoint, then rounds in alternating order."""
    counts = bench.counts
    for endpoint in endpoints:
        wrk(bench, endpoint.url, body, 1)
    loads: dict[str, list[Load]] = {e.label: [] for e in endpoints}
    for round_no in range(counts.wrk_rounds):
        order = endpoints if round_no % 2 == 0 else list(reversed(endpoints))
        for endpoint in order:
            loads[endpoint.label].append(wrk(bench, endpoint.url, body, counts.wrk_seconds))
    return loads


def server_throughput(bench: Workbench) -> Section:
    body = bench.scratch / "body.form"
    body.write_bytes(encode_form(MESSAGE.read_bytes(), SECRET.encode()))
    outbox = bench.scratch / "gunicorn-outbox"
    with contextlib.ExitStack() as stack:

        def serve(name: str, app: str, outbox: Path | None = None) -> str:
            env = {"GMAIL_SECRET_KEY": SECRET}
            if outbox is not None:
                env["GAEMAIL_OUTBOX"] = str(outbox)
            service = gunicorn(bench, name, app, env)
            stack.callback(service.stop)
            return service.found["url"]

        bare_url = serve("gunicorn-bare", BARE_APP)
        endpoints = [
            Endpoint(GAEMAIL, serve("gunicorn-gaemail", GAEMAIL_APP, outbox) + "/"),
            Endpoint(BARE, bare_url + "/"),
            Endpoint("Flask + v1 verify, 204", bare_url + "/verify"),
        ]
        ram = tmpfs_dir(stack)
        if ram is not None:
            url = serve("gunicorn-gaemail-tmpfs", GAEMAIL_APP, ram / "outbox")
            endpoints.append(Endpoint("gaemail app, Maildir on tmpfs", url + "/"))
        loads = measure(bench, endpoints, body)
    return _section(bench, endpoints, loads, body, outbox)


def tmpfs_dir(stack: contextlib.ExitStack) -> Path | None:
    """A directory on tmpfs, removed with `stack`: shows what the Maildir's fsyncs cost."""
    if not TMPFS.is_dir() or not filesystem(TMPFS).startswith("tmpfs "):
        return None
    path = Path(tempfile.mkdtemp(prefix="gaemail-bench-", dir=TMPFS))
    stack.callback(shutil.rmtree, path, True)
    return path


def _section(
    bench: Workbench,
    endpoints: list[Endpoint],
    loads: dict[str, list[Load]],
    body: Path,
    outbox: Path,
) -> Section:
    counts = bench.counts
    section = Section(
        "b",
        f"server throughput: gunicorn -w 2 (sync), wrk -t1 -c{counts.wrk_connections}"
        f" -d{counts.wrk_seconds}s x {counts.wrk_rounds} rounds, {body.stat().st_size:,}-byte"
        " signed form body",
    )
    header = ["endpoint", "req/s", "p50 ms", "p99 ms", "errors", "x bare"]
    section.lines += table(header, [_row(e.label, loads) for e in endpoints])
    delivered = sum(1 for _ in (outbox / "new").iterdir()) if (outbox / "new").is_dir() else 0
    section.lines.append(
        f"the gaemail app wrote {delivered:,} messages into its Maildir ({filesystem(outbox)}),"
        " each written, fsynced, renamed into new/ and new/ fsynced before the 204, and logs"
        " one line per request"
    )
    if any(r.non_2xx or r.socket_errors for runs in loads.values() for r in runs):
        section.lines.append("WARNING: some requests failed: see the errors column, gunicorn logs")
    ratio = Spread.of(_per_round(loads[GAEMAIL], loads[BARE]))
    section.verdicts.append(at_least("gaemail app >= 0.60x bare Flask req/s", ratio, 0.60))
    section.data = {
        "endpoints": {e.label: e.url for e in endpoints},
        "loads": {label: [asdict(r) for r in runs] for label, runs in loads.items()},
        "maildir_messages": delivered,
    }
    return section


def _row(label: str, loads: dict[str, list[Load]]) -> list[str]:
    runs = loads[label]
    return [
        label,
        Spread.of([r.requests_per_s for r in runs]).show(0),
        f"{Spread.of([r.p50_ms for r in runs]).median:.2f}",
        f"{Spread.of([r.p99_ms for r in runs]).median:.2f}",
        str(sum(r.non_2xx + r.socket_errors for r in runs)),
        "-" if label == BARE else Spread.of(_per_round(runs, loads[BARE])).show(),
    ]


def _per_round(runs: list[Load], baseline: list[Load]) -> list[float]:
    return [a.requests_per_s / b.requests_per_s for a, b in zip(runs, baseline, strict=True)]


def filesystem(path: Path) -> str:
    """The type of the file system holding `path`, from /proc/self/mounts."""
    best, kind = "", "unknown file system"
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3 or len(fields[1]) <= len(best):
            continue
        mount = fields[1]
        if resolved == mount or resolved.startswith(mount.rstrip("/") + "/"):
            best, kind = mount, f"{fields[2]} at {mount}"
    return kind

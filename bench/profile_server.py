"""Where the proxy's time goes per request: the local app in-process, under cProfile.

    .venv/bin/python bench/profile_server.py                  # bench/msg.eml
    .venv/bin/python bench/profile_server.py a.eml b.eml -n 2000 --sort tottime
    .venv/bin/python bench/profile_server.py --maildir /dev/shm/x --no-profile

Each message is signed and POSTed through Flask's test client to the local app
(the SDK's mail stub, a Maildir outbox in a fresh temporary directory unless
--maildir names one), as gunicorn would hand it over.  Prints CPU ms per request
unprofiled, then the top functions of a profiled run.  Section (b) of run.py
measures the same app under gunicorn and wrk.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

from flask.testing import FlaskClient

from gaemail import protocol
from gaemail.protocol import v1
from gaemail.server import ServerConfig
from gaemail.server.app import log_requests_to
from gaemail.server.local import create_local_app

BENCH_DIR = Path(__file__).resolve().parent
KEY = b"profile-key"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", nargs="*", type=Path, default=[BENCH_DIR / "msg.eml"])
    parser.add_argument("-n", type=int, default=1000, help="requests per message (default 1000)")
    parser.add_argument("--maildir", type=Path, help="the outbox (default: a temporary one)")
    parser.add_argument("--sort", default="cumulative", help="pstats order (default cumulative)")
    parser.add_argument("--top", type=int, default=40, help="functions to list (default 40)")
    parser.add_argument("--no-profile", action="store_true", help="only the timing")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gaemail-profile-") as scratch:
        outbox = args.maildir or Path(scratch) / "outbox"
        app = create_local_app(ServerConfig(keys=(KEY,)), outbox, keep=100)
        log_requests_to(io.StringIO())  # one line per request, as served, unseen
        client = app.test_client()
        for path in args.messages:
            body = v1.encode_request(path.read_bytes(), KEY)
            _post(client, body, min(args.n, 50), path)  # warm-up: imports, caches
            start = time.process_time()
            _post(client, body, args.n, path)
            cpu_ms = (time.process_time() - start) / args.n * 1000
            print(f"{path.name}: {cpu_ms:.3f} ms CPU per request ({outbox})")
            if not args.no_profile:
                profile = cProfile.Profile()
                profile.runcall(_post, client, body, args.n, path)
                pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


def _post(client: FlaskClient, body: bytes, count: int, path: Path) -> None:
    for _ in range(count):
        answer = client.post("/", data=body, content_type=v1.CONTENT_TYPE)
        if answer.status_code != protocol.SENT:
            sys.exit(f"{path}: answered {answer.status_code}: {answer.text}")


if __name__ == "__main__":
    main()

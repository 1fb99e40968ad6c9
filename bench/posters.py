"""The two posters of the one send pipeline, per message, over one kept connection.

    .venv/bin/python bench/posters.py [--messages 300] [--rounds 7]

Sends the same signed message through `transport.send` with gmail's http.client
Connection, the Python API's httpx PooledConnection (every socket operation
bounded by the exchange's deadline), and a plain httpx.Client (no deadline), to
bench/receiver.py in a process of its own.  Rounds interleave the three (A B C,
then C B A); the report is the median per-message time and the median of the
per-round ratios to http.client, with their min-max.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gaemail import transport
from gaemail.pooled import PooledConnection
from gaemail.protocol import v1

HERE = Path(__file__).resolve().parent
MESSAGE = (HERE / "msg.eml").read_bytes()
SECRET = b"bench-secret"


class PlainHttpx:
    """httpx as the Python API used it before: each read bounded, not the exchange."""

    def __init__(self, endpoint: transport.Endpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self._client = httpx.Client(timeout=timeout, verify=endpoint.scheme == "https")

    def post(self, body: bytes) -> transport.Response:
        answer = self._client.post(
            self.endpoint.url, content=body, headers={"Content-Type": v1.CONTENT_TYPE}
        )
        return transport.Response(answer.status_code, answer.reason_phrase, None)

    def close(self) -> None:
        self._client.close()


def per_message(poster: transport.Poster, count: int) -> float:
    transport.send(poster, MESSAGE, SECRET, fix_sender=False)  # open the connection
    started = time.perf_counter()
    for _ in range(count):
        transport.send(poster, MESSAGE, SECRET, fix_sender=False)
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    receiver = subprocess.Popen(
        [sys.executable, str(HERE / "receiver.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        endpoint = transport.Endpoint.parse(receiver.stdout.readline().strip())
        makers: dict[str, Callable[[], transport.Poster]] = {
            "http.client": lambda: transport.Connection(endpoint, 30),
            "httpx, deadline": lambda: PooledConnection(endpoint, 30),
            "httpx, plain": lambda: PlainHttpx(endpoint, 30),
        }
        times: dict[str, list[float]] = {name: [] for name in makers}
        for round_ in range(args.rounds + 1):
            order = list(makers) if round_ % 2 else list(reversed(makers))
            for name in order:
                poster = makers[name]()
                try:
                    seconds = per_message(poster, args.messages)
                finally:
                    poster.close()  # type: ignore[attr-defined]
                if round_:  # the first round warms up
                    times[name].append(seconds)
    finally:
        receiver.terminate()
        receiver.wait(10)
    base = times["http.client"]
    print(f"{args.messages} messages of {len(MESSAGE)} bytes, {args.rounds} rounds")
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        print(
            f"{name:16} {statistics.median(values) * 1e6:7.0f} us/message   "
            f"x http.client {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()

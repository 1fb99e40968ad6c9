"""A stdlib HTTP receiver on 127.0.0.1 that reads each POST body and answers 204.

The stand-in proxy when `gaemail serve` is not available: the clients' cost is
then measured without the real proxy's work.  Run as `python receiver.py [PORT]`;
it prints `http://127.0.0.1:PORT/` on its first line and serves until terminated.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Silent: one log line per request would cost more than the request."""


def main(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)

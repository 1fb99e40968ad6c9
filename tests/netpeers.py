"""Network peers for the transport tests, on loopback: an HTTP forward proxy (CONNECT
and absolute-form requests, as squid serves them) and a TLS front for a plain server
with a certificate of a private CA made for the test.

Each runs on threads, is bounded in time, and is closed by its context manager.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

IDLE = 10.0  # seconds a tunnel may stay silent before it is closed


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes or stays idle."""
    sockets = [a, b]
    try:
        while True:
            readable, _, _ = select.select(sockets, [], [], IDLE)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)
    except OSError:
        return
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


class _LoopbackServer:
    """A listener on 127.0.0.1 that serves each connection on a thread of its own."""

    def __init__(self, scheme: str) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError


class ForwardProxy(_LoopbackServer):
    """An HTTP proxy on 127.0.0.1; `requests` lists each request line it was sent."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        super().__init__("http")

    def __enter__(self) -> ForwardProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(IDLE)
        head, rest = _read_head(client)
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.requests.append(line)
        method, target, _ = [*line.split(" "), "", "", ""][:3]
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=IDLE)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _pipe(client, upstream)
            return
        parts = urlsplit(target)
        if not parts.hostname:  # not a proxy request: refuse, as a proxy does
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        upstream = socket.create_connection((parts.hostname, parts.port or 80), timeout=IDLE)
        origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        _, _, headers = head.partition(b"\r\n")
        upstream.sendall(f"{method} {origin} HTTP/1.1\r\n".encode() + headers + b"\r\n\r\n" + rest)
        _pipe(client, upstream)


def make_ca_and_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1, made with openssl."""
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-subj", "/CN=gaemail test CA", "-keyout", str(ca_key), "-out", str(ca_cert)),
    )
    openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"),
        *("-keyout", str(key), "-out", str(csr)),
    )
    openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key)),
        *("-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)),
    )
    return ca_cert, cert, key


class TLSFront(_LoopbackServer):
    """TLS on 127.0.0.1 in front of a plain HTTP server on `target_port`."""

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._target = target_port
        super().__init__("https")
        self.url += "/"

    def __enter__(self) -> TLSFront:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(IDLE)
        try:
            client = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()  # the client did not trust us: what the tests expect, sometimes
            return
        upstream = socket.create_connection(("127.0.0.1", self._target), timeout=IDLE)
        _pipe(client, upstream)


@contextlib.contextmanager
def private_ca_front(target_port: int, directory: Path) -> Iterator[tuple[TLSFront, Path]]:
    ca, cert, key = make_ca_and_certificate(directory)
    with TLSFront(target_port, cert, key) as front:
        yield front, ca

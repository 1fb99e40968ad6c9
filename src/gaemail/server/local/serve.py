"""`gaemail serve`: the local proxy on a threaded werkzeug server, mail kept in a Maildir."""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from gaemail.errors import ConfigurationError, describe_os_error
from gaemail.protocol import ENVDIR_VARIABLE, URL_VARIABLE
from gaemail.server.app import log_requests_to
from gaemail.server.config import (
    DEFAULT_SENDER_VARIABLE,
    KEY_VARIABLE,
    V1_FIX_SENDER_VARIABLE,
    V1_VARIABLE,
    ServerConfig,
    parse_key_list,
    read_key_file,
    switched_on,
)
from gaemail.server.local import KEEP_SENT, create_local_app

# Seconds to wait for the server thread once asked to stop.
STOP_TIMEOUT = 10.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class ServeOptions:
    """The command line of `gaemail serve` (its defaults live there); None: not given."""

    host: str
    port: int
    outbox: str | None = None
    secret_file: str | None = None
    default_sender: str | None = None
    state_dir: str | None = None
    no_v1: bool = False


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler without its access log: the app logs one line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


LOCAL_DEFAULT_SENDER = "gaemail@localhost"


def serve(options: ServeOptions, environ: Mapping[str, str], out: TextIO, err: TextIO) -> None:
    """Run the local proxy until SIGTERM or SIGINT."""
    # Absolute, because the printed paths are meant for use from other directories.
    state_dir = Path(options.state_dir or default_state_dir(environ)).absolute()
    keys = configured_keys(options, environ)
    envdir = None  # made only for a development key, which gmail must learn about
    if not keys:
        envdir = state_dir / "envdir"
        keys = (development_key(envdir),)
    # Locally every sender is accepted, so a fixed address stands in for the
    # application's own (anything@PROJECT.appspotmail.com on App Engine).
    sender = options.default_sender or environ.get(DEFAULT_SENDER_VARIABLE, "").strip()
    config = ServerConfig(
        keys=keys,
        default_sender=sender or LOCAL_DEFAULT_SENDER,
        v1_enabled=not options.no_v1 and switched_on(environ, V1_VARIABLE),
        v1_fix_sender=switched_on(environ, V1_FIX_SENDER_VARIABLE),
    )
    outbox = Path(options.outbox).absolute() if options.outbox else state_dir / "outbox"
    app = create_local_app(config, outbox, keep=KEEP_SENT)
    log_requests_to(err)
    server = listen(options.host, options.port, app)
    url = server_url(options.host, server.port)
    print(f"Listening on {url}", file=out)
    print(f"Outbox (Maildir): {outbox}", file=out)
    if envdir is not None:
        write_envdir_file(envdir / URL_VARIABLE, url)
        print(f"export {ENVDIR_VARIABLE}={shlex.quote(str(envdir))}", file=out)
    out.flush()
    run_until_signalled(server)
    print("gaemail: stopped", file=err)


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """$XDG_STATE_HOME/gaemail, or ~/.local/state/gaemail."""
    base = environ.get("XDG_STATE_HOME", "")
    # The XDG spec says to ignore relative paths here.
    if not os.path.isabs(base):
        home = environ.get("HOME") or str(Path.home())
        base = os.path.join(home, ".local", "state")
    return Path(base) / "gaemail"


def configured_keys(options: ServeOptions, environ: Mapping[str, str]) -> tuple[bytes, ...]:
    """Keys from --secret-file, else from GMAIL_SECRET_KEY; empty when neither is given."""
    if options.secret_file:
        keys = read_key_file(options.secret_file)
        if not keys:
            raise ConfigurationError(f"{options.secret_file}: no key in the file")
        return keys
    return parse_key_list(environ.get(KEY_VARIABLE, ""))


def development_key(envdir: Path) -> bytes:
    """The development key kept in `envdir`, made on first use (mode 0600)."""
    path = envdir / KEY_VARIABLE
    keys = read_key_file(path, missing_ok=True)
    if keys:
        return keys[0]
    key = secrets.token_urlsafe(32)
    write_envdir_file(path, key)
    return key.encode("utf-8")


def write_envdir_file(path: Path, value: str) -> None:
    """One setting for gmail's GMAIL_ENVDIR, readable by the owner alone."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")


def listen(host: str, port: int, app: Any) -> BaseWSGIServer:
    """A threaded werkzeug server bound to host:port (port 0: any free port).

    One process, a thread per connection: the SDK's memcache stub, which
    remembers the messages already accepted, lives in this process, and a
    retry that reached another process would be sent twice.  Threads overlap
    one request's fsyncs with another's work (gmail -q sends 4 at once).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Bound here, not by werkzeug, which prints its own advice and exits 1 on failure.
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {describe_os_error(exc)}; choose another --port"
        ) from None
    with sock:  # werkzeug works on a duplicate of the descriptor
        return make_server(
            host,
            port,
            app,
            threaded=True,
            request_handler=_QuietRequestHandler,
            fd=sock.fileno(),
        )


def server_url(host: str, port: int) -> str:
    """The proxy URL for a listening address."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run_until_signalled(server: BaseWSGIServer) -> None:
    """Serve on a thread until SIGTERM or SIGINT, then close the socket."""
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="gaemail-serve",
        daemon=True,
    )
    thread.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

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

from gaemail.errors import ConfigurationError, describe_os_error
from gaemail.protocol import DEFAULT_ENVDIR, ENVDIR_VARIABLE, SECRET_VARIABLE, URL_VARIABLE
from gaemail.server.app import log_requests_to
from gaemail.server.config import (
    DEFAULT_SENDER_VARIABLE,
    KEY_VARIABLE,
    ServerConfig,
    environment_settings,
    parse_key_list,
    read_key_file,
)
from gaemail.server.local import create_local_app
from gaemail.server.local.bounded import (
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_THREADS,
    BoundedWSGIServer,
)
from gaemail.server.local.rules import DailyQuota, LocalRules, Senders
from gaemail.server.local.view import register_outbox_view

# Seconds to wait for the server thread once asked to stop.
STOP_TIMEOUT = 10.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LOCAL_DEFAULT_SENDER = "gaemail@localhost"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServeOptions:
    """The command line of `gaemail serve` (its defaults live there); None: not given."""

    host: str
    port: int
    outbox: str | None = None
    secret_file: str | None = None
    default_sender: str | None = None
    state_dir: str | None = None
    authorized_senders: tuple[str, ...] = ()
    authorized_senders_file: str | None = None
    daily_quota: int | None = None
    quota_period: float | None = None
    allow_remote: bool = False
    threads: int = DEFAULT_THREADS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    fsync: bool = False
    no_v1: bool = False


def serve(options: ServeOptions, environ: Mapping[str, str], out: TextIO, err: TextIO) -> None:
    """Run the local proxy until SIGTERM or SIGINT."""
    check_host(options, err)
    # Absolute, because the printed paths are meant for use from other directories.
    state_dir = Path(options.state_dir or default_state_dir(environ)).absolute()
    system_envdir = Path(environ.get(ENVDIR_VARIABLE) or DEFAULT_ENVDIR)
    keys, from_envdir = configured_keys(options, environ, system_envdir)
    envdir = None  # made only for a development key, which gmail must learn about
    if not keys:
        envdir = state_dir / "envdir"
        keys = (development_key(envdir),)
    # A fixed address stands in for the application's own sender
    # (anything@PROJECT.appspotmail.com on App Engine), which is always authorized.
    sender = options.default_sender or environ.get(DEFAULT_SENDER_VARIABLE, "").strip()
    settings = environment_settings(environ)
    if options.no_v1:
        settings["v1_enabled"] = False
    config = ServerConfig(keys=keys, default_sender=sender or LOCAL_DEFAULT_SENDER, **settings)
    outbox = Path(options.outbox).absolute() if options.outbox else state_dir / "outbox"
    rules = local_rules(options, config)
    app = create_local_app(config, outbox, keep=0, rules=rules, fsync=options.fsync)
    register_outbox_view(app, outbox, loopback=not options.allow_remote)
    log_requests_to(err)
    server = listen(options, app)
    url = server_url(options.host, server.port)
    print(f"Listening on {url}", file=out)
    print(f"Outbox (Maildir): {outbox}", file=out)
    print(f"Outbox view: {url}outbox/", file=out)
    if envdir is not None:
        copy_other_settings(system_envdir, envdir)
        write_envdir_file(envdir / URL_VARIABLE, url)
        print(f"export {ENVDIR_VARIABLE}={shlex.quote(str(envdir))}", file=out)
    elif from_envdir:
        # gmail reads the same envdir for the key and the rest; only the URL differs.
        print(f"export {URL_VARIABLE}={shlex.quote(url)}", file=out)
    out.flush()
    run_until_signalled(server)
    print("gaemail: stopped", file=err)


def check_host(options: ServeOptions, err: TextIO) -> None:
    """A non-loopback address needs --allow-remote, and is loudly warned about."""
    if options.host in LOOPBACK_HOSTS or options.host.startswith("127."):
        return
    if not options.allow_remote:
        raise ConfigurationError(
            f"--host {options.host} serves every machine that can reach it, over plain HTTP,"
            " with a development key and the outbox of every message: add --allow-remote"
            " if that is what you want"
        )
    print(
        f"gaemail: WARNING: listening on {options.host}: plain HTTP (the key and every"
        " message travel in clear), a development setup, and the outbox view open to"
        " anyone who can reach this address",
        file=err,
    )


def local_rules(options: ServeOptions, config: ServerConfig) -> LocalRules:
    """The App Engine checks for this command line."""
    entries = list(options.authorized_senders)
    if options.authorized_senders_file:
        entries += read_lines(options.authorized_senders_file)
    if config.default_sender:
        entries.append(config.default_sender)
    quota = None
    if options.daily_quota is not None:
        quota = DailyQuota(options.daily_quota, period=options.quota_period)
    return LocalRules(senders=Senders.of(entries), quota=quota)


def read_lines(path: str) -> list[str]:
    """The meaningful lines of a list file (blank lines and # comments left out)."""
    return [key.decode("utf-8") for key in read_key_file(path)]


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """$XDG_STATE_HOME/gaemail, or ~/.local/state/gaemail."""
    base = environ.get("XDG_STATE_HOME", "")
    # The XDG spec says to ignore relative paths here.
    if not os.path.isabs(base):
        home = environ.get("HOME") or str(Path.home())
        base = os.path.join(home, ".local", "state")
    return Path(base) / "gaemail"


def configured_keys(
    options: ServeOptions, environ: Mapping[str, str], system_envdir: Path
) -> tuple[tuple[bytes, ...], bool]:
    """Keys as gmail finds them: --secret-file, GMAIL_SECRET_KEY, then the envdir's file.

    Also whether they came from the envdir.  No keys: none is configured.
    """
    if options.secret_file:
        keys = read_key_file(options.secret_file)
        if not keys:
            raise ConfigurationError(f"{options.secret_file}: no key in the file")
        return keys, False
    keys = parse_key_list(environ.get(KEY_VARIABLE, ""))
    if keys:
        return keys, False
    return read_key_file(system_envdir / SECRET_VARIABLE, missing_ok=True), True


def copy_other_settings(system_envdir: Path, envdir: Path) -> None:
    """Copy the system envdir's other settings (default domain, aliases...) into `envdir`.

    The development envdir replaces the system's for gmail, so without them the
    printed export line would lose them.  The key and the URL are this server's.
    """
    try:
        entries = list(system_envdir.iterdir())
    except OSError:
        return  # no system envdir, or not readable: nothing to keep
    for entry in entries:
        if entry.name in (SECRET_VARIABLE, URL_VARIABLE) or not entry.is_file():
            continue
        try:
            value = entry.read_bytes()
        except OSError:
            continue
        target = envdir / entry.name
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)


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


def listen(options: ServeOptions, app: Any) -> BoundedWSGIServer:
    """A werkzeug server bound to host:port (port 0: any free port), threads bounded.

    One process, a pool of threads: the SDK's memcache stub, which remembers the
    messages already accepted, lives in this process, and a retry that reached
    another process would be sent twice.  Threads overlap one request's fsyncs
    with another's work (gmail -q sends 4 at once).
    """
    host, port = options.host, options.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Bound here, not by werkzeug, which prints its own advice and exits 1 on failure.
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {describe_os_error(exc)}; choose another --port"
        ) from None
    with sock:  # werkzeug works on a duplicate of the descriptor
        return BoundedWSGIServer(
            host,
            port,
            app,
            fd=sock.fileno(),
            threads=options.threads,
            request_timeout=options.request_timeout,
        )


def server_url(host: str, port: int) -> str:
    """The proxy URL for a listening address."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run_until_signalled(server: BoundedWSGIServer) -> None:
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

"""The durable local queue: one file per message, Maildir discipline, flock locks.

Layout under the queue directory:

    tmp/     messages being written; never read by a flush
    new/     complete messages, each `ID` = a JSON envelope line + the wire message
    state/   `ID.json`: attempts, next attempt, last error (written by deliverers)
    failed/  messages refused for good or expired, with their state

A message is written to tmp/, fsynced, renamed into new/ and the directory
fsynced before anyone is told it is queued, so a crash at any point loses nothing
that was acknowledged.  Whoever delivers a message holds an exclusive flock on
its file for the whole attempt; the kernel drops the lock if that process dies,
so a crashed flusher never blocks the queue.  A sent message is unlinked while
still locked, and every flusher re-checks after locking that the file it holds is
still queued, so no message is sent twice by two flushers.

In a shared queue (`gaemail queue init`), tmp/ and new/ are a drop box that any
user can write to and none can list (mode 3733, group of the deliverer; files
inherit the group and are 0640), so senders need no secret: the deliverer
account, which alone can read the secret, signs and sends.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time

from gaemail.errors import LocalIOError, describe_os_error

TYPE_CHECKING = False  # plain classes, no typing: every queued message pays imports
if TYPE_CHECKING:
    from collections.abc import Iterator

SUBDIRS = ("tmp", "new", "state", "failed")
MAX_AGE_SECONDS = 5 * 24 * 3600  # as sendmail's Timeout.queuereturn
BACKOFF_FIRST = 60.0
BACKOFF_MAX = 3600.0
STALE_TMP_SECONDS = 36 * 3600  # Maildir's rule for abandoned tmp files


class _Record:
    """A value saved as JSON: its FIELDS, compared and shown by value."""

    __slots__ = ()
    FIELDS: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Record)
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


class Envelope(_Record):
    """What the queue keeps beside the message (the JSON line before it)."""

    FIELDS = ("message_id", "sender", "recipients", "fix_sender", "created", "size")
    __slots__ = FIELDS

    def __init__(
        self,
        message_id: str,
        sender: str | None,
        recipients: list[str],
        fix_sender: bool,
        created: float,
        size: int,
    ) -> None:
        self.message_id = message_id
        self.sender = sender
        self.recipients = recipients
        self.fix_sender = fix_sender
        self.created = created
        self.size = size


class State(_Record):
    """Delivery history of one message."""

    FIELDS = ("attempts", "next_attempt", "last_error", "permanent")
    __slots__ = FIELDS

    def __init__(
        self,
        attempts: int = 0,
        next_attempt: float = 0.0,
        last_error: str = "",
        permanent: bool = False,
    ) -> None:
        self.attempts = attempts
        self.next_attempt = next_attempt
        self.last_error = last_error
        self.permanent = permanent

    def backoff(self, now: float, error: str) -> None:
        self.attempts += 1
        self.last_error = error
        delay = min(BACKOFF_FIRST * 2 ** (self.attempts - 1), BACKOFF_MAX)
        self.next_attempt = now + delay


class Item:
    """A queued message as listed: its id, envelope and state."""

    __slots__ = ("envelope", "id", "state")

    def __init__(self, id: str, envelope: Envelope, state: State | None = None) -> None:
        self.id = id
        self.envelope = envelope
        self.state = state or State()


SHARED_QUEUE = "/var/spool/gaemail"


def default_queue_dir(
    environ: dict[str, str] | os._Environ[str], shared: str = SHARED_QUEUE
) -> str:
    """The shared queue for root, and for everyone once `gaemail queue init` made it
    a drop box they can write to; else a per-user state directory.

    So www-data and nobody, who have no home to write to, queue without a setting.
    """
    if os.geteuid() == 0 or os.access(os.path.join(shared, "new"), os.W_OK | os.X_OK):
        return shared
    base = environ.get("XDG_STATE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "gaemail", "queue")


def new_id(clock: float) -> str:
    """Sortable by time, unique across processes and machines."""
    return f"{int(clock * 1_000_000):x}.{os.getpid():x}.{os.urandom(4).hex()}"


class Spool:
    """One queue directory."""

    def __init__(self, path: str) -> None:
        self.path = path

    def dir(self, name: str) -> str:
        return os.path.join(self.path, name)

    def ensure(self) -> None:
        """Create a private queue (per-user) if it is not there yet."""
        for name in SUBDIRS:
            try:
                os.makedirs(self.dir(name), mode=0o700, exist_ok=True)
            except OSError as exc:
                raise LocalIOError(f"cannot create the queue: {describe_os_error(exc)}") from None

    # -- producers ---------------------------------------------------------------

    def enqueue(self, data: bytes, envelope: Envelope, clock: float) -> str:
        """Write a message durably; returns its queue id once it is safe on disk."""
        if not os.path.isdir(self.dir("new")):
            self.ensure()
        ident = new_id(clock)
        header = json.dumps(envelope.to_dict(), separators=(",", ":")).encode() + b"\n"
        tmp_path = os.path.join(self.dir("tmp"), ident)
        new_path = os.path.join(self.dir("new"), ident)
        written = [tmp_path]  # what to take back if the message cannot be made safe
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                # Whatever the caller's umask, the deliverer's group must read it.
                os.fchmod(fd, 0o640)
                _write_all(fd, header + data)
                os.fsync(fd)
                os.rename(tmp_path, new_path)
                written.append(new_path)
                try:
                    fsync_dir(self.dir("new"))
                except PermissionError:
                    # A drop box (mode 3733): its senders may not open new/.  The
                    # rename changed the file's inode, so fsyncing the file again
                    # commits the rename with it (ext4, xfs and btrfs journals).
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            for path in written:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise LocalIOError(f"cannot queue the message: {describe_os_error(exc)}") from None
        return ident

    # -- deliverers --------------------------------------------------------------

    def can_list(self) -> bool:
        """False in a shared drop box for anyone but its deliverer (mode 3733)."""
        return os.access(self.dir("new"), os.R_OK | os.X_OK)

    def ids(self) -> list[str]:
        """Queued ids, oldest first."""
        try:
            return sorted(n for n in os.listdir(self.dir("new")) if not n.startswith("."))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LocalIOError(f"cannot list the queue: {describe_os_error(exc)}") from None

    def failed_ids(self) -> list[str]:
        try:
            names = os.listdir(self.dir("failed"))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.endswith(".json"))

    def read(self, ident: str, area: str = "new") -> tuple[Envelope, bytes]:
        with open(self._message_path(ident, area), "rb") as f:
            return _parse(f.read())

    def state(self, ident: str, area: str = "new") -> State:
        path = self._state_path(ident, area)
        try:
            with open(path, encoding="utf-8") as f:
                return State(**json.load(f))
        except FileNotFoundError:
            return State()
        except (OSError, ValueError, TypeError):
            return State(last_error=f"unreadable state file {path}")

    def item(self, ident: str, area: str = "new") -> Item:
        return Item(ident, self.read(ident, area)[0], self.state(ident, area))

    @contextlib.contextmanager
    def claim(self, ident: str) -> Iterator[Claim | None]:
        """Lock a queued message for one delivery attempt; None if someone else has it."""
        path = self._message_path(ident, "new")
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    yield None
                    return
                raise
            # Between our open and our lock another flusher may have sent it.
            if not _same_file(fd, path):
                yield None
                return
            with os.fdopen(os.dup(fd), "rb") as f:
                envelope, data = _parse(f.read())
            yield Claim(self, ident, envelope, data, self.state(ident))
        finally:
            os.close(fd)  # releases the lock

    def _message_path(self, ident: str, area: str) -> str:
        if "/" in ident or ident.startswith("."):
            raise LocalIOError(f"no queued message {ident!r}")
        return os.path.join(self.dir(area), ident)

    def _state_path(self, ident: str, area: str) -> str:
        folder = "failed" if area == "failed" else "state"
        return os.path.join(self.dir(folder), ident + ".json")

    def write_state(self, ident: str, state: State, area: str = "new") -> None:
        path = self._state_path(ident, area)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state.to_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def delete(self, ident: str, area: str = "new", sync: bool = True) -> None:
        """Remove a message and its state (a deliverer's or an administrator's act).

        `sync=False` leaves making the removal durable to a later sync(): a flush
        syncs once at its end, not once per message.  A sent message that a crash
        brings back is sent again with its Message-ID, which the proxy
        recognises, so it is still delivered once.
        """
        os.unlink(self._message_path(ident, area))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._state_path(ident, area))
        if sync:
            self.sync(area)

    def sync(self, area: str = "new") -> None:
        """Make the removals and renames in one area durable."""
        fsync_dir(self.dir(area))

    def clean_tmp(self, now: float) -> int:
        """Remove tmp files abandoned by crashed writers; they were never acknowledged."""
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.dir("tmp")):
                path = os.path.join(self.dir("tmp"), name)
                with contextlib.suppress(OSError):
                    if now - os.lstat(path).st_mtime > STALE_TMP_SECONDS:
                        os.unlink(path)
                        removed += 1
        return removed


class Claim:
    """A message locked for delivery; ends in sent(), deferred() or failed()."""

    __slots__ = ("data", "envelope", "id", "spool", "state")

    def __init__(self, spool: Spool, id: str, envelope: Envelope, data: bytes, state: State):
        self.spool = spool
        self.id = id
        self.envelope = envelope
        self.data = data
        self.state = state

    def sent(self) -> None:
        """Remove the message; durable at the deliverer's next Spool.sync()."""
        self.spool.delete(self.id, sync=False)

    def deferred(self, error: str, now: float) -> None:
        self.state.backoff(now, error)
        self.spool.write_state(self.id, self.state)

    def failed(self, error: str) -> None:
        self.state.attempts += 1
        self.state.last_error = error
        self.state.permanent = True
        self.spool.write_state(self.id, self.state, "failed")
        os.rename(
            os.path.join(self.spool.dir("new"), self.id),
            os.path.join(self.spool.dir("failed"), self.id),
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool._state_path(self.id, "new"))
        fsync_dir(self.spool.dir("new"))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _parse(raw: bytes) -> tuple[Envelope, bytes]:
    header, _, data = raw.partition(b"\n")
    return Envelope(**json.loads(header)), data


def _same_file(fd: int, path: str) -> bool:
    try:
        held = os.fstat(fd)
        current = os.stat(path)
    except FileNotFoundError:
        return False
    return held.st_nlink > 0 and (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the names in a directory durable (a rename into it, an unlink)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def due(item: Item, now: float) -> bool:
    return item.state.next_attempt <= now


def expired(envelope: Envelope, now: float, max_age: float = MAX_AGE_SECONDS) -> bool:
    return now - envelope.created > max_age


def age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def now() -> float:
    return time.time()

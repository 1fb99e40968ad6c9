"""The spool on disk: one file per message, Maildir discipline, flock locks.

Layout under the queue directory:

    tmp/     messages being written; never read by a flush
    new/     complete messages, each `ID` = a JSON entry line + the wire message
    state/   `ID.json`: attempts, next attempt, last error, hold (written by deliverers)
    failed/  messages refused for good or expired, with their state
    trigger  a FIFO: a sender writes a byte to it to wake the deliverer daemon

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
import dataclasses
import errno
import fcntl
import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from gaemail.config import Settings
from gaemail.errors import ConfigurationError, LocalIOError, describe_os_error
from gaemail.message.compose import Outgoing
from gaemail.message.envelope import Envelope

SUBDIRS = ("tmp", "new", "state", "failed")
TRIGGER = "trigger"
SHARED_QUEUE = "/var/spool/gaemail"
STALE_TMP_SECONDS = 36 * 3600  # Maildir's rule for abandoned tmp files


@dataclass(frozen=True)
class Schedule:
    """When to try again: `first` seconds, doubling up to `maximum`; give up after `max_age`."""

    first: float = 60.0
    maximum: float = 3600.0
    max_age: float = 5 * 24 * 3600.0  # as sendmail's Timeout.queuereturn

    def delay(self, attempts: int) -> float:
        """The wait after the `attempts`-th scheduled attempt failed (1 for the first)."""
        return float(min(self.first * 2 ** max(0, attempts - 1), self.maximum))

    @classmethod
    def from_settings(cls, settings: Settings) -> Schedule:
        first, maximum = settings.retry_schedule()
        return cls(first=first, maximum=maximum, max_age=settings.max_age())


@dataclass(frozen=True)
class Entry:
    """What the queue keeps beside a message: the JSON line before it.

    On disk the envelope's fields are written flat, as they always were.
    """

    message_id: str
    envelope: Envelope
    fix_sender: bool
    created: float
    size: int

    @classmethod
    def of(cls, outgoing: Outgoing, created: float) -> Entry:
        return cls(
            outgoing.message_id,
            outgoing.envelope,
            outgoing.fix_sender,
            created,
            len(outgoing.data),
        )

    def to_json(self) -> bytes:
        fields = {
            "message_id": self.message_id,
            "sender": self.envelope.sender,
            "recipients": list(self.envelope.recipients),
            "fix_sender": self.fix_sender,
            "created": self.created,
            "size": self.size,
        }
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, line: bytes) -> Entry:
        fields = json.loads(line)
        envelope = Envelope(tuple(fields["recipients"]), fields["sender"])
        return cls(
            fields["message_id"],
            envelope,
            bool(fields["fix_sender"]),
            float(fields["created"]),
            int(fields["size"]),
        )


@dataclass(frozen=True)
class State:
    """The delivery history of one message.

    `held`: an administrator's hold; no flush attempts it until released.
    `setup`: the last attempt failed for a setup mistake (a key the proxy does not
    know, an unreadable secret, a wrong URL); the message waits for the fix,
    retried on the schedule, and never expires or bounces for it.
    """

    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""
    permanent: bool = False
    held: bool = False
    setup: bool = False
    backoffs: int = 0  # the scheduled attempts that failed: they set the next wait

    def deferred(
        self, now: float, error: str, schedule: Schedule, *, setup: bool = False, forced: bool
    ) -> State:
        """After a failed attempt.

        A forced attempt (gmail -q) made before the next scheduled one leaves the
        schedule as it was: a person trying now does not push the retries further out.
        """
        changed = dataclasses.replace(
            self, attempts=self.attempts + 1, last_error=error, setup=setup
        )
        if forced and self.next_attempt > now:
            return changed
        backoffs = self.backoffs + 1
        return dataclasses.replace(
            changed, backoffs=backoffs, next_attempt=now + schedule.delay(backoffs)
        )

    def failed(self, error: str) -> State:
        return dataclasses.replace(
            self, attempts=self.attempts + 1, last_error=error, permanent=True, setup=False
        )

    def status(self) -> str:
        """One word for mailq: queued, held, waiting (for a setup fix) or failed."""
        if self.permanent:
            return "failed"
        if self.held:
            return "held"
        if self.setup:
            return "setup"
        return "queued"

    @classmethod
    def from_dict(cls, fields: Mapping[str, object]) -> State:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in names})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Item:
    """A queued message as listed: its id, entry and state."""

    id: str
    entry: Entry
    state: State


def default_queue_dir(environ: Mapping[str, str], shared: str = SHARED_QUEUE) -> str:
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


def open_spool(
    settings: Settings, environ: Mapping[str, str], *, must_exist: bool = False
) -> Spool:
    """The queue the settings name, else the default one.

    With `must_exist` (listing, flushing), a queue directory that was named but
    does not exist is an error: a mistyped --queue-dir is not an empty queue.
    """
    setting = settings.get("queue_dir")
    spool = Spool(setting.value if setting else default_queue_dir(environ))
    if must_exist and setting is not None and not os.path.isdir(spool.path):
        raise ConfigurationError(
            f"the queue directory {spool.path} (from {setting.source}) does not exist"
        )
    return spool


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
        try:
            for name in SUBDIRS:
                os.makedirs(self.dir(name), mode=0o700, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkfifo(self.dir(TRIGGER), 0o600)
        except OSError as exc:
            raise LocalIOError(
                f"cannot create the queue at {self.path}: {describe_os_error(exc)}; set "
                "GMAIL_QUEUE_DIR to a directory this user may write, or have root run "
                "`gaemail queue init` to make the shared queue every user can drop mail into"
            ) from None

    # -- producers ---------------------------------------------------------------

    def enqueue(self, outgoing: Outgoing, clock: float) -> str:
        """Write a message durably; returns its queue id once it is safe on disk."""
        if not os.path.isdir(self.dir("new")):
            self.ensure()
        ident = new_id(clock)
        header = Entry.of(outgoing, clock).to_json() + b"\n"
        tmp_path = os.path.join(self.dir("tmp"), ident)
        new_path = os.path.join(self.dir("new"), ident)
        written = [tmp_path]  # what to take back if the message cannot be made safe
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                # Whatever the caller's umask, the deliverer's group must read it.
                os.fchmod(fd, 0o640)
                _write_all(fd, header + outgoing.data)
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
            raise LocalIOError(
                f"cannot queue the message in {self.path}: {describe_os_error(exc)}"
            ) from None
        self.wake()
        return ident

    def wake(self) -> None:
        """Tell a deliverer daemon, if one listens, that there is mail to send."""
        try:
            fd = os.open(self.dir(TRIGGER), os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return  # no daemon reading (ENXIO), no trigger, or not ours to write
        try:
            with contextlib.suppress(OSError):  # a full pipe has woken it already
                os.write(fd, b"\n")
        finally:
            os.close(fd)

    # -- deliverers --------------------------------------------------------------

    def can_list(self) -> bool:
        """False in a shared drop box for anyone but its deliverer (mode 3733)."""
        return os.access(self.dir("new"), os.R_OK | os.X_OK)

    def ids(self, area: str = "new") -> list[str]:
        """Queued (or failed) ids, oldest first."""
        try:
            names = os.listdir(self.dir(area))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise LocalIOError(f"cannot list the queue: {describe_os_error(exc)}") from None
        return sorted(n for n in names if not n.startswith(".") and not n.endswith(".json"))

    def failed_ids(self) -> list[str]:
        return self.ids("failed")

    def read(self, ident: str, area: str = "new") -> tuple[Entry, bytes]:
        with open(self._message_path(ident, area), "rb") as f:
            return _parse(f.read())

    def entry(self, ident: str, area: str = "new") -> Entry:
        """The entry alone: its first line, without reading the message."""
        with open(self._message_path(ident, area), "rb") as f:
            return Entry.from_json(f.readline())

    def state(self, ident: str, area: str = "new") -> State:
        path = self._state_path(ident, area)
        try:
            with open(path, encoding="utf-8") as f:
                return State.from_dict(json.load(f))
        except FileNotFoundError:
            return State()
        except (OSError, ValueError, TypeError):
            return State(last_error=f"unreadable state file {path}")

    def item(self, ident: str, area: str = "new") -> Item:
        return Item(ident, self.entry(ident, area), self.state(ident, area))

    @contextlib.contextmanager
    def claim(self, ident: str, area: str = "new") -> Iterator[Claim | None]:
        """Lock a message for one attempt or change; None if someone else has it."""
        path = self._message_path(ident, area)
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
                entry, data = _parse(f.read())
            yield Claim(self, ident, area, entry, data, self.state(ident, area))
        finally:
            os.close(fd)  # releases the lock

    def _message_path(self, ident: str, area: str) -> str:
        if not ident or "/" in ident or ident.startswith(".") or ident.endswith(".json"):
            raise LocalIOError(f"no queued message {ident!r}")
        return os.path.join(self.dir(area), ident)

    def _state_path(self, ident: str, area: str) -> str:
        folder = "failed" if area == "failed" else "state"
        return os.path.join(self.dir(folder), ident + ".json")

    def write_state(self, ident: str, state: State, area: str = "new") -> None:
        path = self._state_path(ident, area)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(state), f)
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

    def is_trigger(self) -> bool:
        try:
            return stat.S_ISFIFO(os.stat(self.dir(TRIGGER)).st_mode)
        except OSError:
            return False


class Claim:
    """A message locked for delivery or for an administrator's change."""

    def __init__(
        self, spool: Spool, id: str, area: str, entry: Entry, data: bytes, state: State
    ) -> None:
        self.spool = spool
        self.id = id
        self.area = area
        self.entry = entry
        self.data = data
        self.state = state

    def sent(self) -> None:
        """Remove the message; durable at the deliverer's next Spool.sync()."""
        self.spool.delete(self.id, self.area, sync=False)

    def update(self, state: State) -> None:
        self.state = state
        self.spool.write_state(self.id, state, self.area)

    def failed(self, error: str) -> None:
        """Move the message to failed/, with the reason."""
        self.state = self.state.failed(error)
        self._move("new", "failed", self.state)

    def requeue(self) -> None:
        """Back from failed/ (or from any state) to a fresh start: due now, not held."""
        fresh = State(attempts=self.state.attempts, last_error=self.state.last_error)  # due now
        if self.area == "failed":
            self._move("failed", "new", fresh)
        else:
            self.update(fresh)

    def _move(self, source: str, target: str, state: State) -> None:
        self.spool.write_state(self.id, state, target)
        os.rename(
            os.path.join(self.spool.dir(source), self.id),
            os.path.join(self.spool.dir(target), self.id),
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool._state_path(self.id, source))
        fsync_dir(self.spool.dir(source))
        fsync_dir(self.spool.dir(target))
        self.area = target


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _parse(raw: bytes) -> tuple[Entry, bytes]:
    header, _, data = raw.partition(b"\n")
    return Entry.from_json(header), data


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


def age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

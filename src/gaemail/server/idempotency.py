"""v2's idempotency records, kept in App Engine's Datastore.

memcache forgets (eviction, a restart of the local proxy), and a replay that
meets no record is sent again, so the records live in Datastore: one entity per
(principal, Idempotency-Key), created in a transaction before sending, so of two
racing requests exactly one sends.  On App Engine that is the project's
Datastore (Firestore in Datastore mode); locally the SDK's own datastore stub,
written to a file after every change (`PersistentDatastoreStub`), so a record
survives a restart of `gaemail serve`.

When Datastore cannot be reached the proxy answers 503 and sends nothing: it
fails closed, where the v1 memcache check fails open.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.appengine.api import datastore, datastore_errors, datastore_file_stub, datastore_types
from google.appengine.datastore import datastore_stub_util
from google.appengine.runtime import apiproxy_errors

KIND = "GaemailIdempotency"
# An explicit namespace: locally a client could switch the default one with a header.
NAMESPACE = "gaemail"
IN_FLIGHT, DONE = "in_flight", "done"
LEASE_SECONDS = 120  # how long an unfinished send holds its key (409 meanwhile)
LOCAL_APP_ID = "gaemail-local"

STORE_ERRORS = (datastore_errors.Error, apiproxy_errors.Error)


@dataclass(frozen=True)
class Record:
    """What the store knows of one key: its state, fingerprint and, when done, the answer."""

    state: str
    fingerprint: str
    lease_until: float
    expires: float
    status: int = 0
    answer: str = ""  # the problem+json of a recorded refusal; "" for a 204


@dataclass(frozen=True)
class Claimed:
    """The result of a claim: `record` None means this request owns the key now."""

    record: Record | None


class IdempotencyStore:
    """Create-if-absent records with a lease, a fingerprint and a retention time."""

    def __init__(
        self,
        retention_seconds: int,
        *,
        lease_seconds: int = LEASE_SECONDS,
        clock: Callable[[], float],
    ) -> None:
        self.retention = retention_seconds
        self.lease = lease_seconds
        self.clock = clock

    def claim(self, principal: str, key: str, fingerprint: str) -> Claimed:
        """Own `key` (record None), or learn the live record that already holds it.

        An expired record, or a lapsed lease of an unfinished send, is taken over.
        """
        now = self.clock()
        name = _entity_name(principal, key)

        def claim_in_transaction() -> Claimed:
            found = _get(name)
            if (
                found is not None
                and found.expires > now
                and (
                    found.state == DONE
                    or found.lease_until > now
                    or (found.fingerprint != fingerprint)
                )
            ):
                return Claimed(found)
            _put(name, Record(IN_FLIGHT, fingerprint, now + self.lease, now + self.retention))
            return Claimed(None)

        result: Claimed = datastore.RunInTransaction(claim_in_transaction)
        return result

    def complete(
        self, principal: str, key: str, fingerprint: str, status: int, answer: str = ""
    ) -> None:
        """Record the final answer of a send; replays get it from now on."""
        now = self.clock()
        record = Record(DONE, fingerprint, now, now + self.retention, status, answer)
        _put(_entity_name(principal, key), record)

    def forget_expired(self) -> int:
        """Delete the records past their retention; returns how many.

        App Engine's Datastore does this with a TTL policy; the local stub has
        none, and its file, rewritten whole at every commit, would only grow.
        """
        query = datastore.Query(
            KIND, {"expires_at <": self.clock()}, keys_only=True, namespace=NAMESPACE
        )
        expired = list(query.Run())
        if expired:
            datastore.Delete(expired)
        return len(expired)

    def release(self, principal: str, key: str) -> None:
        """Forget a claim whose send failed for now: the retry must be free to send."""
        datastore.Delete(_key(_entity_name(principal, key)))


def _entity_name(principal: str, key: str) -> str:
    # Hashed: a fixed length whatever the key, and principals never collide.
    return hashlib.sha256(f"{principal}\0{key}".encode()).hexdigest()


def _key(name: str) -> Any:
    return datastore.Key.from_path(KIND, name, namespace=NAMESPACE)


def _get(name: str) -> Record | None:
    try:
        entity = datastore.Get(_key(name))
    except datastore_errors.EntityNotFoundError:
        return None
    return Record(
        state=str(entity["state"]),
        fingerprint=str(entity["fingerprint"]),
        lease_until=float(entity["lease_until"]),
        expires=float(entity["expires_at"]),
        status=int(entity["status"]),
        answer=str(entity["answer"]),
    )


def _put(name: str, record: Record) -> None:
    entity = datastore.Entity(KIND, name=name, namespace=NAMESPACE)
    entity["state"] = record.state
    entity["fingerprint"] = record.fingerprint
    entity["lease_until"] = record.lease_until
    entity["expires_at"] = record.expires
    # A datetime too, for a Datastore TTL policy that deletes expired records.
    entity["expires"] = datetime.datetime.fromtimestamp(record.expires, datetime.timezone.utc)
    entity["status"] = record.status
    entity["answer"] = datastore_types.Text(record.answer)
    datastore.Put(entity)


class PersistentDatastoreStub(datastore_file_stub.DatastoreFileStub):  # type: ignore[misc]
    """The SDK's file-backed datastore stub, its file written at every commit, not at exit.

    With the master/slave consistency policy a commit applies at once, and the
    stub writes its file as it applies one (a Put outside a transaction commits
    too), so a killed `gaemail serve` keeps every record it answered with; it
    is not asked to write at exit.  Each write rewrites the whole file
    (atomically: a temporary file renamed over it), so its cost grows with the
    records held: fine for a local proxy, which is why App Engine uses Datastore.
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        # The stub warns when its file is missing, as it is on every first start.
        stub_log = logging.getLogger("google.appengine.api.stubs.datastore")
        level = stub_log.level
        stub_log.setLevel(logging.ERROR)
        try:
            super().__init__(
                LOCAL_APP_ID,
                os.fspath(path) if path is not None else "/dev/null",
                use_atexit=False,
                consistency_policy=datastore_stub_util.MasterSlaveConsistencyPolicy(),
            )
        finally:
            stub_log.setLevel(level)

    def _DatastoreFileStub__ReadPickled(self, filename: str) -> Any:
        # The stub's own reader leaves its file open (a ResourceWarning); this one
        # closes it.  The file is only ever written by this class.
        if filename == "/dev/null" or not os.path.isfile(filename):
            return []
        with self._DatastoreFileStub__file_lock, open(filename, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return []
            return pickle.load(f, encoding="bytes")  # noqa: S301 - our own file


def use_local_app_id() -> None:
    """Datastore transactions need an application id; locally there is none unless set."""
    os.environ.setdefault("APPLICATION_ID", LOCAL_APP_ID)

"""Exactly once across retries: the messages the proxy accepted recently.

A client that timed out cannot know whether the proxy sent its message, so it
sends it again.  Before sending, the proxy adds the message's fingerprint to App
Engine's memcache (an atomic add-if-absent): a second request for the same
message is answered 204 without sending again once the first is sent, and 503
while the first is still being sent (if that one fails, the retry must be free
to send).

A message is known by its Message-ID and its exact bytes, which a retry repeats:
a different message that reuses a Message-ID (some scripts write a fixed one)
is sent, not taken for a retry and lost.

memcache is best effort, so this fails open: when the cache cannot be reached,
or evicted the fingerprint, the message is sent.  Messages without a Message-ID
(legacy clients) are never deduplicated.
"""

from __future__ import annotations

import hashlib
import logging

from google.appengine.api import memcache

from gaemail.server.refusals import Unavailable

# An explicit namespace: locally, a client could switch the default one with an
# X-AppEngine-Current-Namespace header.
NAMESPACE = "gaemail-accepted"
SENDING, SENT = "sending", "sent"
SENDING_SECONDS = 120  # how long an unfinished send blocks its duplicates
SENT_SECONDS = 7 * 24 * 3600  # longer than a client queue keeps a message (5 days)

log = logging.getLogger("gaemail.server")


def fingerprint(message_id: str | None, msg: bytes) -> str | None:
    """The memcache key of a message; None (never deduplicated) without a Message-ID."""
    if not message_id:
        return None
    digest = hashlib.sha256(message_id.strip().encode("utf-8") + b"\0" + msg)
    return "msg:" + digest.hexdigest()


class AcceptedIds:
    """Claims a message's fingerprint before sending and confirms it after."""

    def __init__(self) -> None:
        self.client = memcache.Client()

    def claim(self, key: str | None) -> bool:
        """True: go on and send.  False: already sent, answer 204 without sending."""
        if not key:
            return True
        result = self.client.add_multi_async(
            {key: SENDING}, time=SENDING_SECONDS, namespace=NAMESPACE
        ).get_result()
        if result is None:
            log.warning("memcache unavailable; sending without the duplicate check")
            return True
        if result.get(key) == memcache.STORED:
            return True
        state = self.client.get(key, namespace=NAMESPACE)
        if state == SENT:
            return False
        if state == SENDING:
            raise Unavailable("This message is being sent by another request; try again")
        return True  # expired between the add and the get

    def sent(self, key: str | None) -> None:
        if key:
            self.client.set(key, SENT, time=SENT_SECONDS, namespace=NAMESPACE)

    def release(self, key: str | None) -> None:
        """The send failed: a retry must be free to send."""
        if key:
            self.client.delete(key, namespace=NAMESPACE)

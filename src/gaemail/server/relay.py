"""The fixed pipeline for one v1 request: decode, verify, translate, check, send.

Each step is a method that returns its result or raises a Refusal, so a step
can be added between two others (an idempotency check between verify and send)
without touching the rest.  Nothing here knows about Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr

from gaemail import protocol
from gaemail.protocol import v1, v2
from gaemail.server.config import ServerConfig
from gaemail.server.dedup import AcceptedIds, fingerprint
from gaemail.server.limits import check_shape
from gaemail.server.refusals import (
    MessageRefused,
    Refusal,
    RequestRefused,
    SignatureRefused,
    TooLarge,
)
from gaemail.server.sending import send_message
from gaemail.server.translate import Translation, translate_message


@dataclass(frozen=True)
class Outcome:
    """What became of one request: sent when `refusal` is None."""

    refusal: Refusal | None = None
    message_id: str | None = None
    recipients: int = 0
    key_id: str | None = None
    domains: tuple[str, ...] = ()

    @property
    def status(self) -> int:
        return protocol.SENT if self.refusal is None else self.refusal.status


class Relay:
    """Sends the messages of v1 requests with one configuration."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.accepted = AcceptedIds()

    def __call__(self, read_body: Callable[[], bytes]) -> Outcome:
        """The outcome of the request whose form body `read_body()` returns."""
        translation: Translation | None = None
        key_id: str | None = None
        try:
            signed = self.decode(read_body())  # the form (up to 3x the message) freed at once
            key_id = self.verify(signed)
            translation = self.translate(signed)
            self.check_recipients(translation)
            key = fingerprint(translation.message_id, signed.msg)
            fallback = self._fallback(signed)
            del signed  # the message's bytes: translated, they need not outlive the translation
            if self.accepted.claim(key):
                self.send(fallback, translation, key)
        except Refusal as refusal:
            return self._outcome(translation, refusal, key_id)
        return self._outcome(translation, None, key_id)

    def decode(self, body: bytes) -> v1.SignedMessage:
        try:
            return v1.decode_request(body)
        except v1.RequestError as exc:
            raise RequestRefused(str(exc)) from None

    def verify(self, signed: v1.SignedMessage) -> str:
        """The id of the key that signed the message (v2's name for it, for the log)."""
        key = v1.matching_key(self.config.keys, signed.msg, signed.signature)
        if key is None:
            raise SignatureRefused(protocol.REASON_BAD_SIGNATURE)
        return v2.key_id(key)

    def translate(self, signed: v1.SignedMessage) -> Translation:
        if len(signed.msg) > protocol.MAX_MESSAGE_BYTES:
            raise TooLarge(
                f"The message is {len(signed.msg)} bytes; the Mail API takes at most"
                f" {protocol.MAX_MESSAGE_BYTES}"
            )
        check_shape(signed.msg, self.config.limits, self.config.max_recipients)
        return translate_message(
            signed.msg, fallback_sender=self._fallback(signed), limits=self.config.limits
        )

    def check_recipients(self, translation: Translation) -> None:
        # Each recipient counts against the Mail API's daily quota, which sets no
        # per-message cap of its own.
        if translation.recipient_count > self.config.max_recipients:
            raise MessageRefused(
                f"Too many recipients: {translation.recipient_count}; this proxy sends to"
                f" at most {self.config.max_recipients} per message"
            )

    def send(self, fallback: str | None, translation: Translation, key: str | None) -> None:
        try:
            send_message(
                translation.fields, message_id=translation.message_id, fallback_sender=fallback
            )
        except BaseException:
            self.accepted.release(key)
            raise
        self.accepted.sent(key)

    def _fallback(self, signed: v1.SignedMessage) -> str | None:
        # fix_sender is outside v1's signature; an operator may stop honouring it.
        if signed.fix_sender and self.config.v1_fix_sender:
            return self.config.default_sender
        return None

    @staticmethod
    def _outcome(
        translation: Translation | None, refusal: Refusal | None, key_id: str | None
    ) -> Outcome:
        if translation is None:
            return Outcome(refusal, key_id=key_id)
        fields = translation.fields
        addresses = [*fields.get("to", []), *fields.get("cc", []), *fields.get("bcc", [])]
        return Outcome(
            refusal,
            translation.message_id,
            translation.recipient_count,
            key_id,
            domains_of(addresses),
        )


def domains_of(addresses: list[str]) -> tuple[str, ...]:
    """The distinct recipient domains, sorted, for the log."""
    return tuple(sorted({parseaddr(a)[1].rpartition("@")[2].lower() for a in addresses}))

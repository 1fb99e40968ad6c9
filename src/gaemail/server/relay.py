"""The fixed pipeline for one v1 request: decode, verify, translate, check, send.

Each step is a method that returns its result or raises a Refusal, so a step
can be added between two others (an idempotency check between verify and send)
without touching the rest.  Nothing here knows about Flask.
"""

from __future__ import annotations

from dataclasses import dataclass

from gaemail import protocol
from gaemail.protocol import v1
from gaemail.server.config import ServerConfig
from gaemail.server.dedup import AcceptedIds, fingerprint
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

    @property
    def status(self) -> int:
        return protocol.SENT if self.refusal is None else self.refusal.status


class Relay:
    """Sends the messages of v1 requests with one configuration."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.accepted = AcceptedIds()

    def __call__(self, body: bytes) -> Outcome:
        """The outcome of the request whose form body is `body`."""
        translation: Translation | None = None
        try:
            signed = self.decode(body)
            self.verify(signed)
            translation = self.translate(signed)
            self.check_recipients(translation)
            key = fingerprint(translation.message_id, signed.msg)
            if self.accepted.claim(key):
                self.send(signed, translation, key)
        except Refusal as refusal:
            return self._outcome(translation, refusal)
        return self._outcome(translation, None)

    def decode(self, body: bytes) -> v1.SignedMessage:
        try:
            return v1.decode_request(body)
        except v1.RequestError as exc:
            raise RequestRefused(str(exc)) from None

    def verify(self, signed: v1.SignedMessage) -> None:
        if not v1.verify(self.config.keys, signed.msg, signed.signature):
            raise SignatureRefused(protocol.REASON_BAD_SIGNATURE)

    def translate(self, signed: v1.SignedMessage) -> Translation:
        if len(signed.msg) > protocol.MAX_MESSAGE_BYTES:
            raise TooLarge(
                f"The message is {len(signed.msg)} bytes; the Mail API takes at most"
                f" {protocol.MAX_MESSAGE_BYTES}"
            )
        return translate_message(signed.msg, fallback_sender=self._fallback(signed))

    def check_recipients(self, translation: Translation) -> None:
        # Each recipient counts against the Mail API's daily quota, which sets no
        # per-message cap of its own.
        if translation.recipient_count > self.config.max_recipients:
            raise MessageRefused(
                f"Too many recipients: {translation.recipient_count}; this proxy sends to"
                f" at most {self.config.max_recipients} per message"
            )

    def send(self, signed: v1.SignedMessage, translation: Translation, key: str | None) -> None:
        try:
            send_message(
                translation.fields,
                message_id=translation.message_id,
                fallback_sender=self._fallback(signed),
            )
        except BaseException:
            self.accepted.release(key)
            raise
        self.accepted.sent(key)

    def _fallback(self, signed: v1.SignedMessage) -> str | None:
        return self.config.default_sender if signed.fix_sender else None

    @staticmethod
    def _outcome(translation: Translation | None, refusal: Refusal | None) -> Outcome:
        if translation is None:
            return Outcome(refusal)
        return Outcome(refusal, translation.message_id, translation.recipient_count)

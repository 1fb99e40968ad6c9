"""The pipeline for one v2 request, in the specification's order of checks.

Media type, then the signed headers (`protocol.v2.verify_request`), then the
idempotency record, then the limits, the translation and the send to the
signed envelope.  Every refusal is a `ProtocolError`, the problem+json answer;
nothing here knows about Flask.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from gaemail import protocol
from gaemail.protocol import v2
from gaemail.server.config import ServerConfig
from gaemail.server.idempotency import STORE_ERRORS, IdempotencyStore, Record
from gaemail.server.limits import check_shape
from gaemail.server.refusals import (
    MessageRefused,
    Misconfigured,
    OverQuota,
    Refusal,
    TooLarge,
    Unavailable,
)
from gaemail.server.sending import send_message
from gaemail.server.translate import translate_message

log = logging.getLogger("gaemail.server")

DEFAULT_PRINCIPAL = "default"
MAIL_SERVICE = "mail-api"
IN_FLIGHT_RETRY_SECONDS = 5
STORE_RETRY_SECONDS = 30


@dataclass
class Request:
    """What the pipeline reads of an HTTP request.

    It holds the only reference to the body, which the send lets go of once the
    message is translated: a 25 MB message need not outlive its translation.
    """

    path: str
    query: bytes
    get_all: v2.HeaderGetter
    body: bytes

    def release_body(self) -> None:
        self.body = b""


@dataclass(frozen=True)
class Outcome:
    """One request's answer and what the log says of it; sent or checked when `problem` is None."""

    status: int
    problem: v2.ProtocolError | None = None
    key_id: str | None = None
    recipients: tuple[str, ...] = ()
    replayed: bool = False
    document: dict[str, object] = field(default_factory=dict)
    recorded_answer: bytes = b""


@dataclass(frozen=True)
class _Facts:
    key_id: str
    recipients: tuple[str, ...]


def precheck(content_type: str | None, content_encoding: str | None) -> Outcome | None:
    """Step 1 of the checks, before the body is read: its media type and encoding."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != v2.CONTENT_TYPE:
        problem = v2.ProtocolError(
            protocol.UNSUPPORTED_MEDIA_TYPE,
            "content_type_unsupported",
            f"Content-Type must be {v2.CONTENT_TYPE}, not {media_type[:60]!r}",
        )
        return Outcome(problem.status, problem)
    if content_encoding is not None:
        problem = v2.ProtocolError(
            protocol.UNSUPPORTED_MEDIA_TYPE,
            "content_encoding_unsupported",
            "Content-Encoding is not allowed: send the message bytes as they are",
        )
        return Outcome(problem.status, problem)
    return None


def too_large(length: int) -> Outcome:
    problem = v2.ProtocolError(
        protocol.TOO_LARGE,
        "message_too_large",
        f"The message is {length} bytes; the Mail API takes at most {protocol.MAX_MESSAGE_BYTES}",
    )
    return Outcome(problem.status, problem)


class RelayV2:
    """Sends the messages of v2 requests with one configuration."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        clock: Callable[[], float] = time.time,
        mail_service: str = MAIL_SERVICE,
    ) -> None:
        self.config = config
        self.keys = config.v2_keys
        self.clock = clock
        self.mail_service = mail_service
        self.store = IdempotencyStore(config.idempotency_seconds, clock=clock)
        self.principals = dict(config.principals)

    def verify(self, request: Request) -> v2.Verified:
        return v2.verify_request(
            request.path,
            request.query,
            request.get_all,
            request.body,
            self.keys,
            now=int(self.clock()),
            window=self.config.timestamp_window,
            max_recipients=self.config.max_recipients,
        )

    def check(self, request: Request) -> Outcome:
        """`POST /v2/check`: verify and describe the proxy; nothing sent or stored."""
        try:
            verified = self.verify(request)
        except v2.ProtocolError as problem:
            return Outcome(problem.status, problem)
        document: dict[str, object] = {
            "key_id": verified.key_id,
            "server_time": int(self.clock()),
            "default_sender": self.config.default_sender,
            "mail_service": self.mail_service,
            "v1_enabled": self.config.v1_enabled,
            "max_message_bytes": protocol.MAX_MESSAGE_BYTES,
            "max_recipients": self.config.max_recipients,
            "version": v2.VERSION,
        }
        return Outcome(protocol.OK, key_id=verified.key_id, document=document)

    def send(self, request: Request) -> Outcome:
        """`POST /v2/send`: at most one send per (principal, Idempotency-Key)."""
        try:
            verified = self.verify(request)
        except v2.ProtocolError as problem:
            return Outcome(problem.status, problem)
        fields = verified.fields
        principal = self.principals.get(verified.key_id, DEFAULT_PRINCIPAL)
        fingerprint = fields.fingerprint()
        facts = _Facts(verified.key_id, fields.envelope.recipients)
        try:
            claimed = self.store.claim(principal, fields.idempotency_key, fingerprint)
        except STORE_ERRORS as exc:
            return Outcome(
                503, _store_unavailable(exc), key_id=facts.key_id, recipients=facts.recipients
            )
        if claimed.record is not None:
            return self._replay(claimed.record, fingerprint, facts)
        try:
            self._send(request, fields)
        except Refusal as refusal:
            return self._refused(refusal, principal, fields, fingerprint, facts)
        except BaseException:
            self._release(principal, fields.idempotency_key)
            raise
        try:
            self.store.complete(principal, fields.idempotency_key, fingerprint, protocol.SENT)
        except STORE_ERRORS:
            # Sent all the same; the claim's lease still answers 409 for a while.
            log.warning("sent, but the idempotency record could not be completed", exc_info=True)
        return Outcome(protocol.SENT, key_id=facts.key_id, recipients=facts.recipients)

    def _release(self, principal: str, key: str) -> None:
        try:
            self.store.release(principal, key)
        except STORE_ERRORS:
            # The claim lapses with its lease; a retry after that sends.
            log.warning("the idempotency claim could not be released", exc_info=True)

    def _send(self, request: Request, fields: v2.SignedFields) -> None:
        size = len(request.body)
        if size > protocol.MAX_MESSAGE_BYTES:
            raise TooLarge(
                f"The message is {size} bytes; the Mail API takes at most"
                f" {protocol.MAX_MESSAGE_BYTES}"
            )
        check_shape(request.body, self.config.limits, self.config.max_recipients)
        fallback = self.config.default_sender if v2.OPTION_FIX_SENDER in fields.options else None
        sender = fields.envelope.sender
        translation = translate_message(
            request.body,
            fallback_sender=fallback or (sender if sender != v2.NULL_SENDER else None),
            envelope=fields.envelope.recipients,
            limits=self.config.limits,
        )
        request.release_body()
        send_message(
            translation.fields, message_id=translation.message_id, fallback_sender=fallback
        )

    def _replay(self, record: Record, fingerprint: str, facts: _Facts) -> Outcome:
        if record.fingerprint != fingerprint:
            problem = v2.ProtocolError(
                protocol.UNPROCESSABLE,
                "idempotency_key_reused",
                "This Idempotency-Key was used for a different request: make a new key"
                " for each message",
            )
            return Outcome(
                problem.status, problem, key_id=facts.key_id, recipients=facts.recipients
            )
        if record.state != "done":
            retry = max(1, min(IN_FLIGHT_RETRY_SECONDS, int(record.lease_until - self.clock())))
            problem = v2.ProtocolError(
                protocol.CONFLICT,
                "request_in_flight",
                "A request with this Idempotency-Key is being sent; try again",
                retry_after=retry,
            )
            return Outcome(
                problem.status, problem, key_id=facts.key_id, recipients=facts.recipients
            )
        answer = record.answer.encode("utf-8")
        return Outcome(
            record.status,
            None,
            key_id=facts.key_id,
            recipients=facts.recipients,
            replayed=True,
            recorded_answer=answer,
        )

    def _refused(
        self,
        refusal: Refusal,
        principal: str,
        fields: v2.SignedFields,
        fingerprint: str,
        facts: _Facts,
    ) -> Outcome:
        problem = problem_for(refusal)
        if problem.status < protocol.SERVER_ERROR and problem.status != protocol.TOO_MANY_REQUESTS:
            # Permanent: the same request will be refused again, so the record says so.
            answer = v2.problem_body(problem, title_for(problem.status)).decode("ascii")
            try:
                self.store.complete(
                    principal, fields.idempotency_key, fingerprint, problem.status, answer
                )
            except STORE_ERRORS:
                log.warning("the refusal could not be recorded", exc_info=True)
        else:
            self._release(principal, fields.idempotency_key)
        return Outcome(problem.status, problem, key_id=facts.key_id, recipients=facts.recipients)


_PROBLEMS: tuple[tuple[type[Refusal], int, str], ...] = (
    (OverQuota, protocol.TOO_MANY_REQUESTS, "over_quota"),
    (Unavailable, protocol.UNAVAILABLE, "mail_service_unavailable"),
    (TooLarge, protocol.TOO_LARGE, "message_too_large"),
    (Misconfigured, protocol.SERVER_ERROR, "proxy_misconfigured"),
    (MessageRefused, protocol.BAD_REQUEST, "message_refused"),
)


def problem_for(refusal: Refusal) -> v2.ProtocolError:
    """The problem+json answer for a refusal of the shared pipeline (limits, translation, send)."""
    for refusal_type, status, code in _PROBLEMS:
        if isinstance(refusal, refusal_type):
            return v2.ProtocolError(status, code, str(refusal), retry_after=refusal.retry_after)
    return v2.ProtocolError(
        refusal.status, "refused", str(refusal), retry_after=refusal.retry_after
    )


def _store_unavailable(exc: BaseException) -> v2.ProtocolError:
    return v2.ProtocolError(
        protocol.UNAVAILABLE,
        "idempotency_store_unavailable",
        f"The proxy cannot reach its idempotency records ({type(exc).__name__}); nothing was"
        " sent, try again",
        retry_after=STORE_RETRY_SECONDS,
    )


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def title_for(status: int) -> str:
    return _TITLES.get(status, "Error")


def dumps(document: dict[str, object]) -> bytes:
    return json.dumps(document, ensure_ascii=True).encode("ascii")


Step: TypeAlias = Callable[[RelayV2, Request], Outcome]

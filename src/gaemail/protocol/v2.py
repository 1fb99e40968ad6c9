"""Version 2: the raw message, a signed envelope, freshness and an idempotency key.

The project's protocol-v2 specification is the reference; this module is both
ends of it.  A client builds a request with `encode_send` (or `encode_check`)
and reads the answer with `parse_answer`; the proxy checks a request with
`verify_request`, which raises `ProtocolError` (a problem+json answer) for any
request it must refuse.  Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gaemail import protocol
from gaemail.errors import MessageSendingFailure

ALGORITHM = "GAEMAIL-V2-HMAC-SHA256"
VERSION = "v2"
SEND_PATH = "/v2/send"
CHECK_PATH = "/v2/check"
CONTENT_TYPE = "message/rfc822"
PROBLEM_TYPE = "application/problem+json"

H_DIGEST = "Content-Digest"
H_IDEMPOTENCY_KEY = "Idempotency-Key"
H_TIMESTAMP = "Mail-Timestamp"
H_FROM = "Mail-Envelope-From"
H_TO = "Mail-Envelope-To"
H_OPTIONS = "Mail-Options"
H_SIGNATURE = "Mail-Signature"
H_REPLAYED = "Idempotent-Replayed"
H_RETRY_AFTER = "Retry-After"
AUTHENTICATE = "GaemailV2"

OPTION_FIX_SENDER = "fix-sender"
OPTIONS = frozenset({OPTION_FIX_SENDER})
NULL_SENDER = "<>"
WINDOW_SECONDS = 300
MAX_SIGNATURES = 4
_WHSEC = "whsec_"

_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._~-]{16,128}")
_ADDRESS = re.compile(r"[^\s,<>\"\x00-\x1f\x7f]+@[A-Za-z0-9.-]+")
_DIGEST_MEMBER = re.compile(r"sha-256=:([A-Za-z0-9+/]*={0,2}):")


class ProtocolError(ValueError):
    """A request the proxy refuses, or a client argument the protocol cannot carry.

    It is the problem+json answer itself: `status`, a stable `code`, a `title`
    and the one-line `detail` (str()).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        retry_after: int | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(" ".join(detail.split()))
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.extra = dict(extra or {})


def bad_request(code: str, detail: str) -> ProtocolError:
    return ProtocolError(protocol.BAD_REQUEST, code, detail)


# --- keys ---


def key_id(secret: bytes) -> str:
    """ "k" and the first hex digits of SHA-256 of the secret exactly as written."""
    return "k" + hashlib.sha256(secret).hexdigest()[:10]


def hmac_key(secret: bytes) -> bytes:
    """The HMAC key of a secret: decoded base64 after `whsec_`, else the secret itself."""
    text = secret.decode("utf-8", "replace")
    if text.startswith(_WHSEC):
        try:
            return base64.b64decode(text[len(_WHSEC) :], validate=True)
        except binascii.Error:
            pass  # not base64 after all: the bytes as written, as for any other secret
    return secret


@dataclass(frozen=True)
class Key:
    """One signing secret as both ends use it: its id and its HMAC key."""

    id: str
    hmac_key: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: bytes) -> Key:
        return cls(key_id(secret), hmac_key(secret))


# --- the signed request ---


@dataclass(frozen=True)
class Envelope:
    """Who the message is from and exactly who receives it; `sender` "<>" is the null sender."""

    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class SignedFields:
    """Everything a signature covers but the key id."""

    timestamp: int
    idempotency_key: str
    path: str
    envelope: Envelope
    options: frozenset[str]
    digest: str

    def fingerprint_lines(self) -> list[str]:
        """The canonical lines from the method to the digest: what a retry repeats."""
        return [
            "POST",
            self.path,
            self.envelope.sender,
            ",".join(self.envelope.recipients),
            ",".join(sorted(self.options)),
            self.digest,
        ]

    def canonical_string(self, key_id: str) -> str:
        lines = [ALGORITHM, key_id, str(self.timestamp), self.idempotency_key]
        return "\n".join(lines + self.fingerprint_lines())

    def fingerprint(self) -> str:
        """The idempotency record's fingerprint: hex SHA-256 of the fingerprint lines."""
        return hashlib.sha256("\n".join(self.fingerprint_lines()).encode("utf-8")).hexdigest()


def content_digest(body: bytes) -> str:
    """The Content-Digest header of `body` (RFC 9530, sha-256)."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode('ascii')}:"


def signature(key: Key, fields: SignedFields) -> str:
    """base64 of HMAC-SHA256 over the canonical string."""
    canonical = fields.canonical_string(key.id).encode("utf-8")
    return base64.b64encode(hmac.new(key.hmac_key, canonical, hashlib.sha256).digest()).decode(
        "ascii"
    )


def signature_header(keys: Sequence[Key], fields: SignedFields) -> str:
    """Mail-Signature: one `v2,<keyid>,<sig>` entry per key (rotation)."""
    if not 1 <= len(keys) <= MAX_SIGNATURES:
        raise ValueError(f"sign with 1 to {MAX_SIGNATURES} keys")
    return " ".join(f"{VERSION},{key.id},{signature(key, fields)}" for key in keys)


# --- the client's side ---


def check_envelope(envelope: Envelope, *, allow_empty: bool = False) -> None:
    """Raises ProtocolError (400) for an envelope the protocol cannot carry."""
    if envelope.sender != NULL_SENDER and not _ADDRESS.fullmatch(envelope.sender):
        raise bad_request("envelope_from_invalid", f"Envelope sender {envelope.sender!r}")
    if not envelope.recipients and not allow_empty:
        raise bad_request("envelope_to_missing", "The envelope has no recipient")
    for rcpt in envelope.recipients:
        if not _ADDRESS.fullmatch(rcpt):
            raise bad_request("envelope_to_invalid", f"Envelope recipient {rcpt!r} is invalid")
    if len(set(envelope.recipients)) != len(envelope.recipients):
        raise bad_request("envelope_to_duplicate", "The envelope names a recipient twice")


def new_idempotency_key() -> str:
    """A fresh key for one message: made once, stored with it, reused on every retry."""
    return secrets.token_urlsafe(24)


def check_idempotency_key(value: str) -> None:
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise bad_request(
            "idempotency_key_invalid", "Idempotency-Key must be 16-128 of [A-Za-z0-9._~-]"
        )


def encode_send(
    msg: bytes,
    keys: Sequence[Key],
    idempotency_key: str,
    envelope: Envelope,
    options: Iterable[str] = (),
    *,
    now: int,
) -> tuple[dict[str, str], bytes]:
    """The headers and body of a `POST /v2/send` of `msg`, signed at `now`.

    Raises ProtocolError for an envelope, key or option the protocol refuses,
    so the client stops before the proxy would.
    """
    chosen = frozenset(options)
    unknown = chosen - OPTIONS
    if unknown:
        raise bad_request("options_invalid", f"Unknown option {sorted(unknown)[0]!r}")
    check_envelope(envelope)
    return _encode(SEND_PATH, msg, keys, idempotency_key, envelope, chosen, now)


def encode_check(
    keys: Sequence[Key], idempotency_key: str, *, now: int
) -> tuple[dict[str, str], bytes]:
    """The headers and (empty) body of a `POST /v2/check`."""
    return _encode(
        CHECK_PATH, b"", keys, idempotency_key, Envelope(NULL_SENDER, ()), frozenset(), now
    )


def _encode(
    path: str,
    body: bytes,
    keys: Sequence[Key],
    idempotency_key: str,
    envelope: Envelope,
    options: frozenset[str],
    now: int,
) -> tuple[dict[str, str], bytes]:
    check_idempotency_key(idempotency_key)
    fields = SignedFields(now, idempotency_key, path, envelope, options, content_digest(body))
    headers = {
        "Content-Type": CONTENT_TYPE,
        H_DIGEST: fields.digest,
        H_IDEMPOTENCY_KEY: f'"{idempotency_key}"',
        H_TIMESTAMP: str(now),
        H_FROM: envelope.sender,
    }
    if envelope.recipients:
        headers[H_TO] = ", ".join(envelope.recipients)
    if options:
        headers[H_OPTIONS] = ",".join(sorted(options))
    headers[H_SIGNATURE] = signature_header(keys, fields)
    return headers, body


@dataclass(frozen=True)
class Answer:
    """What a v2 answer means to a client: `failure` None means sent (or checked)."""

    status: int
    failure: MessageSendingFailure | None
    code: str | None = None
    retry_after: int | None = None
    replayed: bool = False
    document: Mapping[str, object] = field(default_factory=dict)


# The client exception for each status of a v2 answer.
_STATUS_KINDS: dict[int, protocol.Kind] = {
    kind.status: kind
    for kind in protocol.KINDS.values()
    if kind not in (protocol.KIND_SIGNATURE, protocol.KIND_MESSAGE)  # v1's other 400s
}


def parse_answer(status: int, headers: Mapping[str, str], body: bytes) -> Answer:
    """The meaning of a proxy's answer to a v2 request; `headers` looked up case-insensitively."""
    lowered = {name.lower(): value for name, value in headers.items()}
    retry_after = _retry_after(lowered.get(H_RETRY_AFTER.lower(), ""))
    document = _json_document(body)
    if status == protocol.SENT:
        replayed = lowered.get(H_REPLAYED.lower(), "").strip().lower() == "true"
        return Answer(status, None, replayed=replayed, retry_after=retry_after)
    if status == protocol.OK and "key_id" in document:
        return Answer(status, None, document=document)  # the answer to a check
    code = document.get("code")
    detail = document.get("detail") or document.get("title")
    reason = " ".join(str(detail).split()) if detail else f"the proxy answered HTTP {status}"
    kind = _STATUS_KINDS.get(status)
    failure: MessageSendingFailure | None
    if kind is not None and isinstance(code, str):
        failure = kind.failure(reason, status)
    else:
        # Not a problem+json of a v2 proxy (a v1-only proxy, some web page): by status.
        phrase = body.decode("utf-8", "replace") if not document else reason
        failure = protocol.failure_for(
            status,
            protocol.answer_reason(phrase, reason),
            lowered.get(protocol.ERROR_HEADER.lower()),
            lowered.get("location"),
        )
    return Answer(
        status, failure, code if isinstance(code, str) else None, retry_after, document=document
    )


def _retry_after(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() and len(value) <= 9 else None


def _json_document(body: bytes) -> dict[str, object]:
    try:
        document = json.loads(body[:65536])
    except (ValueError, UnicodeDecodeError):
        return {}
    return document if isinstance(document, dict) else {}


def problem_body(problem: ProtocolError, title: str) -> bytes:
    """The application/problem+json document of a refusal."""
    document: dict[str, object] = {
        "type": f"https://gaemail.invalid/problems/{problem.code}",
        "title": title,
        "status": problem.status,
        "code": problem.code,
        "detail": str(problem),
        **problem.extra,
    }
    return json.dumps(document, ensure_ascii=True).encode("ascii")


# --- the proxy's side ---

HeaderGetter = Callable[[str], list[str]]


@dataclass(frozen=True)
class Verified:
    """A request whose signature verified: its signed fields and the key that did."""

    fields: SignedFields
    key_id: str


def verify_request(
    path: str,
    query: bytes,
    get_all: HeaderGetter,
    body: bytes,
    keys: Sequence[Key],
    *,
    now: int,
    window: int = WINDOW_SECONDS,
    max_recipients: int,
) -> Verified:
    """The proxy's checks 3 to 6 of the specification, in its order; raises ProtocolError.

    `get_all(name)` gives every value of a request header (a server may have
    joined repeated lines with commas already).
    """
    if query:
        raise bad_request("query_not_allowed", "A v2 request has no query string")
    timestamp_text = _one(get_all, H_TIMESTAMP)
    idem_key = _idempotency_key(get_all)
    envelope = _envelope(path, get_all, max_recipients)
    options = _options(get_all)
    offered_digest = _one(get_all, H_DIGEST)
    entries = _signature_entries(get_all)
    if not _TIMESTAMP.fullmatch(timestamp_text):
        raise bad_request("timestamp_invalid", f"{H_TIMESTAMP} must be unix seconds")
    timestamp = int(timestamp_text)
    if abs(timestamp - now) > window:
        raise ProtocolError(
            401,
            "timestamp_out_of_window",
            f"{H_TIMESTAMP} {timestamp} is more than {window} s from the proxy's time {now}:"
            " check the client's clock",
            extra={"server_time": now},
        )
    digest = content_digest(body)
    members = _DIGEST_MEMBER.findall(offered_digest)
    if len(members) != 1 or f"sha-256=:{members[0]}:" != digest:
        raise bad_request("content_digest_mismatch", f"{H_DIGEST} does not match the body received")
    fields = SignedFields(timestamp, idem_key, path, envelope, options, digest)
    return Verified(fields, _verified_key(fields, entries, keys, now))


def _one(get_all: HeaderGetter, name: str, *, required: bool = True) -> str:
    values = get_all(name)
    if len(values) > 1:
        raise bad_request("header_duplicate", f"{name} appears more than once")
    if not values:
        if required:
            raise bad_request("header_missing", f"{name} is missing")
        return ""
    value = values[0].strip(" \t")
    if not value.isascii() or not value.isprintable():
        raise bad_request("header_invalid", f"{name} has characters outside printable ASCII")
    return value


def _idempotency_key(get_all: HeaderGetter) -> str:
    value = _one(get_all, H_IDEMPOTENCY_KEY)
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]  # a structured-field string; the key's alphabet needs no escapes
    check_idempotency_key(value)
    return value


def _envelope(path: str, get_all: HeaderGetter, max_recipients: int) -> Envelope:
    sender = _one(get_all, H_FROM)
    values = get_all(H_TO)
    if path == CHECK_PATH:
        if values:
            raise bad_request("envelope_to_invalid", f"A check has no {H_TO}")
        envelope = Envelope(sender, ())
        check_envelope(envelope, allow_empty=True)
        return envelope
    joined = ",".join(values)
    # Counted before a single address is looked at: the cap bounds the work.
    count = joined.count(",") + 1
    if count > max_recipients:
        raise ProtocolError(
            protocol.BAD_REQUEST,
            "too_many_recipients",
            f"{H_TO}: {count} recipients; this proxy sends to at most {max_recipients}"
            " per message (limit max_recipients)",
        )
    recipients = tuple(item.strip(" \t") for item in joined.split(",")) if joined else ()
    envelope = Envelope(sender, recipients)
    check_envelope(envelope)
    return envelope


def _options(get_all: HeaderGetter) -> frozenset[str]:
    values = get_all(H_OPTIONS)
    tokens = [token.strip(" \t") for value in values for token in value.split(",")]
    tokens = [token for token in tokens if token]
    for token in tokens:
        if token not in OPTIONS:
            raise bad_request("options_invalid", f"{H_OPTIONS}: unknown option {token[:40]!r}")
    return frozenset(tokens)


def _signature_entries(get_all: HeaderGetter) -> list[tuple[str, str]]:
    """(key id, signature) of every v2 entry; other versions are ignored."""
    entries = " ".join(get_all(H_SIGNATURE)).split()
    if not entries:
        raise bad_request("header_missing", f"{H_SIGNATURE} is missing")
    if len(entries) > MAX_SIGNATURES:
        raise bad_request(
            "too_many_signatures", f"{H_SIGNATURE} has more than {MAX_SIGNATURES} entries"
        )
    found = []
    for entry in entries:
        # A server joins repeated header lines with ", ": "v2,k,sig," is one entry.
        parts = entry.strip(",").split(",")
        if len(parts) == 3 and parts[0] == VERSION:
            found.append((parts[1], parts[2]))
    return found


def _verified_key(
    fields: SignedFields, entries: list[tuple[str, str]], keys: Sequence[Key], now: int
) -> str:
    by_id = {key.id: key for key in keys}
    known = [(by_id[kid], sig) for kid, sig in entries if kid in by_id]
    if not known:
        raise ProtocolError(
            401,
            "unknown_key",
            f"No {H_SIGNATURE} entry names a key this proxy knows",
            extra={"server_time": now},
        )
    verified = None
    for key, offered in known:
        expected = signature(key, fields).encode("ascii")
        # Every entry compared in constant time; the timing tells nothing.
        if hmac.compare_digest(expected, offered.encode("ascii", "replace")):
            verified = key.id
    if verified is None:
        raise ProtocolError(
            401,
            "signature_invalid",
            "The signature does not match the request",
            extra={"server_time": now},
        )
    return verified

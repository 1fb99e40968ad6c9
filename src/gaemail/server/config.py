"""The proxy's settings: signing keys, default sender, limits, which protocols it speaks.

Read once, when the app is built: on App Engine `wrap_wsgi_app` gives every
request a snapshot of `os.environ`, so a handler must never look there itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TypedDict

from gaemail import protocol
from gaemail.errors import ConfigurationError, describe_os_error
from gaemail.protocol import v2 as protocol_v2

# The client's name for the secret: one name on both ends of the wire.
KEY_VARIABLE = protocol.SECRET_VARIABLE
DEFAULT_SENDER_VARIABLE = "GMAIL_DEFAULT_SENDER"
V1_VARIABLE = "GAEMAIL_V1"  # "off" switches the 2010 form interface off
V1_FIX_SENDER_VARIABLE = "GAEMAIL_V1_FIX_SENDER"  # "off": ignore v1's unsigned fix_sender
LIMITS_VARIABLE = "GAEMAIL_LIMITS"  # "max_header_bytes=524288 max_recipients=1000"
PRINCIPALS_VARIABLE = "GAEMAIL_PRINCIPALS"  # "KEYID=principal ...": keys sharing idempotency
DEFAULT_MAX_RECIPIENTS = 500
_OFF = frozenset({"0", "off", "false", "no"})


PARSED_LINE_BYTES = 64


@dataclass(frozen=True)
class Limits:
    """What one message may hold; each is checked before the parse it protects.

    A refusal names the limit by its field name, so an operator knows what to raise.
    """

    max_header_bytes: int = 256 * 1024  # one header block (the message's or a part's)
    max_encoded_words: int = 200  # RFC 2047 encoded words in one header field
    max_mime_parts: int = 1000
    max_params: int = 100  # parameters of one Content-Type or Content-Disposition
    max_depth: int = 20  # multiparts nested in multiparts
    # Lines the parser reads one by one (headers, delimiters, and the lines beside
    # them: long runs of body lines it takes whole), plus one per
    # PARSED_LINE_BYTES of the message: each costs the parser ~60 bytes.
    max_parsed_lines: int = 10_000

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ConfigurationError(f"{name} must be at least 1")


@dataclass(frozen=True)
class ServerConfig:
    """What the proxy needs to know; `keys` holds every key it accepts, for rotation."""

    keys: tuple[bytes, ...] = field(repr=False)
    default_sender: str | None = None
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    limits: Limits = field(default_factory=Limits)
    v1_enabled: bool = True
    # v1's fix_sender field is not signed: anyone holding a captured request can add it.
    v1_fix_sender: bool = True
    timestamp_window: int = protocol_v2.WINDOW_SECONDS
    # How long a v2 idempotency record answers replays (the spec asks for >= 24 h).
    idempotency_seconds: int = 7 * 24 * 3600
    # Key id -> principal: keys of one principal share its idempotency keys (rotation);
    # keys not named here belong to one principal, "default".
    principals: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.keys or not all(self.keys):
            raise ConfigurationError(
                f"no signing key configured: set {KEY_VARIABLE} or write one key"
                f" per line to a {KEY_VARIABLE} file beside the app"
            )
        if self.max_recipients < 1:
            raise ConfigurationError("max_recipients must be at least 1")
        if self.idempotency_seconds < 24 * 3600:
            raise ConfigurationError("idempotency_seconds must be at least a day")
        if not 1 <= self.timestamp_window <= self.idempotency_seconds // 2:
            raise ConfigurationError("timestamp_window must be within half the retention")
        known = {protocol_v2.key_id(secret) for secret in self.keys}
        for key_id, _ in self.principals:
            if key_id not in known:
                raise ConfigurationError(
                    f"{PRINCIPALS_VARIABLE} names key id {key_id[:20]!r}, which none of the"
                    " signing keys has (a key's id is in the proxy's log and /v2/check)"
                )

    @property
    def v2_keys(self) -> tuple[protocol_v2.Key, ...]:
        return tuple(protocol_v2.Key.from_secret(secret) for secret in self.keys)

    @classmethod
    def load(
        cls, app_dir: str | os.PathLike[str] | None, environ: Mapping[str, str]
    ) -> ServerConfig:
        """Settings from `environ`, else from files named like the variables in `app_dir`.

        The environment wins, as it does for the client; pass `app_dir=None` to
        read the environment alone.
        """
        keys = parse_key_list(environ.get(KEY_VARIABLE, ""))
        if not keys and app_dir is not None:
            keys = read_key_file(os.path.join(app_dir, KEY_VARIABLE), missing_ok=True)
        sender = environ.get(DEFAULT_SENDER_VARIABLE, "").strip()
        if not sender and app_dir is not None:
            lines = _read_lines(os.path.join(app_dir, DEFAULT_SENDER_VARIABLE), missing_ok=True)
            sender = lines[0] if lines else ""
        return cls(keys=keys, default_sender=sender or None, **environment_settings(environ))


class EnvironmentSettings(TypedDict):
    v1_enabled: bool
    v1_fix_sender: bool
    limits: Limits
    max_recipients: int
    principals: tuple[tuple[str, str], ...]


def environment_settings(environ: Mapping[str, str]) -> EnvironmentSettings:
    """What every proxy reads from its environment besides the keys and the sender."""
    limits, max_recipients = parse_limits(environ.get(LIMITS_VARIABLE, ""))
    return EnvironmentSettings(
        v1_enabled=switched_on(environ, V1_VARIABLE),
        v1_fix_sender=switched_on(environ, V1_FIX_SENDER_VARIABLE),
        limits=limits,
        max_recipients=max_recipients,
        principals=parse_principals(environ.get(PRINCIPALS_VARIABLE, "")),
    )


def parse_limits(value: str) -> tuple[Limits, int]:
    """Limits and max_recipients from "name=number" pairs; the rest keep their defaults."""
    given: dict[str, int] = {}
    names = [f.name for f in fields(Limits)] + ["max_recipients"]
    for name, number in _pairs(LIMITS_VARIABLE, value):
        if name not in names:
            raise ConfigurationError(
                f"{LIMITS_VARIABLE}: no limit is called {name[:40]!r}; the limits are"
                f" {', '.join(names)}"
            )
        if not number.isdigit():
            raise ConfigurationError(f"{LIMITS_VARIABLE}: {name} must be a whole number")
        given[name] = int(number)
    max_recipients = given.pop("max_recipients", DEFAULT_MAX_RECIPIENTS)
    return Limits(**given), max_recipients


def parse_principals(value: str) -> tuple[tuple[str, str], ...]:
    """Key id -> principal pairs from "KEYID=principal" words."""
    return tuple(_pairs(PRINCIPALS_VARIABLE, value))


def _pairs(variable: str, value: str) -> list[tuple[str, str]]:
    found = []
    for word in _words(value):
        name, equals, setting = word.partition("=")
        if not (equals and name and setting):
            raise ConfigurationError(f"{variable}: {word[:40]!r} is not of the form name=value")
        found.append((name, setting))
    return found


def switched_on(environ: Mapping[str, str], name: str) -> bool:
    """False when `name` says off (0, off, false, no); on by default."""
    return environ.get(name, "").strip().lower() not in _OFF


def parse_key_list(value: str) -> tuple[bytes, ...]:
    """Keys from one environment value, separated by whitespace or commas."""
    return tuple(key.encode("utf-8") for key in _words(value))


def _words(value: str) -> list[str]:
    """The words of one environment value, separated by whitespace or commas."""
    return [word for word in re.split(r"[\s,]+", value) if word]


def read_key_file(path: str | os.PathLike[str], *, missing_ok: bool = False) -> tuple[bytes, ...]:
    """The keys in a key file: one per line, blank lines and # comments ignored."""
    return tuple(line.encode("utf-8") for line in _read_lines(path, missing_ok=missing_ok))


def _read_lines(path: str | os.PathLike[str], *, missing_ok: bool) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return _meaningful_lines(f.read())
    except FileNotFoundError:
        if missing_ok:
            return []
        raise ConfigurationError(f"cannot read {path}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {describe_os_error(exc)}") from None


def _meaningful_lines(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]

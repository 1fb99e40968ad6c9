"""The proxy's settings: signing keys, default sender, recipient cap.

Read once, when the app is built: on App Engine `wrap_wsgi_app` gives every
request a snapshot of `os.environ`, so a handler must never look there itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from gaemail import protocol
from gaemail.errors import ConfigurationError, describe_os_error

# The client's name for the secret: one name on both ends of the wire.
KEY_VARIABLE = protocol.SECRET_VARIABLE
DEFAULT_SENDER_VARIABLE = "GMAIL_DEFAULT_SENDER"
DEFAULT_MAX_RECIPIENTS = 500


@dataclass(frozen=True)
class ServerConfig:
    """What the proxy needs to know; `keys` holds every key it accepts, for rotation."""

    keys: tuple[bytes, ...] = field(repr=False)
    default_sender: str | None = None
    max_recipients: int = DEFAULT_MAX_RECIPIENTS

    def __post_init__(self) -> None:
        if not self.keys or not all(self.keys):
            raise ConfigurationError(
                f"no signing key configured: set {KEY_VARIABLE} or write one key"
                f" per line to a {KEY_VARIABLE} file beside the app"
            )
        if self.max_recipients < 1:
            raise ConfigurationError("max_recipients must be at least 1")

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
        return cls(keys=keys, default_sender=sender or None)


def parse_key_list(value: str) -> tuple[bytes, ...]:
    """Keys from one environment value, separated by whitespace or commas."""
    return tuple(key.encode("utf-8") for key in re.split(r"[\s,]+", value) if key)


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

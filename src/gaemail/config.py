"""Settings: flag, then environment variable, then envdir file, then default.

Each resolved setting remembers where it came from, so `gaemail config` and every
error can say which place to fix.  Nothing is read until a setting is asked for,
and the secret's value never reaches a message, a repr or a log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from gaemail import protocol
from gaemail.errors import ConfigurationError, describe_os_error

ENVDIR_VARIABLE = protocol.ENVDIR_VARIABLE
DEFAULT_ENVDIR = protocol.DEFAULT_ENVDIR


@dataclass(frozen=True)
class Spec:
    """How one setting is found.  `flag_is_file`: the flag names a file holding it."""

    key: str
    flag: str
    env: str
    help: str
    default: str | None = None
    flag_is_file: bool = False
    secret: bool = False


SPECS: dict[str, Spec] = {
    spec.key: spec
    for spec in (
        Spec("url", "--url", protocol.URL_VARIABLE, "URL of the gaemail proxy"),
        Spec(
            "secret",
            "--secret-file",
            protocol.SECRET_VARIABLE,
            "shared signing secret (the flag names a file; its first line is the key)",
            flag_is_file=True,
            secret=True,
        ),
        Spec("from", "--from", "GMAIL_FROM", "sender for messages that have no From"),
        Spec("aliases", "--aliases", "GMAIL_ALIASES", "aliases file, /etc/aliases format"),
        Spec(
            "default_domain",
            "--default-domain",
            "GMAIL_DEFAULT_DOMAIN",
            "domain added to unqualified recipients",
        ),
        Spec("timeout", "--timeout", "GMAIL_TIMEOUT", "seconds to wait for the proxy", "30"),
        Spec(
            "queue_dir",
            "--queue-dir",
            "GMAIL_QUEUE_DIR",
            "queue directory (default /var/spool/gaemail for root and, once it is a drop box, "
            "for all; else per user)",
        ),
    )
}


@dataclass(frozen=True)
class Setting:
    """A resolved value and the place it came from."""

    key: str
    value: str = field(repr=False)  # never in a repr: it may be the secret
    source: str

    @property
    def display(self) -> str:
        """The value as it may be shown to a person."""
        if SPECS[self.key].secret:
            return f"(hidden, {len(self.value)} characters)"
        return self.value


def read_first_line(path: str) -> str:
    """The first line of a file, stripped; raises ConfigurationError naming the file."""
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            return f.readline().strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {describe_os_error(exc)}") from None


class Settings:
    """Resolves settings for one command run.

    `flags` maps setting keys to command-line values (None when not given) and
    `environ` is the process environment, injected so tests need not touch it.
    """

    def __init__(
        self,
        flags: Mapping[str, str | None] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._flags = dict(flags or {})
        self._environ = os.environ if environ is None else environ
        self._cache: dict[str, Setting | None] = {}

    @property
    def envdir(self) -> str:
        return self._environ.get(ENVDIR_VARIABLE) or DEFAULT_ENVDIR

    def envdir_file(self, key: str) -> str:
        return os.path.join(self.envdir, SPECS[key].env)

    def get(self, key: str) -> Setting | None:
        """The setting, or None when no place sets it and it has no default."""
        if key not in self._cache:
            self._cache[key] = self._resolve(SPECS[key])
        return self._cache[key]

    def value(self, key: str) -> str | None:
        setting = self.get(key)
        return setting.value if setting else None

    def require(self, key: str) -> Setting:
        setting = self.get(key)
        if setting is None:
            spec = SPECS[key]
            raise ConfigurationError(
                f"no {spec.help.split(' (')[0]} configured: use {spec.flag}, "
                f"set {spec.env}, or write it to {self.envdir_file(key)}"
            )
        return setting

    def secret_key(self) -> bytes:
        """The signing secret as bytes."""
        return self.require("secret").value.encode("utf-8")

    def timeout(self) -> float:
        setting = self.require("timeout")
        try:
            seconds = float(setting.value)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 3600:
            raise ConfigurationError(
                f"timeout from {setting.source} must be a number of seconds between 0 and 3600"
            )
        return seconds

    def _resolve(self, spec: Spec) -> Setting | None:
        flag_value = self._flags.get(spec.key)
        if flag_value is not None:
            if spec.flag_is_file:
                value = read_first_line(flag_value)
                return self._checked(spec, value, f"{spec.flag} {flag_value}")
            return self._checked(spec, flag_value, spec.flag)
        env_value = self._environ.get(spec.env)
        if env_value:
            value = env_value.strip() if spec.secret else env_value
            return self._checked(spec, value, f"environment {spec.env}")
        path = self.envdir_file(spec.key)
        if os.path.lexists(path):
            value = read_first_line(path)
            # daemontools' envdir: an empty file unsets the variable.
            if value:
                return Setting(spec.key, value, path)
        if spec.default is not None:
            return Setting(spec.key, spec.default, "default")
        return None

    @staticmethod
    def _checked(spec: Spec, value: str, source: str) -> Setting:
        if not value:
            raise ConfigurationError(f"{source} gives an empty {spec.help.split(' (')[0]}")
        return Setting(spec.key, value, source)

    def report(self) -> list[tuple[str, str, str]]:
        """(variable, shown value, source) for every setting, for `gaemail config`."""
        rows = [
            (
                ENVDIR_VARIABLE,
                self.envdir,
                "environment" if self._environ.get(ENVDIR_VARIABLE) else "default",
            )
        ]
        for key, spec in SPECS.items():
            try:
                setting = self.get(key)
            except ConfigurationError as exc:
                rows.append((spec.env, "(error)", str(exc)))
                continue
            if setting is None:
                rows.append((spec.env, "(not set)", ""))
            else:
                rows.append((spec.env, setting.display, setting.source))
        return rows

"""Settings: flag, then environment variable, then envdir file, then default.

Each resolved setting remembers where it came from, so `gaemail config` and every
error can say which place to fix.  Nothing is read until a setting is asked for,
and the secret's value never reaches a message, a repr or a log.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gaemail import protocol
from gaemail.errors import ConfigurationError, describe_os_error

MAILNAME = "/etc/mailname"
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
            "protocol",
            "--protocol",
            "GMAIL_PROTOCOL",
            "protocol version to speak: v2, or v1 for a proxy that knows only the 2010 form",
            "v2",
        ),
        Spec(
            "ca_file",
            "--ca-file",
            "GMAIL_CA_FILE",
            "certificates (PEM) to trust for an https proxy URL instead of the system's",
        ),
        Spec(
            "retry",
            "--retry",
            "GMAIL_RETRY",
            "retry schedule of the queue: FIRST,MAX (the wait doubles from FIRST up to MAX)",
            "1m,1h",
        ),
        Spec(
            "max_age",
            "--max-age",
            "GMAIL_MAX_AGE",
            "how long the queue keeps trying a message before it fails and bounces",
            "5d",
        ),
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

    def mail_domain(
        self, mailname: str = MAILNAME, fqdn: Callable[[], str] = socket.getfqdn
    ) -> Setting | None:
        """The domain of this host's mail: GMAIL_DEFAULT_DOMAIN, else /etc/mailname, else
        the host's fully qualified name, as sendmail, dma and nullmailer take it.

        A name without a dot (`localhost`, a bare host name) is no mail domain.
        """
        setting = self.get("default_domain")
        if setting is not None:
            return setting
        try:
            with open(mailname, encoding="utf-8", errors="replace") as f:
                written = f.readline().strip().lstrip("@")
        except OSError:
            written = ""
        if "." in written.strip("."):
            return Setting("default_domain", written, mailname)
        host = fqdn().strip().rstrip(".")
        if "." in host and not host.endswith((".localdomain", ".local")):
            return Setting("default_domain", host, "the host's name")
        return None

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment the settings are read from (HTTPS_PROXY and the like, too)."""
        return self._environ

    def protocol_version(self) -> str:
        setting = self.require("protocol")
        if setting.value not in ("v1", "v2"):
            raise ConfigurationError(f"protocol from {setting.source} must be v1 or v2")
        return setting.value

    def retry_schedule(self) -> tuple[float, float]:
        """(first wait, longest wait) in seconds."""
        setting = self.require("retry")
        first, comma, longest = setting.value.partition(",")
        try:
            waits = (parse_duration(first), parse_duration(longest if comma else first))
        except ValueError:
            waits = (0.0, -1.0)
        if not 0 < waits[0] <= waits[1]:
            raise ConfigurationError(
                f"retry schedule from {setting.source} must be FIRST,MAX with 0 < FIRST <= MAX,"
                " each a number of seconds or with a unit s, m, h or d (e.g. 1m,1h)"
            )
        return waits

    def max_age(self) -> float:
        setting = self.require("max_age")
        try:
            seconds = parse_duration(setting.value)
        except ValueError:
            seconds = -1.0
        if seconds <= 0:
            raise ConfigurationError(
                f"maximum age from {setting.source} must be a duration such as 5d or 12h"
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


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '5m', '1h' or '5d'; raises ValueError otherwise."""
    text = text.strip().lower()
    scale = _UNITS.get(text[-1:], 0.0)
    number = float(text[:-1] if scale else text)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(text)
    return number * (scale or 1.0)


def calling_user() -> tuple[str | None, str | None]:
    """The login and full name (GECOS, up to its first comma) of the real user."""
    import pwd

    try:
        account = pwd.getpwuid(os.getuid())
    except KeyError:
        return None, None
    return account.pw_name, account.pw_gecos.split(",")[0].strip() or None

"""Django's email backend over gaemail: `EMAIL_BACKEND = "gaemail.django.EmailBackend"`.

Each message goes through `GmailProxy`: serialised once by Django's
`message()`, its envelope `message.recipients()` (so bcc is delivered and never
shown), Date and Message-ID as Django wrote them.  Settings, each an OPTIONS key
of Django 6.1's MAILERS or a setting: `proxy_url` / EMAIL_APPENGINE_PROXY_URL,
`secret_key` / EMAIL_APPENGINE_SECRET_KEY, `timeout`, `fix_sender`, `queue`
(EMAIL_APPENGINE_TIMEOUT, _FIX_SENDER, _QUEUE); what is not set comes from gmail's
settings (environment, envdir), and the secret last from Django's SECRET_KEY, as
appengine-mailer did, which the system check gaemail.W001 warns about.  The
checks run with "gaemail.django.GaemailConfig" in INSTALLED_APPS.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import django
from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend

from gaemail.api import ClientSettings, GmailProxy
from gaemail.config import Settings
from gaemail.errors import ConfigurationError, MessageSendingFailure

logger = logging.getLogger("gaemail.django")

# OPTIONS key -> the Django setting that gives it when OPTIONS do not.
OPTIONS = {
    "proxy_url": "EMAIL_APPENGINE_PROXY_URL",
    "secret_key": "EMAIL_APPENGINE_SECRET_KEY",
    "timeout": "EMAIL_APPENGINE_TIMEOUT",
    "fix_sender": "EMAIL_APPENGINE_FIX_SENDER",
    "queue": "EMAIL_APPENGINE_QUEUE",
}
BACKENDS = ("gaemail.django.EmailBackend", "gaemail.django.GmailBackend")
# Django 6.1 hands backends their MAILERS alias and reports unknown OPTIONS itself.
_HAS_MAILERS = django.VERSION >= (6, 1)


@dataclass(frozen=True)
class Resolved:
    """A backend's settings, and whether the secret is Django's own SECRET_KEY."""

    client: ClientSettings
    secret_is_django_key: bool


def resolve(options: Mapping[str, Any]) -> Resolved:
    """OPTIONS (or constructor arguments), then settings, then gmail's settings.

    Raises ImproperlyConfigured naming what to set; `fail_silently` never hides it.
    """
    given = {key: options.get(key) for key in OPTIONS}
    for key, name in OPTIONS.items():
        if given[key] is None:
            given[key] = getattr(django_settings, name, None)
    try:
        gmail = Settings()
        if given["proxy_url"] is None and gmail.get("url") is None:
            raise ImproperlyConfigured(_missing("proxy_url", gmail, "url"))
        secret, from_django = given["secret_key"], False
        if isinstance(secret, Sequence) and not isinstance(secret, str | bytes):
            secret = secret[0] if secret else None  # a list of keys: sign with the first
        if secret is None and gmail.get("secret") is None:
            secret = getattr(django_settings, "SECRET_KEY", None) or None
            if secret is None:
                raise ImproperlyConfigured(_missing("secret_key", gmail, "secret"))
            from_django = True
        client = ClientSettings.resolve(
            url=given["proxy_url"],
            secret_key=secret,
            timeout=_seconds(given["timeout"]),
            fix_sender=bool(given["fix_sender"]),
            queue=bool(given["queue"]),
        )
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"gaemail: {exc}") from exc
    return Resolved(client, from_django)


def _missing(key: str, gmail: Settings, gmail_key: str) -> str:
    variable = "GMAIL_PROXY_URL" if gmail_key == "url" else "GMAIL_SECRET_KEY"
    return (
        f"gaemail: no {key.replace('_', ' ')}: set {OPTIONS[key]} (or the mailer's OPTIONS "
        f"{key!r}), set {variable}, or write it to {gmail.envdir_file(gmail_key)}"
    )


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise ImproperlyConfigured(
            f"gaemail: {OPTIONS['timeout']} must be a number of seconds between 0 and 3600"
        )
    return seconds


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]
    """Sends Django's messages through a gaemail proxy; one connection pool per open()."""

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        proxy_url: str | None = None,
        secret_key: str | None = None,
        timeout: float | None = None,
        fix_sender: bool | None = None,
        queue: bool | None = None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        # send_mail() passes username=None and password=None; any other value
        # would be a login this backend cannot do.
        kwargs.update({k: v for k, v in (("username", username), ("password", password)) if v})
        unknown = sorted(set(kwargs) - {"alias", "_ignore_unknown_kwargs"})
        if unknown and not (_HAS_MAILERS and kwargs.get("alias") is not None):
            raise TypeError(f"gaemail.django.EmailBackend has no option {', '.join(unknown)}")
        super().__init__(**kwargs)  # with MAILERS, Django reports unknown OPTIONS
        self.fail_silently = fail_silently  # implemented here, as Django 6.1 asks
        options = {
            "proxy_url": proxy_url,
            "secret_key": secret_key,
            "timeout": timeout,
            "fix_sender": fix_sender,
            "queue": queue,
        }
        self.settings = resolve(options).client
        self._lock = threading.RLock()
        self._proxy: GmailProxy | None = None

    def open(self) -> bool:
        """Start a connection pool; False when one is open already."""
        with self._lock:
            if self._proxy is not None:
                return False
            self._proxy = GmailProxy(settings=self.settings)
            return True

    def close(self) -> None:
        with self._lock:
            if self._proxy is not None:
                self._proxy.close()
                self._proxy = None

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send each message that has recipients; the number sent (or queued)."""
        if not email_messages:
            return 0
        with self._lock:
            created = self.open()
            try:
                return sum(self._send(message) for message in email_messages)
            finally:
                if created:
                    self.close()

    def _send(self, message: Any) -> int:
        recipients = message.recipients()
        if not recipients:
            return 0
        assert self._proxy is not None
        # Once per send: Django mints a new Message-ID at every message() call.
        outgoing = self._proxy.prepare(
            message.message(),
            sender=parseaddr(message.from_email or "")[1] or None,
            recipients=recipients,
        )
        try:
            receipt = self._proxy.deliver(outgoing)
        except MessageSendingFailure as exc:
            if not self.fail_silently:
                raise
            logger.warning("gaemail: message %s not sent: %s", outgoing.message_id, exc)
            return 0
        message.gaemail_message_id = receipt.message_id
        message.gaemail_queued = receipt.queued
        return 1


GmailBackend = EmailBackend  # appengine-mailer's name


def _configured() -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, OPTIONS) for every mailer that uses this backend."""
    mailers = getattr(django_settings, "MAILERS", None)
    if mailers is not None:
        for alias, config in mailers.items():
            if config.get("BACKEND") in BACKENDS:
                yield f"MAILERS[{alias!r}]", config.get("OPTIONS", {})
    elif getattr(django_settings, "EMAIL_BACKEND", None) in BACKENDS:
        yield "EMAIL_BACKEND", {}


def check_settings(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """gaemail.E001 missing URL or secret, W001 Django's SECRET_KEY, W002 plain http."""
    found: list[checks.CheckMessage] = []
    for where, options in _configured():
        try:
            resolved = resolve(options)
        except ImproperlyConfigured as exc:
            found.append(checks.Error(f"{where}: {exc}", id="gaemail.E001"))
            continue
        if resolved.secret_is_django_key:
            found.append(
                checks.Warning(
                    f"{where}: gaemail signs mail with Django's SECRET_KEY",
                    hint="Give the proxy a key of its own: EMAIL_APPENGINE_SECRET_KEY or "
                    "GMAIL_SECRET_KEY; a leaked proxy key must not forge sessions.",
                    id="gaemail.W001",
                )
            )
        endpoint = resolved.client.endpoint
        if endpoint.scheme != "https" and not _loopback(endpoint.host):
            found.append(
                checks.Warning(
                    f"{where}: the proxy URL {endpoint.shown} is not https",
                    hint="Messages and signatures would cross the network in clear text.",
                    id="gaemail.W002",
                )
            )
    return found


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GaemailConfig(AppConfig):  # type: ignore[misc]
    """INSTALLED_APPS entry that adds gaemail's system checks."""

    name = "gaemail.django"
    label = "gaemail"
    verbose_name = "gaemail"

    def ready(self) -> None:
        checks.register(check_settings, "gaemail")

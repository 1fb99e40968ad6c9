"""HTTP proxies from the environment, read as httpx (and curl) read them.

`gmail` sends with http.client, which knows no proxies, and `GmailProxy` with
httpx, which reads HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY: this module
gives gmail the same answer for the same environment, so the two never differ on
a server that reaches the internet only through a proxy.
"""

from __future__ import annotations

from collections.abc import Mapping

from gaemail.errors import ConfigurationError


def _variable(environ: Mapping[str, str], name: str) -> str:
    # Lowercase first, as urllib (and so httpx) reads them.
    return (environ.get(name.lower()) or environ.get(name.upper()) or "").strip()


def proxy_for(scheme: str, host: str, environ: Mapping[str, str]) -> str | None:
    """The proxy URL to reach `scheme://host` through, or None to go direct."""
    if bypassed(host, _variable(environ, "no_proxy")):
        return None
    # A CGI program sees the request's Proxy: header as HTTP_PROXY (httpoxy);
    # urllib ignores that variable there, and so does gmail, called by PHP.
    http_proxy = "" if environ.get("REQUEST_METHOD") else _variable(environ, "http_proxy")
    found = {"https": _variable(environ, "https_proxy"), "http": http_proxy}.get(scheme, "")
    found = found or _variable(environ, "all_proxy")
    if not found:
        return None
    url = found if "://" in found else f"http://{found}"
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"the {scheme} proxy from the environment must be an http:// URL "
            f"(got {url.partition('://')[0]}://)"
        )
    return url


def bypassed(host: str, no_proxy: str) -> bool:
    """Whether NO_PROXY names `host`: '*', the host, an address, or a domain above it."""
    host = host.strip("[]").lower().rstrip(".")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "://" in entry:
            entry = entry.partition("://")[2]
        entry = entry.strip("[]").rstrip(".")
        if _is_address(entry) or _is_address(host):
            if entry == host:
                return True
            continue
        name = entry.lstrip(".")
        if host == name and not entry.startswith("."):
            return True
        if host.endswith("." + name):
            return True
    return False


def _is_address(text: str) -> bool:
    import ipaddress  # only when NO_PROXY names hosts

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True

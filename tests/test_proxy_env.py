"""gmail finds HTTP proxies in the environment exactly where httpx does."""

from __future__ import annotations

import os

import httpx
import pytest

from gaemail.errors import ConfigurationError
from gaemail.proxy_env import bypassed, proxy_for

ENVIRONMENTS = [
    {},
    {"HTTPS_PROXY": "http://proxy.example:3128"},
    {"https_proxy": "proxy.example:8080"},
    {"HTTP_PROXY": "http://p.example:1"},
    {"ALL_PROXY": "http://all.example:9"},
    {"HTTPS_PROXY": "http://p.example:1", "NO_PROXY": "example.org"},
    {"HTTPS_PROXY": "http://p.example:1", "NO_PROXY": ".example.org"},
    {"HTTPS_PROXY": "http://p.example:1", "NO_PROXY": "*"},
    {"HTTPS_PROXY": "http://p.example:1", "no_proxy": "127.0.0.1,localhost"},
    {"HTTPS_PROXY": "http://p.example:1", "NO_PROXY": "other.example, app.example.org"},
]
URLS = [
    "https://app.example.org/",
    "https://example.org/",
    "http://app.example.org/",
    "https://127.0.0.1:8443/",
    "http://localhost:8025/",
    "https://notexample.org/",
]


def httpx_proxy(url: str, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Which proxy httpx would use for `url` under `environ` (None: direct)."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    client = httpx.Client(trust_env=True)
    try:
        transport = client._transport_for_url(httpx.URL(url))
        pool = getattr(transport, "_pool", None)
        proxy_url = getattr(pool, "_proxy_url", None)
        if proxy_url is None:
            return None
        return f"{proxy_url.scheme.decode()}://{proxy_url.host.decode()}:{proxy_url.port}"
    finally:
        client.close()


@pytest.mark.parametrize(
    "environ", ENVIRONMENTS, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()) or "none"
)
@pytest.mark.parametrize("url", URLS)
def test_same_proxy_as_httpx(
    url: str, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = httpx.URL(url)
    ours = proxy_for(target.scheme, target.host, environ)
    expected = httpx_proxy(url, environ, monkeypatch)
    if ours is not None:
        parsed = httpx.URL(ours)
        ours = f"{parsed.scheme}://{parsed.host}:{parsed.port or 80}"
    assert ours == expected


def test_cgi_ignores_http_proxy() -> None:
    environ = {"HTTP_PROXY": "http://attacker.example:1", "REQUEST_METHOD": "POST"}
    assert proxy_for("http", "app.example.org", environ) is None


def test_a_socks_proxy_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="http:// URL"):
        proxy_for("https", "app.example.org", {"HTTPS_PROXY": "socks5://p.example:1080"})


@pytest.mark.parametrize(
    ("host", "no_proxy", "expected"),
    [
        ("a.example.org", "example.org", True),
        ("example.org", ".example.org", False),
        ("a.example.org", ".example.org", True),
        ("badexample.org", "example.org", False),
        ("::1", "::1", True),
        ("[::1]", "::1", True),
        ("10.0.0.1", "10.0.0.2", False),
    ],
)
def test_no_proxy_matching(host: str, no_proxy: str, expected: bool) -> None:
    assert bypassed(host, no_proxy) is expected

"""gmail and GmailProxy reach the proxy through HTTP proxies and private CAs, on loopback.

A real `gaemail serve`, the installed gmail, a forward proxy that serves CONNECT
and absolute-form requests as squid does, and a TLS front whose certificate a
private CA (made for the test with openssl) signed.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from netpeers import ForwardProxy, private_ca_front
from queue_support import (
    GMAIL,
    Server,
    gmail_env,
    message,
    message_id,
    queued,
    run,
    running_server,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("serve")) as server:
        yield server


@pytest.fixture(scope="module")
def tls(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(https URL of a TLS front for the server, the private CA's certificate)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: it makes the test's private CA")
    with private_ca_front(server.port, tmp_path_factory.mktemp("ca")) as (front, ca):
        yield front.url, ca


def send(env: dict[str, str], n: int) -> bytes:
    done = run([GMAIL, "--no-queue", "-t", "-i"], env, message(n))
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_http_proxy_from_the_environment(server: Server, tmp_path: Path) -> None:
    with ForwardProxy() as proxy:
        env = gmail_env(server.envdir, tmp_path / "q", HTTP_PROXY=proxy.url)
        send(env, 101)
        assert proxy.requests == [f"POST {server.url.rstrip('/')}/v2/send HTTP/1.1"]
        env = gmail_env(server.envdir, tmp_path / "q", HTTP_PROXY=proxy.url, NO_PROXY="127.0.0.1")
        send(env, 102)
        assert len(proxy.requests) == 1  # NO_PROXY: straight to the proxy URL
    assert server.deliveries()[message_id(101)] == 1
    assert server.deliveries()[message_id(102)] == 1


def test_a_private_ca_is_trusted_only_when_named(
    server: Server, tls: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca = tls
    env = gmail_env(server.envdir, tmp_path / "q", GMAIL_PROXY_URL=url)
    refused = run([GMAIL, "--no-queue", "-t", "-i"], env, message(103))
    assert refused.returncode == 75
    assert b"CERTIFICATE_VERIFY_FAILED" in refused.stderr or b"certificate" in refused.stderr
    send({**env, "GMAIL_CA_FILE": str(ca)}, 104)
    assert server.deliveries()[message_id(103)] == 0
    assert server.deliveries()[message_id(104)] == 1


def test_https_through_a_connect_tunnel(
    server: Server, tls: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca = tls
    port = url.rsplit(":", 1)[1].strip("/")
    with ForwardProxy() as proxy:
        env = gmail_env(
            server.envdir,
            tmp_path / "q",
            GMAIL_PROXY_URL=url,
            GMAIL_CA_FILE=str(ca),
            HTTPS_PROXY=proxy.url,
        )
        send(env, 105)
        (request,) = proxy.requests
        assert request.startswith(f"CONNECT 127.0.0.1:{port} HTTP/")
    assert server.deliveries()[message_id(105)] == 1


def test_the_python_api_trusts_the_same_ca(
    server: Server, tls: tuple[str, Path], tmp_path: Path
) -> None:
    from gaemail import GmailProxy

    url, ca = tls
    secret = (server.envdir / "GMAIL_SECRET_KEY").read_text().strip()
    environ = gmail_env(server.envdir, tmp_path / "q", GMAIL_CA_FILE=str(ca))
    with GmailProxy(secret, url, environ=environ) as proxy:
        assert proxy.send_mail(message(106)) is True
    assert server.deliveries()[message_id(106)] == 1


def test_credentials_in_the_url_are_refused_and_never_shown(server: Server, tmp_path: Path) -> None:
    port = server.url.rsplit(":", 1)[1]
    env = gmail_env(
        server.envdir, tmp_path / "q", GMAIL_PROXY_URL=f"http://mail:hunter2@127.0.0.1:{port}"
    )
    done = run([GMAIL, "--no-queue", "-t", "-i"], env, message(107))
    assert done.returncode == 78
    assert b"user or password" in done.stderr and b"hunter2" not in done.stderr
    held = run([GMAIL, "-odi", "-t", "-i"], env, message(108))  # a setup mistake holds mail
    assert held.returncode == 0, held.stderr
    assert b"held until the setup is fixed" in held.stderr and b"hunter2" not in held.stderr
    assert queued(tmp_path / "q") == Counter({message_id(108): 1})
    assert server.deliveries()[message_id(107)] == 0

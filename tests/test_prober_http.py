"""HTTP and HTTPS checks against real servers on loopback (aiohttp's, with a test CA)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from aiohttp import web
from harness import has_ipv6

from healthdns.prober.checks import label, probe
from healthdns.shared import config
from healthdns.shared.config import CheckSpec

NAME = "www.example.test"


class Backend:
    """What the test server saw."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.sni: list[str | None] = []
        self.slow_cancelled = asyncio.Event()


def _app(seen: Backend) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        seen.requests.append(request)
        path = request.path
        if path.startswith("/status/"):
            return web.Response(status=int(path.rsplit("/", 1)[1]), text="status")
        if path == "/slow":
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen.slow_cancelled.set()
                raise
        if path == "/big":
            return web.Response(text="x" * 200_000 + "needle")
        return web.Response(text=f"service is healthy; host={request.host}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextlib.asynccontextmanager
async def serving(tls: ssl.SSLContext | None = None,
                  host: str = "127.0.0.1") -> AsyncIterator[tuple[int, Backend]]:
    seen = Backend()
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: seen.sni.append(name)  # type: ignore[assignment]
    runner = web.AppRunner(_app(seen), handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port, seen
    finally:
        await runner.cleanup()


def check(port: int, **fields: Any) -> CheckSpec:
    """A normalised check, the way the prober receives it."""
    doc = {"zones": [{"origin": "example.test", "nameservers": ["ns1.example.test"],
                      "records": {"www": {"pool": {"addresses": ["127.0.0.1"], "check": {
                          "kind": "http", "port": port, "timeout": 1.0, **fields}}}}}]}
    pool = config.from_mapping(doc).zones[0].records["www"].pool
    assert pool is not None and pool.groups[0].check is not None
    return pool.groups[0].check


# ---------------------------------------------------------------------------------------------
# HTTP


@pytest.mark.parametrize(("fields", "result"), [
    ({}, (True, "status 200")),
    ({"path": "/status/204"}, (True, "status 204")),
    ({"path": "/status/302"}, (True, "status 302")),  # redirects are not followed
    ({"path": "/status/302", "status": "200-299"}, (False, "status 302")),
    ({"path": "/status/503"}, (False, "status 503")),
    ({"path": "/status/503", "status": "200,503"}, (True, "status 503")),
    ({"body": "healthy"}, (True, "status 200, body matches")),
    ({"body": "sick"}, (False, "body mismatch: no 'sick'")),
    ({"body_regex": r"service is \w+;"}, (True, "status 200, body matches")),
    ({"body_regex": r"^down"}, (False, "body mismatch: no match for '^down'")),
    ({"path": "/big", "body": "needle"}, (False, "body mismatch: no 'needle'")),  # past 64 KiB
    ({"method": "HEAD"}, (True, "status 200")),
    ({"path": "/status/503", "body": "healthy"}, (False, "status 503")),
])
def test_http_status_and_body(fields: dict[str, Any], result: tuple[bool, str]) -> None:
    async def scenario() -> tuple[bool, str]:
        async with serving() as (port, _):
            return await probe("127.0.0.1", check(port, **fields))

    assert asyncio.run(scenario()) == result


def test_http_request_carries_method_path_host_and_headers() -> None:
    async def scenario() -> web.Request:
        async with serving() as (port, seen):
            spec = check(port, method="POST", path="/health?deep=1", host=NAME,
                         headers={"X-Check": "healthdns"}, body=f"host={NAME}")
            assert await probe("127.0.0.1", spec) == (True, "status 200, body matches")
            return seen.requests[0]

    request = asyncio.run(scenario())
    assert (request.method, request.path_qs) == ("POST", "/health?deep=1")
    assert request.headers["Host"] == NAME
    assert request.headers["X-Check"] == "healthdns"
    assert request.headers["User-Agent"] == "healthdns-prober"


def test_http_refused_and_timeout() -> None:
    with socket.socket() as holder:  # bound, not listening: refused, and the port stays ours
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        assert asyncio.run(probe("127.0.0.1", check(port))) == (False, "connection refused")

    async def slow() -> tuple[tuple[bool, str], bool]:
        async with serving() as (port, seen):
            result = await probe("127.0.0.1", check(port, path="/slow", timeout=0.2))
            # The request was cancelled: the server sees the connection go.
            await asyncio.wait_for(seen.slow_cancelled.wait(), 2.0)
            return result, seen.slow_cancelled.is_set()

    assert asyncio.run(slow()) == ((False, "timeout after 0.2 s"), True)


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
def test_http_over_ipv6() -> None:
    async def scenario() -> tuple[bool, str]:
        async with serving(host="::1") as (port, seen):
            result = await probe("::1", check(port))
            assert seen.requests[0].remote == "::1"
            return result

    assert asyncio.run(scenario()) == (True, "status 200")
    assert label("::1", check(8080, path="/up")) == "http [::1]:8080/up"


# ---------------------------------------------------------------------------------------------
# HTTPS with a test CA


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def https(port: int, ca: trustme.CA | None, **fields: Any) -> CheckSpec:
    if ca is not None:
        fields["ca_pem"] = ca.cert_pem.bytes().decode()
    return check(port, kind="https", **fields)


def run_https(ca: trustme.CA, names: tuple[str, ...], spec: Any) -> tuple[tuple[bool, str],
                                                                          list[str | None]]:
    async def scenario() -> tuple[tuple[bool, str], list[str | None]]:
        async with serving(server_tls(ca, *names)) as (port, seen):
            return await probe("127.0.0.1", spec(port)), seen.sni

    return asyncio.run(scenario())


def test_https_verifies_the_name_given_as_host_and_sends_it_as_sni(ca: trustme.CA) -> None:
    result, sni = run_https(ca, (NAME,), lambda port: https(port, ca, host=NAME))
    assert result == (True, "status 200")
    assert sni == [NAME]


def test_https_without_host_verifies_the_address(ca: trustme.CA) -> None:
    result, sni = run_https(ca, ("127.0.0.1",), lambda port: https(port, ca))
    assert result == (True, "status 200")
    assert sni == [None]  # no SNI for an address


def test_https_name_mismatch_is_a_certificate_error(ca: trustme.CA) -> None:
    result, _ = run_https(ca, ("other.example.test",), lambda port: https(port, ca, host=NAME))
    assert result[0] is False
    assert result[1].startswith("certificate error: Hostname mismatch"), result


def test_https_unknown_ca_is_a_certificate_error(ca: trustme.CA) -> None:
    stranger = trustme.CA()
    result, _ = run_https(stranger, (NAME,), lambda port: https(port, ca, host=NAME))
    assert result == (False, "certificate error: unable to get local issuer certificate")
    # The system's CAs do not know the test CA either.
    result, _ = run_https(ca, (NAME,), lambda port: https(port, None, host=NAME))
    assert result == (False, "certificate error: unable to get local issuer certificate")


def test_https_with_verification_off_accepts_any_certificate(ca: trustme.CA) -> None:
    stranger = trustme.CA()
    result, sni = run_https(stranger, ("other.example.test",),
                            lambda port: https(port, None, host=NAME, verify=False))
    assert result == (True, "status 200")
    assert sni == [NAME]


def test_https_ca_file_is_read_by_the_config(ca: trustme.CA, tmp_path: Any) -> None:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    spec = https(1, None, host=NAME, ca_file=str(path))
    assert spec.ca_pem == ca.cert_pem.bytes().decode()
    result, _ = run_https(ca, (NAME,), lambda port: https(port, None, host=NAME,
                                                          ca_file=str(path)))
    assert result == (True, "status 200")


def test_https_to_a_plain_http_server_is_a_tls_error() -> None:
    async def scenario() -> tuple[bool, str]:
        async with serving() as (port, _):
            return await probe("127.0.0.1", check(port, kind="https", verify=False))

    ok, reason = asyncio.run(scenario())
    assert not ok and reason.startswith(("TLS error", "server disconnected")), reason

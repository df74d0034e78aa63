"""Who may ask the control endpoint: the Host header must name it (DNS rebinding), reads may
need a token, and the endpoint may speak HTTPS only. Probes (/healthz, /readyz) stay open.

Every check runs against the real supervisor with real clients (http.client, raw sockets,
curl, healthdns-ctl); certificates come from a test CA made here (trustme).
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from harness import Server, has_ipv6, run_cli

TOKEN = "write-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"
REBOUND = "rebind.attacker.example"  # a name an attacker's page rebinds to 127.0.0.1

ZONE = """
    [server]
    listen = ["127.0.0.1:0"]

    [[zones]]
    origin = "example.test"
    nameservers = ["ns1.example.net"]

    [zones.records.www]
    a = ["192.0.2.1"]
"""


def start(tmp: Path, control: str, args: list[str] | None = None) -> Server:
    return Server(args or [], tmp, f"[control]\n{control}\n" + ZONE).start()


def endpoint(server: Server) -> tuple[str, int]:
    host, port = server.control.split("://", 1)[1].rsplit(":", 1)
    return host.strip("[]"), int(port)


def ask(server: Server, path: str, host: str | None, headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None) -> int:
    """The status code of GET `path` with this Host header (None: the client's own)."""
    address, port = endpoint(server)
    connection = (http.client.HTTPConnection(address, port, timeout=5) if context is None else
                  http.client.HTTPSConnection(address, port, timeout=5, context=context))
    try:
        connection.putrequest("GET", path, skip_host=host is not None)
        if host is not None:
            connection.putheader("Host", host)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def raw(server: Server, data: bytes) -> bytes:
    """The whole answer to `data`: its head and its Content-Length of body."""
    with socket.create_connection(endpoint(server), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while (b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1])
               < int(re.search(rb"Content-Length: (\d+)", answer).group(1))):  # type: ignore[union-attr]
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


# --- Host ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("plain")
    server = start(tmp, f'token = "{TOKEN}"')
    yield server
    server.stop()


@pytest.mark.parametrize(("host", "code"), [
    ("127.0.0.1:{port}", 200),
    ("127.0.0.1", 200),
    ("localhost:{port}", 200),
    ("LocalHost", 200),
    (f"{REBOUND}:{{port}}", 421),
    (REBOUND, 421),
    ("127.0.0.1:1", 421),  # the address, another port
    ("127.0.0.2:{port}", 421),  # another loopback address
    ("", 421),
])
def test_the_host_must_name_the_endpoint(plain: Server, host: str, code: int) -> None:
    """Before: any Host was served, so a page rebound to 127.0.0.1 read /status."""
    wanted = host.format(port=endpoint(plain)[1])
    for path in ("/status", "/metrics", "/"):
        assert ask(plain, path, wanted) == code, path


def test_probes_answer_whatever_the_host(plain: Server) -> None:
    assert ask(plain, "/healthz", REBOUND) == 200
    assert ask(plain, "/readyz", REBOUND) in (200, 503)  # ready or not, not refused


def test_a_write_with_a_foreign_host_is_refused_before_its_token_is_looked_at(
        plain: Server) -> None:
    answer = raw(plain, f"POST /reload HTTP/1.1\r\nHost: {REBOUND}\r\nAuthorization: Bearer "
                 f"{TOKEN}\r\nContent-Length: 0\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 421 "), answer


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /status HTTP/1.1\r\n\r\n", b"421"),  # HTTP/1.1 requires Host (RFC 9112 3.2)
    (b"GET /status HTTP/1.0\r\n\r\n", b"200"),  # HTTP/1.0 did not
    (b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: " + REBOUND.encode() + b"\r\n\r\n",
     b"421"),
])
def test_a_missing_or_doubled_host(plain: Server, head: bytes, status: bytes) -> None:
    assert raw(plain, head).split(b" ")[1] == status


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
def test_an_ipv6_endpoint_is_named_in_brackets(tmp_path: Path) -> None:
    server = start(tmp_path, "", ["--control-listen", "[::1]:0"])
    try:
        port = endpoint(server)[1]
        assert [ask(server, "/status", h) for h in (f"[::1]:{port}", "[::1]", "localhost")] == \
            [200, 200, 200]
        assert ask(server, "/status", f"[::2]:{port}") == 421
    finally:
        server.stop()


def test_allowed_hosts_add_names_and_a_star_allows_any(tmp_path: Path) -> None:
    server = start(tmp_path, 'allowed_hosts = ["Status.Example.NET", "other.example:8443"]')
    try:
        port = endpoint(server)[1]
        codes = [ask(server, "/status", h) for h in (
            "status.example.net", f"status.example.net:{port}", "other.example:8443",
            "other.example:8444", f"127.0.0.1:{port}", REBOUND)]
        assert codes == [200, 200, 200, 421, 200, 421]
    finally:
        server.stop()
    server = start(tmp_path, 'allowed_hosts = ["*"]')
    try:
        assert ask(server, "/status", REBOUND) == 200
    finally:
        server.stop()


# --- read token ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("guarded")
    (tmp / "read-token").write_text(READ_TOKEN + "\n")
    server = start(tmp, f'token = "{TOKEN}"\nread_token_file = "{tmp / "read-token"}"')
    yield server
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(password: str, user: str = "anyone") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("path", ["/status", "/metrics", "/overrides", "/"])
def test_reads_need_the_read_token_or_the_write_token(guarded: Server, path: str) -> None:
    assert ask(guarded, path, None) == 401
    assert ask(guarded, path, None, bearer("not-" + READ_TOKEN)) == 401
    assert ask(guarded, path, None, bearer(READ_TOKEN)) == 200
    assert ask(guarded, path, None, bearer(TOKEN)) == 200
    assert ask(guarded, path, None, basic(READ_TOKEN)) == 200  # a browser's status page
    assert ask(guarded, path, None, basic(READ_TOKEN[:-1])) == 401


def test_a_refused_read_asks_a_browser_for_credentials(guarded: Server) -> None:
    answer = raw(guarded, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b'WWW-Authenticate: Basic realm="healthdns"' in answer


def test_probes_need_no_token(guarded: Server) -> None:
    assert ask(guarded, "/healthz", None) == 200
    assert ask(guarded, "/readyz", None) in (200, 503)


def test_writes_need_the_write_token_as_a_bearer_token(guarded: Server) -> None:
    def post(headers: dict[str, str]) -> int:
        connection = http.client.HTTPConnection(*endpoint(guarded), timeout=5)
        connection.request("POST", "/overrides", body=b'{"address": "192.0.2.99"}',
                           headers=headers)
        status = connection.getresponse().status
        connection.close()
        return status

    assert post(bearer(READ_TOKEN)) == 401
    assert post(basic(TOKEN)) == 401  # a browser's cached credentials never write
    assert post(bearer(TOKEN)) == 400  # let in: 192.0.2.99 is no address of the config


def test_curl_and_healthdns_ctl_read_with_the_token(guarded: Server, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is not None:
        done = subprocess.run([curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u",
                               f"me:{READ_TOKEN}", guarded.control + "/status"],
                              capture_output=True, text=True, timeout=10, check=False)
        assert done.stdout == "200", done.stderr
    ctl = [str(Path(sys.executable).parent / "healthdns-ctl"), "--url", guarded.control]
    refused = subprocess.run([*ctl, "status"], capture_output=True, text=True, timeout=20,
                             check=False)
    assert refused.returncode == 1 and "401" in refused.stderr
    (tmp_path / "token").write_text(READ_TOKEN)
    done = subprocess.run([*ctl, "--token-file", str(tmp_path / "token"), "status"],
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("healthdns ")


# --- TLS ----------------------------------------------------------------------------------------


def issue(ca: trustme.CA, folder: Path, name: str = "") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (mode 600), written to files."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = folder / f"cert{name}.pem", folder / f"key{name}.pem"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    key_path.write_bytes(cert.private_key_pem.bytes())
    key_path.chmod(0o600)
    return cert_path, key_path


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_the_endpoint_speaks_https_with_the_configured_certificate(tmp_path: Path) -> None:
    ca, other_ca = trustme.CA(), trustme.CA()
    cert, key = issue(ca, tmp_path)
    config = f'token = "{TOKEN}"\ncert = "{cert}"\nkey = "{key}"'
    server = start(tmp_path, config)
    try:
        assert "(https)" in server.output()
        server.control = server.control.replace("http://", "https://")
        assert ask(server, "/status", None, context=client_context(ca)) == 200
        assert ask(server, "/healthz", None, context=client_context(ca)) == 200
        with pytest.raises(ssl.SSLCertVerificationError):
            ask(server, "/healthz", None, context=client_context(other_ca))
        answer = raw(server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ")  # plain HTTP on the TLS port
        assert answer.endswith(b"this endpoint speaks HTTPS only\n")
        curl = shutil.which("curl")
        if curl is not None:
            (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
            done = subprocess.run([curl, "-sS", "--cacert", str(tmp_path / "ca.pem"),
                                   server.control + "/healthz"],
                                  capture_output=True, text=True, timeout=10, check=False)
            assert done.stdout == "ok\n", done.stderr
        # A renewed certificate (here: from another CA) is taken at a reload.
        issue(other_ca, tmp_path)
        os.kill(server.pid, signal.SIGHUP)
        server.wait_for("reloaded:", 20)
        assert ask(server, "/healthz", None, context=client_context(other_ca)) == 200
    finally:
        server.stop()


# --- configuration ------------------------------------------------------------------------------


def encrypted(key: Path) -> None:
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    key.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))


@pytest.mark.parametrize(("control", "error"), [
    ('cert = "{cert}"', "control.key: is needed too: give cert and key together"),
    ('key = "{key}"', "control.cert: is needed too"),
    ('cert = "{tmp}/none.pem"\nkey = "{key}"',
     "control.cert: cannot read '{tmp}/none.pem': No such file or directory"),
    ('cert = "{tmp}"\nkey = "{key}"', "control.cert: '{tmp}' is a directory"),
    ('cert = "{key}"\nkey = "{key}"', "control.cert: '{key}' holds no PEM certificate"),
    ('cert = "{cert}"\nkey = "{other_key}"',
     "control.key: '{other_key}' is not the private key of the certificate in '{cert}'"),
    ('cert = "{cert}"\nkey = "{cert}"', "control.key: '{cert}' has mode 644"),
    ('cert = "{cert}"\nkey = "{locked}"', "control.key: '{locked}' is encrypted"),
    ('cert_pem = "x"', "control.cert_pem: is read from control.cert and control.key"),
    ('allowed_hosts = ["a b"]', "control.allowed_hosts[0]: 'a b' is neither a host name"),
    ('allowed_hosts = ["ok.example", "x:99999"]',
     "control.allowed_hosts[1]: 'x:99999': '99999' is not a port"),
    ('read_token = "short"', "control.read_token: the token must be at least 16"),
    (f'read_token = "{READ_TOKEN}"\nread_token_file = "/x"',
     "control.read_token_file: give read_token or read_token_file, not both"),
    ('read_token_file = "{tmp}/none"', "control.read_token_file: cannot read"),
])
def test_control_config_errors_name_the_field(tmp_path: Path, control: str, error: str) -> None:
    ca = trustme.CA()
    cert, key = issue(ca, tmp_path)
    cert.chmod(0o644)
    other_key = issue(ca, tmp_path, "-other")[1]
    locked = issue(ca, tmp_path, "-locked")[1]
    encrypted(locked)
    names = {"cert": cert, "key": key, "other_key": other_key, "locked": locked,
             "tmp": tmp_path}
    path = tmp_path / "c.toml"
    path.write_text(f"[control]\n{control.format(**names)}\n" + ZONE)
    result = run_cli(["--config", str(path), "--check-config"])
    assert result.returncode == 1
    assert error.format(**names) in result.stderr, result.stderr


def test_check_config_shows_no_secret_and_warns_off_loopback(tmp_path: Path) -> None:
    cert, key = issue(trustme.CA(), tmp_path)
    path = tmp_path / "c.toml"
    path.write_text(f'[control]\nlisten = "0.0.0.0:8053"\nread_token = "{READ_TOKEN}"\n'
                    f'cert = "{cert}"\nkey = "{key}"\n' + ZONE)
    result = run_cli(["--config", str(path), "--check-config"])
    assert result.returncode == 0, result.stderr
    assert READ_TOKEN not in result.stdout and "PRIVATE KEY" not in result.stdout
    assert "not a loopback address" not in result.stderr
    path.write_text('[control]\nlisten = "0.0.0.0:8053"\n' + ZONE)
    result = run_cli(["--config", str(path), "--check-config"])
    assert "configuration warning: control.listen: 0.0.0.0:8053 is not a loopback address, " \
        "and the endpoint has neither TLS (cert and key) nor a read_token" in result.stderr


def test_a_start_off_loopback_without_tls_or_read_token_warns(tmp_path: Path) -> None:
    server = start(tmp_path, "", ["--control-listen", "0.0.0.0:0"])
    try:
        assert "--control-listen: 0.0.0.0:0 is not a loopback address" in server.output()
        port = endpoint(server)[1]
        server.control = f"http://127.0.0.1:{port}"  # tests reach loopback only
        assert ask(server, "/status", f"127.0.0.1:{port}") == 200  # the address it came in on
    finally:
        server.stop()

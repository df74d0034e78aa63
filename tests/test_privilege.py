"""Least privilege (issue #12): started as root with `--user`, no process keeps more than it needs.

The real supervisor is started as root on a loopback address and a port below 1024, so binding
needs CAP_NET_BIND_SERVICE; the key file is root's, mode 600, so reading it needs root or
CAP_DAC_READ_SEARCH. Then each process's credentials are read from /proc, and what the
responders' uid can do is tried by a forked helper that switches to that uid.
"""

from __future__ import annotations

import hmac
import json
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.flags
import dns.rdatatype
import pytest

from healthdns.supervisor.overrides import Override
from tests import harness
from tests.harness import Server
from tests.test_dnssec import generate

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"),
                                reason="needs root on Linux: it tests dropping root")

TEST_USER = "healthdns-test"
TSIG_SECRET = "cHJpdmlsZWdlLXRlc3QtdHNpZy1zZWNyZXQtMzI="
# healthdns.shared.privilege: CAP_DAC_READ_SEARCH, CAP_SETPCAP, CAP_NET_BIND_SERVICE
SUPERVISOR_CAPS = (1 << 2) | (1 << 8) | (1 << 10)
SUPERVISOR_EFFECTIVE = 1 << 10  # CAP_NET_BIND_SERVICE: the others are only handed on


def _test_user() -> tuple[int, int]:
    """A system user made for these tests (created if missing), else `nobody`."""
    if shutil.which("useradd"):
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", TEST_USER], capture_output=True, check=False)
    for name in (TEST_USER, "nobody"):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    pytest.skip("no unprivileged user to run as")


def _as_user(uid: int, gid: int, action: Callable[[], None]) -> int:
    """Run `action` in a forked child with `uid`'s credentials and no capability; its exit
    code: 0 if it returned, 13 on PermissionError."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([gid])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            action()
            code = 0
        except PermissionError:
            code = 13
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _interpreter(uid: int, gid: int, env: dict[str, str]) -> str:
    """An interpreter the test user can run with healthdns importable.

    The test venv's interpreter may live where that user cannot go (pyenv under /root): then
    the system's interpreter of the same minor version, with the venv's packages on its path.
    """
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        if not os.path.exists(candidate):
            continue

        def probe(python: str = candidate) -> None:
            done = subprocess.run([python, "-c", "import healthdns.supervisor.main"], env=env,
                                  cwd="/", capture_output=True, check=False)
            if done.returncode:
                raise PermissionError(done.stderr)

        if _as_user(uid, gid, probe) == 0:
            return candidate
    pytest.skip(f"no {minor} interpreter the test user can run healthdns with")


@pytest.fixture(scope="module")
def user() -> tuple[int, int]:
    return _test_user()


@pytest.fixture(scope="module")
def launcher(user: tuple[int, int]) -> Iterator[tuple[list[str], dict[str, str]]]:
    """The command that starts the supervisor, and its environment."""
    import site

    packages = next(p for p in site.getsitepackages() if p.endswith("site-packages"))
    shim = Path(tempfile.mkdtemp(prefix="healthdns-site-"))
    shim.chmod(0o755)
    # .pth files (the editable install's import hook) are read only in site directories.
    (shim / "sitecustomize.py").write_text(f"import site\nsite.addsitedir({packages!r})\n")
    env = {**os.environ, "PYTHONPATH": f"{shim}:{packages}"}
    python = _interpreter(*user, env)
    yield [python, "-m", "healthdns.supervisor.main"], env
    shutil.rmtree(shim)


def _free_low_endpoint() -> tuple[str, int]:
    """A random loopback address and a port below 1024: binding it needs the capability."""
    return (f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}",
            random.randint(600, 1000))


@pytest.fixture(scope="module")
def running(launcher: tuple[list[str], dict[str, str]], user: tuple[int, int],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    command, env = launcher
    tmp = tmp_path_factory.mktemp("privilege")
    key, _ = generate(tmp, "ECDSAP256SHA256", "csk")
    assert key.stat().st_uid == 0 and key.stat().st_mode & 0o077 == 0
    host, port = _free_low_endpoint()
    toml = f"""
        [server]
        listen = ["{host}:{port}"]
        responders = 2
        user = "{user[0]}"

        [[tsig]]
        name = "xfr"
        secret = "{TSIG_SECRET}"

        [transfer]
        listen = ["{host}:0"]
        secondaries = [{{ address = "127.0.0.1:9", key = "xfr" }}]
        allow = [{{ networks = ["127.0.0.0/8"], key = "xfr" }}]

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.dnssec]
        csk = "{key}"

        [zones.records.static]
        a = ["192.0.2.1"]
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "supervisor_command", lambda: command)
        for name, value in env.items():
            patch.setenv(name, value)
        server = Server([], tmp, toml).start()
    yield server, key
    assert server.stop() == 0


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(re.findall(r"^(\w+):[ \t]*(.*)$", text, re.MULTILINE))


def _pids(server: Server) -> dict[str, int]:
    """Role name -> pid of its latest process, from the supervisor's log."""
    return {name: int(pid) for name, pid in
            re.findall(r"(\w+) started \(pid (\d+)\)", server.output())}


def _assert_dropped(pid: int, uid: int, gid: int, bounding: bool = True) -> None:
    """No capability left, `no_new_privs`; `bounding`: the bounding set emptied too (only a
    process that held CAP_SETPCAP can)."""
    status = _status(pid)
    assert status["Uid"].split() == [str(uid)] * 4, status["Uid"]
    assert status["Gid"].split() == [str(gid)] * 4, status["Gid"]
    assert status["Groups"].split() in ([], [str(gid)])
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd")[:5 if bounding else 4]:
        assert int(status[capabilities], 16) == 0, f"{capabilities} {status[capabilities]}"
    assert status["NoNewPrivs"] == "1"


def test_children_run_as_the_user_with_no_capability(running: tuple[Server, Path],
                                                     user: tuple[int, int]) -> None:
    server, _ = running
    pids = _pids(server)
    assert set(pids) == {"prober", "signer", "transfer", "responder0", "responder1"}
    for pid in pids.values():
        _assert_dropped(pid, *user)


def test_supervisor_keeps_only_what_children_need(running: tuple[Server, Path],
                                                  user: tuple[int, int]) -> None:
    server, _ = running
    status = _status(server.pid)
    assert status["Uid"].split() == [str(user[0])] * 4
    assert int(status["CapEff"], 16) == SUPERVISOR_EFFECTIVE
    assert int(status["CapPrm"], 16) == SUPERVISOR_CAPS
    assert int(status["CapBnd"], 16) == SUPERVISOR_CAPS
    assert status["NoNewPrivs"] == "1"


def test_fork_server_holds_what_children_need_and_no_more(running: tuple[Server, Path],
                                                          user: tuple[int, int]) -> None:
    """The children are forked from it (shared/forkserver.py): it is handed the supervisor's
    capabilities (each child narrows them to its role's at once), nothing else."""
    server, _ = running
    found = re.search(r"fork server: pid (\d+)", server.output())
    assert found is not None
    status = _status(int(found.group(1)))
    assert status["Uid"].split() == [str(user[0])] * 4
    for capabilities in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[capabilities], 16) == SUPERVISOR_CAPS, capabilities
    assert status["NoNewPrivs"] == "1"


def test_a_reload_checks_the_root_only_key_again(running: tuple[Server, Path]) -> None:
    """The check runs in a process of its own (supervisor/validate.py), which must read the
    key as the signer does."""
    server, _ = running
    os.kill(server.pid, signal.SIGHUP)
    line = server.wait_for(r"reloaded: |reload failed", 10).group(0)
    assert line == "reloaded: ", server.output()


def test_answers_are_signed(running: tuple[Server, Path]) -> None:
    server, _ = running
    response = server.query("static.example.test", "A", want_dnssec=True)
    assert [rd.to_text() for rrset in response.answer if rrset.rdtype == dns.rdatatype.A
            for rd in rrset] == ["192.0.2.1"]
    assert any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in response.answer)
    assert response.flags & dns.flags.AA


def test_responders_uid_cannot_read_the_key(running: tuple[Server, Path]) -> None:
    server, key = running
    uid, gid = (int(_status(_pids(server)["responder0"])[f].split()[0]) for f in ("Uid", "Gid"))
    assert _as_user(uid, gid, lambda: open(key, "rb").close()) == 13
    assert _as_user(0, 0, lambda: open(key, "rb").close()) == 0  # the helper itself works


def test_the_service_uid_cannot_read_any_childs_memory(running: tuple[Server, Path]) -> None:
    """Each child holds what another must not read (keys, TSIG secrets, check headers, the
    cookie secret): a process of their uid (a compromised responder) cannot read their memory."""
    server, _ = running
    pids = _pids(server)
    uid, gid = (int(_status(pids["responder0"])[f].split()[0]) for f in ("Uid", "Gid"))
    for role, pid in pids.items():
        memory = f"/proc/{pid}/mem"
        assert _as_user(uid, gid, lambda m=memory: open(m, "rb").close()) == 13, role
    assert _as_user(0, 0, lambda: open(f"/proc/{pids['prober']}/mem", "rb").close()) == 0


@pytest.mark.parametrize("role", ["signer", "responder1"])
def test_respawned_child_loads_binds_and_drops(running: tuple[Server, Path],
                                               user: tuple[int, int], role: str) -> None:
    """A respawned signer must read the root-only key, a responder bind the low port."""
    server, _ = running
    old = _pids(server)[role]
    os.kill(old, signal.SIGKILL)
    new = int(server.wait_for(rf"{role} started \(pid (\d+)\)", 10).group(1))
    # A child drops only after it has loaded its keys or bound its sockets; one that cannot
    # exits first (and the supervisor logs why). It was started with its ambient capabilities.
    server.wait_until(lambda: int(_status(new)["CapPrm"], 16) == 0, 10, f"{role} dropping")
    _assert_dropped(new, *user)
    assert server.addresses("static.example.test") == {"192.0.2.1"}


def test_a_key_the_user_can_read_is_warned_about(launcher: tuple[list[str], dict[str, str]],
                                                 user: tuple[int, int], tmp_path: Path) -> None:
    command, env = launcher

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, "--config", str(tmp_path / "c.toml"), "--check-config"],
                              env=env, cwd="/", capture_output=True, text=True, timeout=20,
                              check=False)

    key, _ = generate(tmp_path, "ED25519", "csk")
    os.chown(key, *user)  # allowed (owned by the user healthdns runs as), but not private
    (tmp_path / "c.toml").write_text(f"""
[server]
user = "{user[0]}"
[[zones]]
origin = "example.test"
nameservers = ["ns1.example.net"]
dnssec = {{ algorithm = "ED25519", csk = "{key}" }}
""")
    done = check()
    assert done.returncode == 0, done.stderr
    assert f"configuration warning: zones[0].dnssec.csk: {key} can be read by " in done.stderr
    assert "so also by the responders; only the signer needs it: chown root and chmod 600" \
        in done.stderr
    os.chown(key, 0, 0)
    done = check()
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr


def test_switching_user_needs_root(launcher: tuple[list[str], dict[str, str]],
                                   user: tuple[int, int]) -> None:
    command, env = launcher

    def start() -> None:
        done = subprocess.run([*command, "--demo", "--user", "root", "--listen", "127.0.0.1:0"],
                              env=env, cwd="/", capture_output=True, text=True, timeout=20, check=False)
        if done.returncode != 1 or "server.user: cannot switch to 'root' (uid 0): " \
                "healthdns was started as uid" not in done.stderr:
            raise AssertionError(done.stderr)

    assert _as_user(*user, start) == 0


@pytest.fixture(scope="module")
def capable_python(launcher: tuple[list[str], dict[str, str]], user: tuple[int, int]
                   ) -> Iterator[str]:
    """A copy of the interpreter with the file capability the container image gives it."""
    if shutil.which("setcap") is None or shutil.which("setpriv") is None:
        pytest.skip("needs setcap and setpriv")
    command = launcher[0]
    where = Path(tempfile.mkdtemp(prefix="healthdns-python-"))
    where.chmod(0o755)
    python = where / Path(command[0]).name
    shutil.copy(os.path.realpath(command[0]), python)
    done = subprocess.run(["setcap", "cap_net_bind_service=+ep", str(python)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        shutil.rmtree(where)
        pytest.skip(f"setcap on {python}: {done.stderr.strip()}")
    yield str(python)
    shutil.rmtree(where)


def test_started_unprivileged_with_file_capabilities(
        launcher: tuple[list[str], dict[str, str]], capable_python: str,
        user: tuple[int, int]) -> None:
    """The container image's way: no root at all, port 53 through the interpreter's file
    capability, which every child gets at exec and drops once bound."""
    command, env = launcher
    uid, gid = user
    tmp = Path(tempfile.mkdtemp(prefix="healthdns-unprivileged-"))  # pytest's is root's only
    tmp.chmod(0o755)
    host, port = _free_low_endpoint()
    toml = f"""
        [server]
        listen = ["{host}:{port}"]
        responders = 1

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.records.static]
        a = ["192.0.2.1"]
    """
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "supervisor_command",
                      lambda: [*as_user, capable_python, *command[1:]])
        for name, value in env.items():
            patch.setenv(name, value)
        server = Server([], tmp, toml).start()
    try:
        assert _status(server.pid)["Uid"].split() == [str(uid)] * 4
        pids = _pids(server)
        for pid in pids.values():
            _assert_dropped(pid, uid, gid, bounding=False)
        assert server.addresses("static.example.test") == {"192.0.2.1"}
        os.kill(pids["responder0"], signal.SIGKILL)  # a respawned one binds the port again
        new = int(server.wait_for(r"responder0 started \(pid (\d+)\)", 10).group(1))
        server.wait_until(lambda: int(_status(new)["CapPrm"], 16) == 0, 10, "the new bind")
        _assert_dropped(new, uid, gid, bounding=False)
        assert server.addresses("static.example.test") == {"192.0.2.1"}
    finally:
        assert server.stop() == 0
        shutil.rmtree(tmp)


# --- the state file, which the service uid may write -------------------------------------------


@pytest.fixture
def state_dir(user: tuple[int, int]) -> Iterator[Path]:
    """A folder the service user owns, as /var/lib/healthdns is (pytest's is root's only)."""
    where = Path(tempfile.mkdtemp(prefix="healthdns-state-"))
    where.chmod(0o755)
    os.chown(where, *user)
    yield where
    shutil.rmtree(where)


def _state_server(launcher: tuple[list[str], dict[str, str]], user: tuple[int, int],
                  where: Path, state_file: Path) -> Server:
    command, env = launcher
    toml = f"""
        [server]
        listen = ["127.0.0.1:0"]
        responders = 1
        user = "{user[0]}"

        [control]
        token = "{"t" * 20}"
        state_file = "{state_file}"

        [[zones]]
        origin = "example.test"
        nameservers = ["ns1.example.net"]

        [zones.records.www]
        pool = {{ addresses = ["127.0.0.1", "127.0.0.2"], check = {{ port = 9, interval = 60 }} }}
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(harness, "supervisor_command", lambda: command)
        for name, value in env.items():
            patch.setenv(name, value)
        return Server([], where, toml).start()


def _overrides(server: Server) -> list[str]:
    with urllib.request.urlopen(server.control + "/status", timeout=5) as answer:
        return [o["reason"] for o in json.load(answer)["overrides"]]


def test_state_planted_by_the_service_uid_is_not_believed(
        launcher: tuple[list[str], dict[str, str]], user: tuple[int, int],
        state_dir: Path) -> None:
    """A compromised responder or prober (the service uid, no capability) writes the state
    file and gets the supervisor restarted: a drain that never expires, a serial 2^31 ahead."""
    path = state_dir / "state.json"
    first = _state_server(launcher, user, state_dir, path)
    assert first.stop() == 0
    key = Path(f"{path}.key")
    assert key.stat().st_uid == 0 and key.stat().st_mode & 0o777 == 0o600
    assert _as_user(*user, lambda: open(key, "rb").close()) == 13  # the key is root's alone
    ahead = (int(time.time()) + 2**31 - 1) % 2**32
    planted = {"overrides": [{"address": "127.0.0.1", "action": "drain", "reason": "planted"}],
               "health": None, "serials": {"example.test": ahead}}
    sealed = {"state": planted, "hmac": hmac.new(b"guess", json.dumps(planted).encode(),
                                                 "sha256").hexdigest()}
    for content in (planted, sealed):
        def plant(text: str = json.dumps(content)) -> None:
            path.unlink()  # the folder is the user's: it may replace the file
            path.write_text(text)
            path.chmod(0o600)

        assert _as_user(*user, plant) == 0
        server = _state_server(launcher, user, state_dir, path)
        try:
            assert "starting cold: no override, health or serial is taken from it" \
                in server.output()
            assert _overrides(server) == []
            serial = server.query("example.test", "SOA").answer[0][0].serial
            assert abs(serial - time.time()) < 600
        finally:
            assert server.stop() == 0


@pytest.mark.parametrize("linked", [True, False])
def test_a_root_only_state_file_is_not_read_through_a_capability(
        launcher: tuple[list[str], dict[str, str]], user: tuple[int, int], state_dir: Path,
        tmp_path: Path, linked: bool) -> None:
    """The state file names a file only root may read (a link to it, or root's own file): the
    supervisor reads it with the user's rights, so it starts cold and says why."""
    from tests.test_state_file import write_sealed

    path = state_dir / "state.json"
    secret = tmp_path / "root-only.json" if linked else path
    # Sealed with the key the supervisor will use: believed, if it could be read at all.
    write_sealed(secret, overrides=[Override(address="127.0.0.2", action="drain",
                                             reason="read through a capability")])
    if linked:
        Path(f"{secret}.key").rename(f"{path}.key")
        path.symlink_to(secret)
    assert secret.stat().st_uid == 0 and secret.stat().st_mode & 0o777 == 0o600
    server = _state_server(launcher, user, state_dir, path)
    try:
        assert f"WARNING {path}: cannot read: Permission denied; starting cold" \
            in server.output(), server.output()
        assert _overrides(server) == []
        assert int(_status(server.pid)["CapEff"], 16) == SUPERVISOR_EFFECTIVE
    finally:
        assert server.stop() == 0


# --- Python where the user cannot read it ----------------------------------------------------


@pytest.fixture
def private_install(launcher: tuple[list[str], dict[str, str]]
                    ) -> Iterator[tuple[list[str], dict[str, str], Path]]:
    """The launcher, with healthdns's dependencies only in a folder of root's with mode 700:
    a virtualenv in a private home."""
    import site

    command, env = launcher
    private = Path(tempfile.mkdtemp(prefix="healthdns-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    packages = next(p for p in site.getsitepackages() if p.endswith("site-packages"))
    (private / "site-packages").symlink_to(packages)
    shim = Path(tempfile.mkdtemp(prefix="healthdns-site-"))
    shim.chmod(0o755)
    (shim / "sitecustomize.py").write_text(
        f"import site\nsite.addsitedir({str(private / 'site-packages')!r})\n")
    yield command, {**env, "PYTHONPATH": str(shim)}, private
    shutil.rmtree(shim)
    shutil.rmtree(private)


def _unreadable_config(tmp_path: Path, user: tuple[int, int]) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f"""
[server]
listen = ["127.0.0.1:0"]
user = "{user[0]}"
[control]
listen = ""
[[zones]]
origin = "example.test"
nameservers = ["ns1.example.net"]
[zones.records.www]
a = ["192.0.2.1"]
""")
    return path


@pytest.mark.parametrize("check", [True, False])
def test_python_the_user_cannot_read_is_refused_at_once(
        private_install: tuple[list[str], dict[str, str], Path], user: tuple[int, int],
        tmp_path: Path, check: bool) -> None:
    """Every process imports as the user: children that cannot crash-looped until the crash
    budget ran out (43 s). `--check-config` says so, and the start stops, in one line."""
    command, env, private = private_install
    flags = ["--check-config"] if check else []
    began = time.monotonic()
    done = subprocess.run([*command, "--config", str(_unreadable_config(tmp_path, user)),
                           *flags], env=env, cwd="/", capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert time.monotonic() - began < 15  # no crash loop first
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    name = pwd.getpwuid(user[0]).pw_name
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(
        f"healthdns-supervisor: configuration error: server.user: {name} (uid {user[0]}) "
        f"cannot read {private} (mode 700, owner uid 0), on the way to the package "), errors
    assert errors[0].endswith(f"install Python and healthdns where {name} can read them (a "
                              "virtualenv under /opt made with a Python outside any private "
                              "home), or start healthdns as that user")

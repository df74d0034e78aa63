"""Packaging: the Dockerfile, docker-compose.yml and the Kubernetes manifests agree with the
code and with each other, and the manifests validate against Kubernetes' own schema (offline:
kubernetes-validate ships the schemas).

No container engine runs here: the Dockerfile's steps are checked piecewise (what it copies
exists, the configuration it checks at build time is valid, its health check command works).
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import need_tool
from harness import run_cli

ROOT = Path(__file__).parent.parent
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def render(folder: Path = K8S) -> list[dict[str, Any]]:
    """What `kubectl apply -k folder` applies: the kustomization's resources, its generated
    ConfigMap and image names in place (kustomize, built into kubectl)."""
    done = subprocess.run([need_tool("kubectl"), "kustomize", str(folder)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return list(yaml.safe_load_all(done.stdout))


def manifests(folder: Path = K8S) -> dict[str, dict[str, Any]]:
    """kind -> the one resource of that kind that deploy/k8s applies."""
    found: dict[str, dict[str, Any]] = {}
    for doc in render(folder):
        assert doc["kind"] not in found, f"two {doc['kind']}s"
        found[doc["kind"]] = doc
    return found


def check_config(text: str, tmp_path: Path) -> dict[str, Any]:
    """`--check-config` on `text`: it must pass; returns the normalised configuration."""
    path = tmp_path / "healthdns.toml"
    path.write_text(text)
    done = run_cli(["--check-config", "--config", str(path)])
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


# --- Kubernetes -------------------------------------------------------------------------------


def test_manifests_validate_against_the_kubernetes_schema() -> None:
    for doc in render():
        # strict: a misspelt field (readOnlyRootFileSystem) is an error, not ignored
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_manifests_fit_together(tmp_path: Path) -> None:
    m = manifests()
    assert set(m) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    deployment, service, pdb = m["Deployment"], m["Service"], m["PodDisruptionBudget"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"],
                     pdb["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # The configuration in the ConfigMap is valid, and the container serves on its port.
    mount = next(v for v in container["volumeMounts"] if v["name"] == "config")
    assert next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"] \
        == m["ConfigMap"]["metadata"]["name"]
    assert f"{mount['mountPath']}/healthdns.toml" in container["args"]
    assert m["ConfigMap"]["data"]["healthdns.toml"] == (K8S / "healthdns.toml").read_text()
    config = check_config(m["ConfigMap"]["data"]["healthdns.toml"], tmp_path)
    ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert {(p["port"], p["protocol"]): ports[p["targetPort"]] for p in service["spec"]["ports"]} \
        == {(53, "UDP"): (config["server"]["port"], "UDP"),
            (53, "TCP"): (config["server"]["port"], "TCP")}
    # Non-root with a read-only root file system and no capability.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["capabilities"].get("add", []) == file_capabilities()
    assert config["server"]["port"] >= 1024  # bindable without a capability
    # Readiness on /readyz, liveness on /healthz.
    assert probe_url(container["readinessProbe"]["exec"]["command"]).endswith("/readyz")
    assert probe_url(container["livenessProbe"]["exec"]["command"]).endswith("/healthz")
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_a_configuration_edit_rolls_the_pods(tmp_path: Path) -> None:
    """The ConfigMap's name carries a hash of its content and the pod template names it: an
    edited healthdns.toml is a new pod template, which the Deployment rolls out (a ConfigMap
    edited in place would reach running pods' files, and healthdns reads them only at a
    reload)."""
    before = manifests()
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    toml = copy / "healthdns.toml"
    toml.write_text(toml.read_text().replace("ttl = 30", "ttl = 60"))
    after = manifests(copy)

    def volume(m: dict[str, dict[str, Any]]) -> str:
        pod = m["Deployment"]["spec"]["template"]["spec"]
        name: str = next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"]
        assert name == m["ConfigMap"]["metadata"]["name"]
        return name

    assert volume(before) != volume(after)
    assert volume(before).startswith("healthdns-") and volume(after).startswith("healthdns-")
    assert before["Deployment"]["spec"]["template"] != after["Deployment"]["spec"]["template"]
    assert before["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_image_the_pods_run_is_the_one_the_docs_build_and_push() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert image["newTag"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "version"]
    reference = f"{image['newName']}:{image['newTag']}"
    (container,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == reference
    section = (ROOT / "docs" / "operations.md").read_text().split("\n## Kubernetes\n")[1]
    section = section.split("\n## ")[0]
    commands = [shlex.split(line) for line in re.findall(r"^(?:docker|kubectl) .*$", section,
                                                         re.MULTILINE)]
    assert ["docker", "build", "-t", reference, "."] in commands
    assert ["docker", "push", reference] in commands
    assert ["kubectl", "apply", "-k", "deploy/k8s/"] in commands


# --- the probe command (Dockerfile HEALTHCHECK, Kubernetes probes) ------------------------------


def probe_url(command: list[str]) -> str:
    assert command[:2] == ["python", "-c"]
    found = re.search(r"'(http://127\.0\.0\.1:8053/\w+)'", command[2])
    assert found, command
    return found.group(1)


def healthcheck_command() -> list[str]:
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])$", DOCKERFILE, re.MULTILINE | re.DOTALL)
    assert found, "the Dockerfile has no HEALTHCHECK CMD [...]"
    command: list[str] = yaml.safe_load(found.group(1))  # a JSON array is YAML too
    return command


class _Status(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_probe(command: list[str], port: int) -> int:
    """Run a probe command against `port` instead of 8053 (a test may not take fixed ports)."""
    code = command[2].replace("127.0.0.1:8053", f"127.0.0.1:{port}")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20,
                          check=False).returncode


def probe_commands() -> list[list[str]]:
    container = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return [healthcheck_command(), container["readinessProbe"]["exec"]["command"],
            container["livenessProbe"]["exec"]["command"]]


@pytest.mark.parametrize("which", ["HEALTHCHECK", "readinessProbe", "livenessProbe"])
def test_probe_command_passes_only_on_2xx(which: str,
                                          endpoint: http.server.HTTPServer) -> None:
    command = probe_commands()[["HEALTHCHECK", "readinessProbe", "livenessProbe"].index(which)]
    port = endpoint.server_address[1]
    assert isinstance(port, int)
    _Status.status = 200
    assert run_probe(command, port) == 0
    _Status.status = 503
    assert run_probe(command, port) != 0
    endpoint.shutdown()
    endpoint.server_close()  # nothing listens: refused
    assert run_probe(command, port) != 0


# --- Dockerfile -------------------------------------------------------------------------------


def dockerfile_uid() -> int:
    found = re.search(r"^USER (\d+)$", DOCKERFILE, re.MULTILINE)
    assert found, "USER must be a numeric uid (Kubernetes' runAsNonRoot checks it)"
    return int(found.group(1))


def file_capabilities() -> list[str]:
    """The capabilities the image's interpreter carries as file capabilities: a container
    that drops ALL must add them back, or the kernel refuses to exec the interpreter."""
    return [c.upper().removeprefix("CAP_")
            for c in re.findall(r"setcap (cap_\w+)=", DOCKERFILE)]


def test_dockerfile_pins_one_base_for_both_stages() -> None:
    found = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    # Fully qualified (no registry search order decides), an exact release, and its digest.
    assert found and re.fullmatch(r"docker\.io/library/python:3\.11\.\d+-slim-bookworm"
                                  r"@sha256:[0-9a-f]{64}", found.group(1)), found
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE) == ["${PYTHON_IMAGE}"] * 2
    assert f"--uid {dockerfile_uid()}" in DOCKERFILE  # the user USER names exists


def test_dockerfile_steps_piecewise(tmp_path: Path) -> None:
    """What a build would do, step by step, without an engine: COPY sources exist and are not
    ignored, and the RUN --check-config step passes on the image's default configuration."""
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, re.MULTILINE):
        *sources, _ = shlex.split(line)
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") not in ignored, source
    check_config((ROOT / "docker" / "healthdns.toml").read_text(), tmp_path)
    assert '"healthdns-supervisor"]' in DOCKERFILE  # the ENTRYPOINT is the installed script
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "healthdns-supervisor" in scripts


# --- docker-compose.yml -----------------------------------------------------------------------


def test_compose_example_fits_its_configuration(tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    dns = services["healthdns"]
    if "ALL" in dns.get("cap_drop", []):
        assert dns.get("cap_add", []) == file_capabilities()
    source, target, mode = dns["volumes"][0].split(":")
    assert mode == "ro" and target in dns["command"]
    config = check_config((ROOT / source).read_text(), tmp_path)
    subnet = ipaddress.ip_network(compose["networks"]["demo"]["ipam"]["config"][0]["subnet"])
    backends = {name: s for name, s in services.items() if name != "healthdns"}
    addresses = {s["networks"]["demo"]["ipv4_address"] for s in backends.values()}
    assert all(ipaddress.ip_address(a) in subnet for a in addresses)
    (pool,) = [r["pool"] for z in config["zones"] for r in z["records"].values()
               if r.get("pool")]
    assert {a for g in pool["groups"] for a in g["addresses"]} == addresses
    check = pool["groups"][0]["check"]
    assert all(shlex.join(s["command"]).endswith(f"http.server {check['port']}")
               for s in backends.values())
    for spec in dns["ports"]:
        assert spec.rsplit(":", 1)[1] in (f"{config['server']['port']}/udp",
                                          f"{config['server']['port']}/tcp")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert base and all(s["image"] == base.group(1) for s in backends.values())

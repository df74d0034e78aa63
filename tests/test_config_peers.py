"""[peers] and prober.source: each bad input and the message it gets; what a good one
normalises to; and that the secrets never reach a person or another role."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trustme

from healthdns.shared import config
from healthdns.shared.errors import ConfigError
from healthdns.supervisor import views
from tests.test_config import BASE, with_

SECRET = base64.b64encode(b"s" * 32).decode()


def peers(**fields: Any) -> dict[str, Any]:
    one = {"name": "a", "listen": "127.0.0.1:8053", "plain_http": True,
           "peers": [{"name": "b", "url": "http://127.0.0.2:8053", "secret": SECRET},
                     {"name": "c", "url": "http://127.0.0.3:8053", "secret": SECRET}]}
    return with_("peers", {k: v for k, v in {**one, **fields}.items() if v is not None})


def peer(**fields: Any) -> dict[str, Any]:
    one = {"name": "b", "url": "http://127.0.0.2:8053", "secret": SECRET, **fields}
    return peers(peers=[{k: v for k, v in one.items() if v is not None}])


CASES = [
    (with_("peers", {"listen": "127.0.0.1:8053"}), "peers.name: peers are configured but"),
    (peers(name="a b"), "peers.name: 'a b' is not a name"),
    (peers(listen=None), "peers.listen: an address to receive"),
    (peers(listen="127.0.0.1"), "peers.listen: '127.0.0.1' needs a port"),
    (peers(peers=[]), "peers.peers: at least one peer is needed"),
    (peer(name="a"), "peers.peers[0].name: 'a' is already peers.name"),
    (peer(url="https://127.0.0.2:8053"), "peers.peers[0].url: 'https://127.0.0.2:8053' is not http://"),
    (peer(url="http://127.0.0.2"), "peers.peers[0].url: 'http://127.0.0.2' needs a port"),
    (peer(url="http://192.0.2.1:8053"), "peers.peers[0].url: 192.0.2.1 is not a loopback"),
    (peers(plain_http=False, peers=[{"name": "b", "url": "http://192.0.2.1:8053",
                                     "secret": SECRET}]),
     "peers.peers[0].url: 'http://192.0.2.1:8053' is not https://HOST:PORT (plain http only"),
    (peer(secret=None), "peers.peers[0].secret: a peer needs a secret"),
    (peer(secret="not base64!"), "peers.peers[0].secret: is not base64"),
    (peer(secret=base64.b64encode(b"short").decode()),
     "peers.peers[0].secret: 5 bytes is too short: 16 at least"),
    (peer(secret_file="/nonexistent/secret"), "peers.peers[0].secret: give the secret or a"),
    (peers(quorum="most"), "peers.quorum: 'most' is neither \"majority\", a count"),
    (peers(quorum=4), "peers.quorum: 4 is not between 1 and 3 vantages"),
    (peers(quorum=0.0), "peers.quorum: 0 is not a fraction above 0, at most 1"),
    (peers(quorum=1.5), "peers.quorum: 1.5 is not a fraction above 0, at most 1"),
    (peers(quorum=True), "peers.quorum: true must be"),
    (peers(quorum=3, min_vantages=2), "peers.min_vantages: 2 is below the quorum of 3"),
    (peers(min_vantages=4), "peers.min_vantages: 4 is not between 0 and 3"),
    (peers(cut_off="drop"), "peers.cut_off: "),
    (peers(interval=0), "peers.interval: 0 is not between 0.05 and 60 seconds"),
    (peers(stale_after=1.0), "peers.stale_after: 1 is not between 2 and 3600 seconds"),
    (peers(rise=0), "peers.rise: 0 is not between 1 and 100 evaluations"),
    (peers(fall=101), "peers.fall: 101 is not between 1 and 100 evaluations"),
    (peers(hold_down=-1.0), "peers.hold_down: -1 is not between 0 and 86400 seconds"),
    ({**peers(probe_only=True), "server": {"listen": ["127.0.0.1:5300"]}},
     "peers.probe_only: server.listen is set too: a probe-only"),
    ({**peers(probe_only=True), "server": {"port": 53053},
      "transfer": {"listen": ["127.0.0.1:5300"]}},
     "peers.probe_only: [transfer] is set too: a probe-only instance serves no zone"),
    ({**BASE, "server": {}, "peers": {"probe_only": True}},
     "peers.name: peers are configured but this instance has no name"),
    (peers(plain_http=False, peers=[{"name": "b", "url": "https://192.0.2.1:8053",
                                     "secret": SECRET}]),
     "peers.cert_file: is needed: peers send their reports over HTTPS"),
    (peers(cert_file="x.pem"), "peers.cert_file: is for HTTPS, and peers.plain_http is set"),
    (peers(endpoint=["127.0.0.1", 1]), "peers.endpoint: unknown key"),
    (with_("zones/0/records/www/pool/check/vantages", ["a"]),
     "zones[0].records.www.pool.check.vantages: needs [peers]: it names the instances"),
    (with_("zones/0/records/www/pool/check/vantages", ["a", "d"], peers()),
     "zones[0].records.www.pool.check.vantages: 'd' is neither peers.name nor a peer's name"),
    (with_("zones/0/records/www/pool/check/vantages", ["b", "b"], peers()),
     "zones[0].records.www.pool.check.vantages: names an instance twice"),
    (with_("zones/0/records/api", {"pool": {"addresses": ["192.0.2.1"], "check": {
        "port": 80, "vantages": ["b"]}}}, peers()),
     "zones[0].records.api.pool.check.vantages: tcp 192.0.2.1 80 5/2/2/2 is also checked with"),
    (peers(placed={"t": ["a"]}), "peers.placed: unknown key"),
    (with_("prober", {"vantage": "a"}), "prober.vantage: unknown key"),
    (with_("prober", {"source": ["192.0.2.77"]}), "prober.source[0]: 192.0.2.77 is not an address"),
    (with_("prober", {"source": ["127.0.0.1", "127.0.0.2"]}),
     "prober.source[1]: 127.0.0.2: a source of this family is already given (127.0.0.1)"),
    (with_("prober", {"source": ["here"]}), "prober.source[0]: 'here' is not an IPv4 or IPv6"),
]


@pytest.mark.parametrize("document,message", CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_peers_errors_name_field_and_value(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.from_mapping(document)
    assert str(raised.value).startswith(message), str(raised.value)


def test_a_good_section_is_normalised() -> None:
    cfg = config.from_mapping(peers(listen="127.0.0.1:8053", quorum=0.5,
                                    prober=None)).peers
    assert cfg.enabled() and cfg.endpoint == ("127.0.0.1", 8053)
    assert cfg.min_vantages == 2  # a majority of the three vantages
    assert cfg.stale_seconds() == 3.0
    assert [p.url for p in cfg.peers] == ["http://127.0.0.2:8053", "http://127.0.0.3:8053"]
    assert config.from_mapping(peers(quorum=3)).peers.min_vantages == 3
    assert not config.from_mapping(BASE).peers.enabled()


def test_a_probe_only_instance_runs_no_responders() -> None:
    cfg = config.from_mapping({**peers(probe_only=True), "server": {}})
    assert cfg.peers.probe_only and cfg.server.responders == 0
    assert cfg.server.endpoints() == []
    assert config.from_mapping(peers()).server.responders >= 1


def test_a_check_with_vantages_is_placed_and_the_prober_knows_its_name() -> None:
    cfg = config.from_mapping(with_("zones/0/records/www/pool/check/vantages", ["a", "c"],
                                    peers()))
    assert cfg.peers.placed == {"tcp 192.0.2.1 80 5/2/2/2": ("a", "c")}
    assert cfg.prober.vantage == "a"
    plain = config.from_mapping(peers())
    assert plain.peers.placed == {} and plain.checks().keys() == cfg.checks().keys()


def test_https_reads_the_certificate_key_and_secret_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "chain.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "secret").write_text(SECRET + "\n")
    document = peers(plain_http=None, cert_file=str(tmp_path / "chain.pem"),
                     key_file=str(tmp_path / "key.pem"), ca_file=str(tmp_path / "ca.pem"),
                     peers=[{"name": "b", "url": "https://192.0.2.2:8053",
                             "secret_file": str(tmp_path / "secret")}])
    cfg = config.from_mapping(document)
    assert "BEGIN CERTIFICATE" in cfg.peers.ca_pem and cfg.peers.key_pem
    assert cfg.peers.peers[0].secret == SECRET
    shown = msgspec.json.encode(config.redacted(cfg)).decode()
    assert SECRET not in shown and cfg.peers.key_pem not in shown
    # Only the peers process is sent the secrets.
    split = views.split(cfg, b"k" * 32)
    for role in ("responder", "prober", "signer", "transfer"):
        assert SECRET.encode() not in split.for_role(role), role
    assert config.decode(split.peers).peers.peers[0].secret == SECRET


def test_check_config_shows_the_section_without_its_secrets_or_pem_text(tmp_path: Path) -> None:
    from healthdns.supervisor import shown

    text = shown.text(config.from_mapping(peers()))
    section = json.loads(text)["peers"]
    assert section["name"] == "a" and SECRET not in text
    assert {p["secret"] for p in section["peers"]} == {"<redacted>"}
    assert not {"endpoint", "cert_pem", "key_pem", "ca_pem"} & set(section)
    assert '"peers"' not in shown.text(config.from_mapping(BASE))

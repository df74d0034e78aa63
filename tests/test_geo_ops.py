"""What an operator sees of routing by location: `healthdns-ctl explain --client` (and
`GET /explain?client=`), `/status`, the status page's data and the metrics, against a real
supervisor and the answers `dig +subnet` gets on the wire.

Three sites: fra (two backends), iad and sin (one each), every backend a loopback listener; a
map with a generated database (192.0.2.0/24 in Germany, 198.51.100.0/24 in the US,
203.0.113.0/24 in Singapore with coordinates), rules by continent, nearest first for Asia, and
an explicit network of loopback sources (clients without ECS).
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_ctl
from conftest import need_tool
from harness import Backend, Server, config_toml, has_ipv6
from test_control import TOKEN, call, get, metrics, total
from test_geomap import geodata

from healthdns.shared import messages
from healthdns.supervisor.counters import Counters

INTERVAL = 0.2
FRA, IAD, SIN = ("127.0.0.11", "127.0.0.12"), ("127.0.0.21",), ("127.0.0.31",)
OFFICE = "127.0.0.64/26"  # sources without ECS that the map sends to sin, then iad
EU, NA, ASIA, NOWHERE = "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "100.64.0.0/24"
SITES = {"fra": {"latitude": 50.11, "longitude": 8.68},
         "iad": {"latitude": 38.95, "longitude": -77.45},
         "sin": {"latitude": 1.35, "longitude": 103.99}}


def database(path: Path) -> Path:
    return geodata.write_mmdb(path, [
        ("192.0.2.0/24", geodata.record("EU", "DE", ["HE"], "Frankfurt am Main", 3320, 50.1,
                                        8.7)),
        ("198.51.100.0/24", geodata.record("NA", "US", ["VA"], "Ashburn", 64500, 39.0, -77.5)),
        ("203.0.113.0/24", geodata.record("AS", "SG", latitude=1.3, longitude=103.8)),
        ("2001:db8::/32", geodata.record("EU", "FR", ["IDF"], "Paris", 0, 48.9, 2.3))])


def geo_config(port: int, db: Path, check_interval: float = 0.0) -> str:
    check = {"port": port, "interval": INTERVAL, "timeout": 0.1, "rise": 1, "fall": 1}
    pool = {"map": "world", "check": check,
            "sites": {"fra": {"addresses": list(FRA)}, "iad": {"addresses": list(IAD)},
                      "sin": {"addresses": list(SIN)}}}
    world = {"database": str(db), "default": ["fra", "iad"], "check_interval": check_interval,
             "rules": [{"continent": "EU", "sites": ["fra", "iad", "sin"]},
                       {"continent": "NA", "sites": ["iad", "fra", "sin"]},
                       {"continent": "AS", "auto": True}],
             "networks": [{"cidrs": [OFFICE], "sites": ["sin", "iad"]}]}
    # With IPv6: a name whose only IPv6 address is iad's (fra and sin have none).
    dual = {**pool, "sites": {"fra": {"addresses": [FRA[0]]},
                              "iad": {"addresses": [IAD[0], "::1"]}}}
    records = {"www": {"ttl": 5, "pool": pool}, "static": {"a": ["192.0.2.1"]}} | (
        {"dual": {"ttl": 5, "pool": dual}} if has_ipv6() else {})
    return config_toml(records, sites=SITES, maps={"world": world}, control={"token": TOKEN})


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, Backend]]:
    first = Backend(FRA[0])
    made = {FRA[0]: first}
    for host in (*FRA[1:], *IAD, *SIN, *(("::1",) if has_ipv6() else ())):
        made[host] = Backend(host, first.port)
    for backend in made.values():
        backend.up()
    yield made
    for backend in made.values():
        backend.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           backends: dict[str, Backend]) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("geo-ops")
    port = backends[FRA[0]].port
    srv = Server([], tmp, geo_config(port, database(tmp / "geo.mmdb"))).start()
    srv.wait_until(lambda: all_up(srv), 20, "every site up")
    yield srv
    srv.stop()


def all_up(server: Server) -> bool:
    return dig(server, EU)[0] == set(FRA)


def put(backend: Backend, up: bool) -> None:
    """A backend up or down, whatever it was."""
    if up != backend.listening:
        (backend.up if up else backend.down)()


def set_fra(backends: dict[str, Backend], up: bool) -> None:
    for host in FRA:
        put(backends[host], up)


# --- the wire ---------------------------------------------------------------------------


def dig(server: Server, subnet: str | None = None, source: str | None = None,
        rdtype: str = "A", name: str = "www.example.test") -> tuple[set[str], int | None]:
    """The addresses `dig` gets, and the ECS scope of the answer (None: no ECS option)."""
    args = [need_tool("dig"), "@" + server.host, "-p", str(server.port), name, rdtype,
            "+tries=3", "+time=2"]
    args += [f"+subnet={subnet}"] if subnet else []
    args += ["-b", source] if source else []
    out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=True).stdout
    found = re.search(r"CLIENT-SUBNET: \S+/(\d+)/(\d+)", out)
    answers = {line.split()[-1] for line in out.splitlines()
               if line and not line.startswith(";") and f"\tIN\t{rdtype}\t" in line.replace(
                   " ", "\t")}
    return answers, int(found.group(2)) if found else None


def explained(server: Server, client: str | None, rdtype: str = "A",
              name: str = "www.example.test") -> dict[str, Any]:
    query = {"name": name, "type": rdtype} | ({"client": client} if client else {})
    deadline = time.monotonic() + 30
    while True:  # the first ask may find the map still compiling for explain
        code, text = get(server, "/explain?" + urllib.parse.urlencode(query))
        assert code == 200, text
        doc: dict[str, Any] = json.loads(text)
        answer: dict[str, Any] = doc["answers"][0]
        if "ask again" not in answer["why"] or time.monotonic() > deadline:
            return answer


def ctl(server: Server, *args: str) -> str:
    result = test_ctl.ctl(server, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


# --- explain ------------------------------------------------------------------------------


@pytest.mark.parametrize(("client", "entry", "order", "site", "location"), [
    (EU, "maps.world.rules[0]", ["fra", "iad", "sin"], "fra",
     {"continent": "EU", "country": "DE", "subdivisions": ["HE"], "city": "Frankfurt am Main",
      "asn": 3320}),
    (NA, "maps.world.rules[1]", ["iad", "fra", "sin"], "iad",
     {"continent": "NA", "country": "US", "subdivisions": ["VA"], "city": "Ashburn",
      "asn": 64500}),
    (ASIA, "maps.world.rules[2]", ["sin", "fra", "iad"], "sin",
     {"continent": "AS", "country": "SG", "subdivisions": [], "city": None, "asn": None}),
    (NOWHERE, "maps.world.default", ["fra", "iad"], "fra", None),
])
def test_explain_places_each_client_as_the_wire_answers_it(
        server: Server, client: str, entry: str, order: list[str], site: str,
        location: dict[str, Any] | None) -> None:
    answer = explained(server, client)
    geo = answer["geo"]
    assert (geo["entry"], geo["order"], geo["site"], geo["skipped"]) == (entry, order, site, [])
    if location is None:
        assert geo["location"] is None and geo["network"] is None
    else:
        assert {k: geo["location"][k] for k in location} == location
        assert geo["network"] == client
    addresses, scope = dig(server, client)
    assert set(answer["records"]) == addresses == set({"fra": FRA, "iad": IAD, "sin": SIN}[site])
    assert answer["scope"] == scope is not None


def test_a_source_address_without_ecs_is_placed_by_the_explicit_network(server: Server) -> None:
    answer = explained(server, "127.0.0.70")
    geo = answer["geo"]
    assert geo["entry"] == "maps.world.networks[0].cidrs[0]"
    assert geo["entry_why"] == f"the explicit network {OFFICE}: it wins over the database"
    assert (geo["site"], geo["ecs"], answer["scope"]) == ("sin", False, None)
    assert dig(server, source="127.0.0.70") == (set(SIN), None)
    assert dig(server, source="127.0.0.1") == (set(FRA), None)  # the default order


def test_a_site_down_is_skipped_and_said_so(server: Server, backends: dict[str, Backend]
                                           ) -> None:
    set_fra(backends, False)
    try:
        server.wait_until(lambda: dig(server, EU)[0] == set(IAD), 20, "EU clients to iad")
        answer = explained(server, EU)
        geo = answer["geo"]
        assert geo["site"] == "iad"
        assert [s["site"] for s in geo["skipped"]] == ["fra"]
        assert "0 of 2" in geo["skipped"][0]["why"]
        assert {s["site"]: (s["up"], s["total"], s["qualifies"]) for s in geo["sites"]} == {
            "fra": (0, 2, False), "iad": (1, 1, True), "sin": (1, 1, True)}
        text = ctl(server, "explain", "www.example.test", "A", "--client", EU)
        assert "skipped fra: " in text and "site order fra, iad, sin: maps.world.rules[0]" in text
        assert "in the database's 192.0.2.0/24: EU, DE, HE, Frankfurt am Main, AS3320" in text
        assert f"ECS scope /{answer['scope']}: every client in" in text
        summary = ctl(server, "status")
        assert "site fra of www.example.test A: 0 of 2 up, does not qualify" in summary
        assert re.search(r"map world: 4 networks of .*geo.mmdb, compiled \d{4}-", summary)
        # Status and metrics say the same of the site.
        _, body = get(server, "/status")
        entry = next(n for n in json.loads(body)["names"] if n["name"] == "www.example.test")
        fra = next(s for s in entry["sites"] if s["site"] == "fra" and s["type"] == "A")
        assert (fra["up"], fra["total"], fra["qualifies"]) == (0, 2, False)
        labels = {"name": "www.example.test", "site": "fra", "type": "A"}
        found = metrics(server)
        key = tuple(sorted(labels.items()))
        assert found[("healthdns_site_addresses_up", key)] == 0
        assert found[("healthdns_site_addresses", key)] == 2
        assert found[("healthdns_site_qualifies", key)] == 0
    finally:
        set_fra(backends, True)
        server.wait_until(lambda: all_up(server), 20, "fra back")


CLIENTS = ((EU, None), (NA, None), (ASIA, None), (NOWHERE, None), (None, "127.0.0.70"),
           (None, "127.0.0.1"), ("::ffff:198.51.100.0/120", None))


def test_explain_and_dig_agree_for_every_client_in_random_health(
        server: Server, backends: dict[str, Backend]) -> None:
    """Random up/down states of the four backends (sites qualifying, passed over, all down
    under serve-all): for every kind of client, explain's addresses and scope are what dig
    gets, and explain names the site whose addresses they are."""
    rng = random.Random(23)
    homes = {a: site for site, addresses in (("fra", FRA), ("iad", IAD), ("sin", SIN))
             for a in addresses}
    try:
        for _ in range(8):  # this seed's states include every site down, and sin alone up
            for backend in backends.values():
                put(backend, rng.random() < 0.5)
            for subnet, source in CLIENTS:
                server.wait_until(lambda s=subnet, b=source: agree(server, s, b), 20,
                                  f"explain and dig agree for {subnet or source}")
                answer = explained(server, subnet or source)
                assert {homes[a] for a in answer["records"]} == {answer["geo"]["site"]}
    finally:
        for backend in backends.values():
            put(backend, True)
        server.wait_until(lambda: all_up(server) and dig(server, NA)[0] == set(IAD)
                          and dig(server, ASIA)[0] == set(SIN), 20, "every site back")


def agree(server: Server, subnet: str | None, source: str | None) -> bool:
    answer = explained(server, subnet or source)
    return (set(answer["records"]), answer["scope"]) == dig(server, subnet, source)


def test_a_client_that_is_not_an_ecs_prefix_is_refused_naming_the_field(server: Server) -> None:
    for bad, words in (("192.0.2.1/24", "bits beyond /24"), ("192.0.2.0/0", "1-32"),
                       ("www", "not an address")):
        code, text = get(server, "/explain?" + urllib.parse.urlencode(
            {"name": "www.example.test", "client": bad}))
        assert code == 400 and words in json.loads(text)["error"], text


def test_answers_that_do_not_depend_on_the_client_have_the_wires_scope(server: Server
                                                                        ) -> None:
    """A static name, a geo pool's type it has no address of, a name that does not exist."""
    answer = explained(server, EU, name="static.example.test")
    assert answer["scope"] == 0
    assert dig(server, EU, name="static.example.test") == ({"192.0.2.1"}, 0)
    assert "ECS scope /0: the answer holds for every client" in ctl(
        server, "explain", "static.example.test", "A", "--client", EU)
    nodata = explained(server, EU, rdtype="AAAA")
    assert (nodata["records"], nodata["scope"]) == ([], dig(server, EU, rdtype="AAAA")[1])
    _, text = get(server, "/explain?" + urllib.parse.urlencode(
        {"name": "absent.example.test", "client": EU}))
    assert json.loads(text)["scope"] == dig(server, EU, name="absent.example.test")[1] == 0


def test_status_shows_a_geo_names_default_answer_and_its_routes(server: Server) -> None:
    _, body = get(server, "/status")
    entry = next(n for n in json.loads(body)["names"] if n["name"] == "www.example.test")
    assert entry["map"] == "world"
    assert [(a["type"], a["addresses"]) for a in entry["answers"]] == [("A", sorted(FRA))]
    routes = {tuple(r["order"]): r["site"] for r in entry["routes"] if r["type"] == "A"}
    assert routes[("fra", "iad")] == routes[("fra", "iad", "sin")] == "fra"
    assert routes[("iad", "fra", "sin")] == "iad" and routes[("sin", "iad")] == "sin"


# --- metrics ------------------------------------------------------------------------------


def test_answers_are_counted_by_site(server: Server) -> None:
    labels = {"zone": "example.test", "site": "iad"}
    before = total(server, "healthdns_site_answers_total", labels)
    for _ in range(5):
        assert dig(server, NA)[0] == set(IAD)
    server.wait_until(lambda: total(server, "healthdns_site_answers_total", labels)
                      >= before + 5, 20, "five iad answers counted")
    names = {labels_of for (name, labels_of) in metrics(server)
             if name == "healthdns_site_answers_total"}
    assert all(dict(k).keys() == {"zone", "site"} for k in names)  # no per-client label


def test_the_map_is_shown_in_status_and_metrics(server: Server) -> None:
    _, body = get(server, "/status")
    (world,) = json.loads(body)["maps"]
    assert (world["map"], world["networks"], world["error"]) == ("world", 4, None)
    found = metrics(server)
    assert found[("healthdns_map_networks", (("map", "world"),))] == 4
    assert found[("healthdns_map_load_failed", (("map", "world"),))] == 0
    assert found[("healthdns_map_loaded_timestamp_seconds", (("map", "world"),))] > 0


# --- a bad database ------------------------------------------------------------------------


def test_a_truncated_database_keeps_the_map_in_service_and_says_so(
        tmp_path: Path, backends: dict[str, Backend]) -> None:
    db = database(tmp_path / "geo.mmdb")
    good = db.read_bytes()
    port = backends[FRA[0]].port
    server = Server([], tmp_path, geo_config(port, db, check_interval=0.5)).start()
    try:
        server.wait_until(lambda: all_up(server), 20, "every site up")
        assert explained(server, NA)["geo"]["site"] == "iad"  # explain compiles the good file
        db.write_bytes(good[:len(good) // 3])
        code, answer = call(server, "POST", "/reload")  # the reload is refused, naming it
        assert code == 422 and "maps.world.database" in answer["error"], answer
        assert str(db) in answer["error"]
        # On the timer the signer keeps the old map, logs it, and tells the supervisor at
        # once, without waiting for a change of health (none is made here).
        server.wait_until(lambda: _map(server)["error"] is not None, 20, "the error shown")
        server.wait_for(r"map world: maps\.world\.database: .*the previous tables stay", 20)
        assert str(db) in _map(server)["error"] and _map(server)["networks"] == 4
        assert total(server, "healthdns_map_load_failed", {"map": "world"}) == 1
        server.wait_for(r"map world: the database does not load", 10)
        assert dig(server, NA)[0] == set(IAD)  # routing by the map compiled before
        answer = explained(server, NA)  # and explain places clients as it did
        assert answer["records"] == list(IAD) and answer["geo"]["site"] == "iad"
        assert "truncated" in answer["geo"]["warning"], answer["geo"]
        db.write_bytes(good)
        server.wait_until(lambda: _map(server)["error"] is None, 20, "the error cleared")
        assert total(server, "healthdns_map_load_failed", {"map": "world"}) == 0
    finally:
        server.stop()


def _map(server: Server) -> dict[str, Any]:
    _, body = get(server, "/status")
    maps: list[dict[str, Any]] = json.loads(body)["maps"]
    return maps[0]


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
def test_an_ipv6_client_passes_over_the_sites_without_ipv6_addresses(server: Server) -> None:
    client = "2001:db8:1::/48"
    answer = explained(server, client, rdtype="AAAA", name="dual.example.test")
    geo = answer["geo"]
    assert (geo["entry"], geo["order"], geo["site"]) == (
        "maps.world.rules[0]", ["fra", "iad", "sin"], "iad")
    assert [s["site"] for s in geo["skipped"]] == ["fra"]
    assert geo["location"]["city"] == "Paris" and geo["network"] == "2001:db8::/32"
    assert (set(answer["records"]), answer["scope"]) == dig(
        server, client, rdtype="AAAA", name="dual.example.test") == ({"::1"}, 32)
    assert explained(server, client, name="dual.example.test")["geo"]["site"] == "fra"


def test_a_client_in_an_ipv4_space_of_ipv6_is_placed_by_its_ipv4_address(server: Server
                                                                         ) -> None:
    mapped = f"::ffff:{ipaddress.ip_network(EU).network_address}/120"
    geo = explained(server, mapped)["geo"]
    assert (geo["entry"], geo["site"]) == ("maps.world.rules[0]", "fra")


# --- the status page ------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """test_status_page's headless Chromium (skipped where it is not installed)."""
    pages = pytest.importorskip("test_status_page")
    if not (pages.CHROMIUM and pages.DRIVER):
        pytest.skip("chromium and chromium-driver are not installed")
    yield from pages.browser.__wrapped__(tmp_path)


def test_the_page_shows_each_site_and_the_map(server: Server, backends: dict[str, Backend],
                                              browser: Any) -> None:
    wait = pytest.importorskip("test_status_page").wait

    def shown() -> dict[str, Any]:
        found: dict[str, Any] = browser.execute_script("""
            const texts = row => [...row.cells].map(c => c.innerText);
            return {
              hidden: document.getElementById("geo").hidden,
              sites: [...document.querySelectorAll("#sites tbody tr")].map(texts),
              maps: [...document.querySelectorAll("#maps tbody tr")].map(texts)};""")
        return found
    try:
        browser.get(server.control + "/")
        wait(lambda: [r[1] for r in shown()["sites"] if r[0] == "www.example.test"] == [
            "fra", "iad", "sin"], "www's three sites shown")
        page = shown()
        assert not page["hidden"]
        assert page["maps"][0][:4] == ["world", f"{server_db(server)} (GeoIP2-City)", "4",
                                       page["maps"][0][3]]
        set_fra(backends, False)
        wait(lambda: ["www.example.test", "fra", "A", "0 of 2",
                                       "no: passes its clients on"] in shown()["sites"],
                              "fra shown not qualifying", timeout=20)
        assert ["www.example.test", "iad", "A", "1 of 1", "yes"] in shown()["sites"]
        assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")
                ] == []
    finally:
        set_fra(backends, True)
        server.wait_until(lambda: all_up(server), 20, "fra back")


def server_db(server: Server) -> str:
    _, body = get(server, "/status")
    database: str = json.loads(body)["maps"][0]["database"]
    return database


# --- counting across responder restarts ----------------------------------------------------


def test_site_answers_never_go_back_across_a_responder_restart() -> None:
    """An ended responder's totals are kept; a site no configuration names is "other", so a
    child cannot grow the number of series."""
    counters = Counters(transfers=False)
    zone = {b"\x07example\x04test\x00": "example.test"}.__getitem__
    known = {"fra", "iad"}

    def stats(rows: list[tuple[bytes, str, int]]) -> messages.Stats:
        return messages.Stats(slot=0, generation=1, counts=[], truncated=0, errors=0,
                              sites=rows)
    origin = b"\x07example\x04test\x00"
    counters.counted(0, stats([(origin, "fra", 5), (origin, "", 1)]), 0.0)
    assert counters.sites(zone, known) == {("example.test", "fra"): 5, ("example.test", ""): 1}
    counters.ended("responder", 0, restarted=True)
    counters.counted(0, stats([(origin, "fra", 2), (origin, "x" * 40, 3)]), 1.0)
    assert counters.sites(zone, known) == {("example.test", "fra"): 7, ("example.test", ""): 1,
                                           ("example.test", "other"): 3}

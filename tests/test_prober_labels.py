"""The prober's log lines: one label per target, distinct, and the names a target decides."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from healthdns.prober import checks
from healthdns.prober.scheduler import Scheduler
from healthdns.shared import config
from healthdns.shared.config import CheckSpec


def _document(tmp_path: Path) -> dict[str, object]:
    ca_files = []
    for i in range(2):
        path = tmp_path / f"ca{i}.pem"
        trustme.CA().cert_pem.write_to_path(str(path))
        ca_files.append(str(path))
    https = {"kind": "https", "port": 443}
    tcp = {"pool": {"addresses": ["192.0.2.1"], "check": {"port": 80}}}
    return {"zones": [{"origin": "example.test", "nameservers": ["ns1.example.net"],
                       "records": {
        "a": {"pool": {"addresses": ["192.0.2.1"], "check": {**https, "ca_file": ca_files[0]}}},
        "b": {"pool": {"addresses": ["192.0.2.1"], "check": {**https, "ca_file": ca_files[1]}}},
        "c": {"pool": {"addresses": ["192.0.2.1"], "check": {**https, "verify": False}}},
        "d": tcp, "e": tcp, "f": tcp, "g": tcp,
    }}]}


def _first_round(cfg: config.Config) -> None:
    """Run the scheduler's first round with every check refused, as the prober would."""
    async def serve() -> None:
        reported = asyncio.Event()
        scheduler = Scheduler(cfg.checks(), lambda states, full: reported.set(),
                              names=cfg.served(),
                              check=lambda address, spec, done: done(False, "connection refused"))
        task = asyncio.create_task(scheduler.serve())
        await reported.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())


def test_down_lines_tell_targets_apart_and_name_what_they_serve(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.from_mapping(_document(tmp_path))
    with caplog.at_level(logging.INFO, logger="healthdns.prober"):
        _first_round(cfg)
    down = sorted(r.getMessage() for r in caplog.records if " is down: " in r.getMessage())
    assert down == [
        ("https 192.0.2.1:443/ [verify=false, ca_file=null] is down: connection refused; "
        "used by c.example.test"),
        (f"https 192.0.2.1:443/ [verify=true, ca_file={tmp_path}/ca0.pem] is down: "
        "connection refused; used by a.example.test"),
        (f"https 192.0.2.1:443/ [verify=true, ca_file={tmp_path}/ca1.pem] is down: "
        "connection refused; used by b.example.test"),
        # One target decides four names: three are named, the rest counted.
        ("tcp 192.0.2.1:80 is down: connection refused; used by d.example.test, "
        "e.example.test, f.example.test and 1 more"),
    ]


def test_a_target_of_its_own_keeps_its_plain_label() -> None:
    spec = CheckSpec(kind="https", port=443, path="/health", host="www.example.test")
    assert checks.labels({"t": ("127.0.0.1", spec)}) == {
        "t": "https 127.0.0.1:443/health (Host www.example.test)"}


SPECS = st.builds(
    CheckSpec, kind=st.sampled_from(["tcp", "http", "https"]), port=st.sampled_from([80, 443]),
    interval=st.sampled_from([1.0, 5.0]), timeout=st.sampled_from([0.5, 1.0]),
    rise=st.integers(1, 3), verify=st.booleans(),
    ca_pem=st.sampled_from([None, "PEM one", "PEM two"]),
    ca_file=st.sampled_from([None, "/etc/a.pem", "/etc/b.pem"]),
    status=st.sampled_from(["200-399", "200"]), body=st.sampled_from([None, "ok"]),
    hold_down=st.sampled_from([0.0, 0.1000001, 0.1]),
    headers=st.sampled_from([{}, {"Authorization": "Bearer secret-1"},
                             {"Authorization": "Bearer secret-2"}, {"X-Key": "secret-3"}]),
    variant=st.integers(0, 2))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["192.0.2.1", "2001:db8::1"]), SPECS), max_size=12))
def test_distinct_targets_get_distinct_labels(checked: list[tuple[str, CheckSpec]]) -> None:
    targets = {spec.target(address): (address, spec) for address, spec in checked}
    labels = checks.labels(targets)
    assert labels.keys() == targets.keys()
    assert len(set(labels.values())) == len(targets), labels
    assert not any("secret" in label for label in labels.values()), labels


def test_checks_that_differ_only_in_header_values_are_told_apart_by_their_place() -> None:
    """Before, the label showed both values: headers={"Authorization": "Bearer ..."}."""
    def record(token: str) -> dict[str, object]:
        return {"pool": {"addresses": ["192.0.2.1"], "check": {
            "kind": "http", "port": 80, "headers": {"Authorization": f"Bearer {token}"}}}}

    cfg = config.from_mapping({"zones": [{
        "origin": "example.test", "nameservers": ["ns1.example.net"],
        "records": {"a": record("secret-a"), "b": record("secret-b"), "c": record("secret-a")}}]})
    assert sorted(checks.labels(cfg.checks()).values()) == [
        "http 192.0.2.1:80/ [headers=Authorization #2]",
        "http 192.0.2.1:80/ [headers=Authorization]"]

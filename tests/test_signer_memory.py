"""Memory (issue #12): the signer keeps one copy of what does not change between generations.

What a name without a pool serves is compared, generation after generation, as the zone's own
object (never a copy per name and generation); the sort keys of the NSEC chain share the
zone's labels; a one-record RRset's signature is cached under the zone's own record tuple.
"""

from __future__ import annotations

import msgspec
import pytest
from test_deltas import configs, targets

from healthdns.signer.main import Signer

STATIC = b"\x06static\x07example\x04test\x00"  # the record without a pool in test_deltas


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("keys"))


def published(signer: Signer, ids: list[str], up: bool) -> None:
    assert signer.update(dict.fromkeys(ids, up), full=True) is not None


@pytest.mark.parametrize("kind", ["unsigned", "signed"])
def test_a_static_name_is_kept_as_the_zone_s_own_data(tmp_dir: str, kind: str) -> None:
    cfg = configs(tmp_dir)[kind]
    ids = targets(cfg)
    signer = Signer(cfg)
    owner = signer.zones[0].owners[STATIC]
    for up in (True, False, True):  # generations where pools change and this name does not
        published(signer, ids, up)
        content = signer.caches[0].names[STATIC][0]
        assert content[0] is owner.static


def test_chain_keys_share_labels_and_signatures_share_records(tmp_dir: str) -> None:
    cfg = configs(tmp_dir)["signed"]
    signer = Signer(cfg)
    published(signer, targets(cfg), True)
    keys = signer.caches[0].keys
    assert len(keys) > 2
    assert len({id(key[0]) for key in keys}) == 1  # b"test", one object for every owner
    zone_signer = signer.signers[0]
    assert zone_signer is not None
    owner = signer.zones[0].owners[STATIC]
    for rdtype, (ttl, rdatas) in owner.static:
        if len(rdatas) == 1:
            assert any(key[3] is rdatas for key in zone_signer.cache
                       if key[:3] == (STATIC, rdtype, ttl))


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_nsec_type_sets_are_shared(tmp_dir: str, denial: str) -> None:
    """Most owners have the same types: their NSEC (NSEC3) cache keys share one tuple."""
    cfg = configs(tmp_dir)["signed"]
    spec = cfg.zones[0]
    assert spec.dnssec is not None
    zone = msgspec.structs.replace(spec, dnssec=msgspec.structs.replace(spec.dnssec,
                                                                        denial=denial))
    signer = Signer(msgspec.structs.replace(cfg, zones=[zone]))
    published(signer, targets(cfg), True)
    type_sets = [types for _, types in signer.caches[0].nsecs]
    assert len({id(t) for t in type_sets}) == len(set(type_sets)) < len(type_sets)

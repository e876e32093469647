"""The panos target through pan-os-python against a peer of the PAN-OS XML API subset
(tests/support/peers/panos.py, written from the API documentation and pan-os-python's own
code): no PAN-OS runs here, so these prove the protocol as documented, not a firewall."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from support.peers.panos import PanosPeer
from vmfabric.config.groups import PanosFirewall
from vmfabric.core.errors import PermanentError, TransientError
from vmfabric.targets.addrset.base import MemberChange
from vmfabric.targets.addrset.panos import PanosDriver

KEY = "peer-api-key"


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[PanosPeer]:
    p = PanosPeer(tmp_path, KEY)
    yield p
    p.stop()


def driver(peer: PanosPeer, key: str = KEY, **options: object) -> PanosDriver:
    cfg = PanosFirewall.model_validate(
        {"name": "pa1", "kind": "panos", "host": "127.0.0.1", "port": peer.port,
         "api_key": "env:PA1_KEY", "ca_file": str(peer.cert), "timeout": 2, **options}
    )  # fmt: skip
    return PanosDriver(cfg, SecretStr(key))


def adds(group: str, *ips: str) -> list[MemberChange]:
    return [MemberChange(group, ip, "add") for ip in ips]


def test_registers_and_unregisters_group_tags_in_one_uid_message(peer: PanosPeer) -> None:
    d = driver(peer)
    d.connect()
    state = d.apply([*adds("web", "10.0.0.1", "10.0.0.2"), *adds("db", "10.9.0.0/24")])
    assert state == {"web": {"10.0.0.1", "10.0.0.2"}, "db": {"10.9.0.0/24"}}
    assert peer.tagged("vmf-web") == {"10.0.0.1", "10.0.0.2"}
    assert peer.uid_messages == 1, "one batch"
    state = d.apply([MemberChange("web", "10.0.0.1", "remove"), *adds("web", "10.0.0.2")])
    assert state["web"] == {"10.0.0.2"}
    assert peer.uid_messages == 2, "the present member was not sent again"


def test_reads_only_its_own_prefix_and_leaves_other_tags_alone(peer: PanosPeer) -> None:
    peer.registered = {"10.0.0.1": {"admin-tag", "vmf-web"}, "10.0.0.7": {"other"}}
    d = driver(peer)
    d.connect()
    assert d.read() == {"web": {"10.0.0.1"}}
    d.apply([MemberChange("web", "10.0.0.1", "remove")])
    assert peer.registered == {"10.0.0.1": {"admin-tag"}, "10.0.0.7": {"other"}}


def test_reading_pages_through_many_registered_addresses(peer: PanosPeer) -> None:
    peer.registered = {f"10.1.{i // 250}.{i % 250 + 1}": {"vmf-big"} for i in range(1203)}
    d = driver(peer, batch_size=400)
    d.connect()
    assert len(d.read()["big"]) == 1203, "pages of 500 (pan-os-python's limit)"
    ops_before = peer.ops
    d.read()
    assert peer.ops - ops_before == 3
    d.apply([MemberChange("big", ip, "remove") for ip in sorted(d.read()["big"])[:1000]])
    assert peer.uid_messages == 3, "1000 entries in batches of 400"
    assert len(peer.tagged("vmf-big")) == 203


def test_a_wrong_key_is_refused_for_good(peer: PanosPeer) -> None:
    d = driver(peer, key="wrong")
    with pytest.raises(PermanentError, match="API key was refused") as info:
        d.connect()
    assert "wrong" not in str(info.value)


def test_an_unreachable_or_frozen_firewall_is_transient(peer: PanosPeer) -> None:
    d = driver(peer)
    d.connect()
    peer.freeze()
    try:
        with pytest.raises(TransientError):
            d.apply(adds("web", "10.0.0.5"))
    finally:
        peer.thaw()
    peer.stop()
    with pytest.raises(TransientError):
        driver(peer).connect()


def test_tls_is_verified_against_the_configured_ca(peer: PanosPeer, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = PanosPeer(tmp_path / "other", KEY)
    try:
        d = driver(peer, ca_file=str(other.cert))
        with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
            d.connect()
    finally:
        other.stop()


def test_a_frozen_apply_registers_later_and_the_next_read_sees_it(peer: PanosPeer) -> None:
    d = driver(peer)
    d.connect()
    peer.freeze()
    threading.Timer(2.5, peer.thaw).start()
    with pytest.raises(TransientError):
        d.apply(adds("web", "10.0.0.6"))
    deadline = time.monotonic() + 30
    while "10.0.0.6" not in peer.tagged("vmf-web") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.read() == {"web": {"10.0.0.6"}}, "settled by the next read, nothing half-known"


def test_start_reconciles_by_diff_and_follows_a_tag_change(
    peer: PanosPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from vmfabric.config import parse_config
    from vmfabric.core.model import Power, Snapshot, Vm, VmUpsert
    from vmfabric.inventory.index import Inventory
    from vmfabric.runtime.groups import build, step

    monkeypatch.setenv("PA1_KEY", KEY)
    cfg = parse_config(yaml.safe_load(f"""
sessions: [{{name: s1, kind: static, path: x.yaml}}]
groups: [{{name: web, match: {{tag: "tier:web"}}}}, {{name: db, match: {{tag: "tier:db"}}}}]
firewalls:
  - {{name: pa1, kind: panos, host: 127.0.0.1, port: {peer.port}, api_key: env:PA1_KEY,
     ca_file: {peer.cert}}}
"""), "test")  # fmt: skip
    peer.registered = {"10.0.0.1": {"vmf-web"}, "10.0.0.99": {"vmf-web", "keep-me"}}
    inv = Inventory(["s1"])
    built = build(cfg, inv)
    assert built is not None
    intent, (target,) = built
    web = Vm("s1", "w", "web-1", "hv1", Power.ON, ips=("10.0.0.1",), tags=("tier:web",))
    db = Vm("s1", "d", "db-1", "hv1", Power.ON, ips=("10.0.0.2",), tags=("tier:db",))
    intent.update(inv, inv.apply([Snapshot("s1", (), (), (web, db))], 1.0), 1.0)
    target.connect()
    plan = step(target, 1.0)
    assert sorted((c.holder, c.member, c.action) for c in plan.changes) == [
        ("db", "10.0.0.2", "add"),
        ("web", "10.0.0.99", "remove"),
    ], "a diff against what the firewall holds: 10.0.0.1 is not registered again"
    assert peer.registered == {"10.0.0.1": {"vmf-web"}, "10.0.0.2": {"vmf-db"},
                               "10.0.0.99": {"keep-me"}}  # fmt: skip
    retag = Vm("s1", "w", "web-1", "hv1", Power.ON, ips=("10.0.0.1",), tags=("tier:db",))
    intent.update(inv, inv.apply([VmUpsert(retag)], 2.0), 2.0)
    step(target, 2.0)
    assert peer.tagged("vmf-db") == {"10.0.0.1", "10.0.0.2"}
    assert peer.tagged("vmf-web") == set()

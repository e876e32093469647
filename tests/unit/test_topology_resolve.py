"""Neighbour matching: names, domains, addresses, interface spellings, static links."""

from __future__ import annotations

import pytest

from vmfabric.config import LinkConfig, SwitchConfig
from vmfabric.core.model import Host, Neighbor, Nic
from vmfabric.inventory.topology.resolve import Resolver, canonical_name, canonical_port

LEAF1 = SwitchConfig(
    name="leaf1", driver="fake", edge_ports=["Ethernet1", "Ethernet2"], mgmt_address="10.0.0.1"
)
LEAF2 = SwitchConfig(name="leaf2", driver="fake", edge_ports=["p1"], aliases=["LEAF-B"])


@pytest.mark.parametrize(
    ("a", "b"),
    [("Et1", "Ethernet1"), ("eth1", "Ethernet1"), ("Gi1/0/1", "GigabitEthernet1/0/1"),
     ("Po10", "Port-Channel10"), ("te1/1", "TenGigabitEthernet1/1")],
)  # fmt: skip
def test_interface_spellings_are_equivalent(a: str, b: str) -> None:
    assert canonical_port(a) == canonical_port(b)


def test_different_interfaces_stay_different() -> None:
    assert canonical_port("Et1") != canonical_port("Et11")
    assert canonical_port("Gi1/0/1") != canonical_port("Te1/0/1")


def test_names_match_without_case_domain_or_serial() -> None:
    assert canonical_name("LEAF1.dc1.example.com") == "leaf1"
    assert canonical_name("leaf1(SSI1234567)") == "leaf1"
    assert canonical_name("10.0.0.1") == "10.0.0.1"


def host(*nics: Nic) -> Host:
    return Host("vc", "esx1", nics)


def test_cdp_and_lldp_neighbours_resolve_to_edge_ports() -> None:
    r = Resolver([LEAF1, LEAF2], [])
    h = r.resolve(
        host(
            Nic("vmnic0", Neighbor("cdp", "leaf1.example.com", "Et2")),
            Nic("vmnic1", Neighbor("lldp", "leaf-b", "p1", chassis_id="aa:bb:cc:dd:ee:ff")),
            Nic("vmnic2", Neighbor("lldp", "", "Ethernet1", mgmt_addr="10.0.0.1")),
            Nic("vmnic3", Neighbor("lldp", "spine9", "Ethernet1")),
            Nic("vmnic4"),
        )
    )
    got = [(u.nic, u.switch, u.port, u.source) for u in h.uplinks]
    assert got == [
        ("vmnic0", "leaf1", "Ethernet2", "cdp"),
        ("vmnic1", "leaf2", "p1", "lldp"),
        ("vmnic2", "leaf1", "Ethernet1", "lldp"),
    ]  # spine9 is unmatched: no uplink, the NIC keeps its neighbour for `show host`


def test_static_links_win_over_discovery() -> None:
    link = LinkConfig(host="esx1", nic="vmnic0", switch="leaf2", port="p1")
    r = Resolver([LEAF1, LEAF2], [link])
    h = r.resolve(host(Nic("vmnic0", Neighbor("cdp", "leaf1", "Et1"))))
    assert [(u.switch, u.port, u.source) for u in h.uplinks] == [("leaf2", "p1", "static")]


def test_static_link_of_another_session_is_ignored() -> None:
    link = LinkConfig(host="esx1", nic="vmnic0", switch="leaf2", port="p1", session="kvm")
    r = Resolver([LEAF1, LEAF2], [link])
    assert r.resolve(host(Nic("vmnic0"))).uplinks == ()

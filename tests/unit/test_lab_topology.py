"""Lab topology files: validation errors, the MAC/address conventions, the built-in leaf-spine."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from vmfabric.core.errors import ConfigError
from vmfabric.lab import graph
from vmfabric.lab import topology as tp

SMALL = """
name: small
nodes:
  - {name: leaf1, kind: switch}
  - {name: spine1, kind: switch}
  - {name: hv1, kind: host}
links:
  - {name: up1, endpoints: ["leaf1:eth51", "spine1:eth1"]}
  - {endpoints: ["leaf1:eth1", "hv1:vmnic0"]}
"""


def _bad(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        tp.parse_topology(text, "lab.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("lab.yaml: ")
    return message


def test_builtin_leaf_spine_has_the_documented_shape() -> None:
    topo, where = tp.load_topology(None)
    assert where == "leaf-spine.yaml"
    assert [n.name for n in tp.switches(topo)] == ["leaf1", "leaf2", "spine3", "spine4"]
    assert [n.name for n in tp.hosts(topo)] == ["hv1", "hv2", "hv3", "hv4", "hv5"]
    fabric = {
        tp.link_name(topo, i): tuple(e.node for e in tp.endpoints(link))
        for i, link in enumerate(topo.links)
        if link in tp.fabric_links(topo)
    }
    assert fabric == {
        "net1": ("leaf1", "spine3"),
        "net2": ("leaf1", "spine4"),
        "net3": ("leaf2", "spine3"),
        "net4": ("leaf2", "spine4"),
    }
    assert tp.edge_ports(topo, "leaf1") == ["eth1", "eth2", "eth3"]
    assert tp.edge_ports(topo, "spine3") == []
    assert tp.peer_of(topo, "hv5", "vmnic1") == tp.Endpoint("leaf2", "eth3")
    assert topo.underlay == tp.Underlay.NONE
    assert tp.edge_vlans(topo) == frozenset()


def test_builtin_name_and_file_load_the_same(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(SMALL)
    topo, where = tp.load_topology(path)
    assert (topo.name, where) == ("small", str(path))
    assert tp.load_topology("leaf-spine")[0] == tp.load_topology(None)[0]


def test_macs_follow_node_and_port_index() -> None:
    topo = tp.parse_topology(SMALL)
    assert tp.mac(topo, "leaf1") == "02:76:66:01:00:00"
    assert tp.mac(topo, "leaf1", "eth51") == "02:76:66:01:01:00"
    assert tp.mac(topo, "leaf1", "eth1") == "02:76:66:01:02:00"
    assert tp.mac(topo, "hv1", "vmnic0") == "02:76:66:03:01:00"
    assert tp.mac(topo, "spine1", "mgmt0") == "02:76:66:02:fe:00"


def test_every_mac_of_the_default_lab_is_unique_and_locally_administered() -> None:
    topo = tp.load_topology(None)[0]
    macs = [tp.mac(topo, n.name, p) for n in topo.nodes for p in [None, *tp.ports_of(topo, n.name)]]
    assert len(set(macs)) == len(macs)
    assert all(int(m.split(":")[0], 16) & 0b10 and not int(m.split(":")[0], 16) & 1 for m in macs)


def test_vm_mac_is_stable_and_locally_administered() -> None:
    assert tp.vm_mac("web-01") == tp.vm_mac("web-01") != tp.vm_mac("web-02")
    assert re.fullmatch(r"02:76:76(:[0-9a-f]{2}){3}", tp.vm_mac("web-01"))


def test_addresses_follow_the_documented_plan() -> None:
    topo = tp.load_topology(None)[0]
    assert str(tp.mgmt_gateway(topo)) == "172.31.255.1/24"
    assert str(tp.mgmt_address(topo, "leaf1")) == "172.31.255.11/24"
    assert tp.loopback(topo, "spine4") == ipaddress.IPv4Address("10.255.0.4")
    p2p = tp.p2p_addresses(topo)
    assert str(p2p["leaf1", "eth51"]) == "10.254.0.0/31"
    assert str(p2p["spine3", "eth1"]) == "10.254.0.1/31"
    assert str(p2p["leaf2", "eth52"]) == "10.254.0.6/31"
    assert ("leaf1", "eth1") not in p2p
    assert tp.asn(topo, "leaf2") == 65002


def test_names_carry_the_lab_prefix() -> None:
    assert tp.netns_name("demo", "leaf1") == "vfl-demo-leaf1"
    assert tp.vm_netns("demo", "web") == "vfl-demo-vm-web"


def test_unknown_node_kind_is_refused() -> None:
    message = _bad(SMALL.replace("kind: host", "kind: router9"))
    assert "nodes[2].kind" in message


def test_duplicate_node_name_is_refused() -> None:
    message = _bad(SMALL.replace("name: spine1", "name: leaf1"))
    assert message == "lab.yaml: nodes[1].name: duplicate node name 'leaf1'"


def test_link_to_missing_node_is_refused() -> None:
    message = _bad(SMALL.replace("hv1:vmnic0", "hv9:vmnic0"))
    assert "links[1].endpoints[1]" in message and "unknown node 'hv9'" in message


def test_port_used_twice_is_refused() -> None:
    text = SMALL + '  - {endpoints: ["leaf1:eth1", "spine1:eth2"]}\n'
    message = _bad(text)
    assert "links[2].endpoints[0]" in message and "already used by link2" in message


def test_port_name_too_long_for_an_interface_is_refused() -> None:
    message = _bad(SMALL.replace("hv1:vmnic0", "hv1:vmnic0-much-too-long"))
    assert "links[1].endpoints[1]" in message and "longer than 15" in message


def test_node_name_too_long_for_an_interface_is_refused() -> None:
    message = _bad(SMALL.replace("hv1", "hypervisor-number-1"))
    assert "nodes[2].name" in message and "longer than 15" in message


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("name: small", "name: Small!"), "name"),
        (("spine1:eth1", "spine1"), "links[0].endpoints[1]"),
        (("leaf1:eth1", "leaf1:mgmt0"), "links[1].endpoints[0]"),
        (("nodes:", "underlay: isis\nnodes:"), "underlay"),
        (("nodes:", "edge_vlans: 5000\nnodes:"), "edge_vlans"),
        (("nodes:", "colour: red\nnodes:"), "colour"),
        (("spine1:eth1", "leaf1:eth9"), "links[0]"),
    ],
)
def test_bad_input_names_the_key(change: tuple[str, str], key: str) -> None:
    assert f"lab.yaml: {key}:" in _bad(SMALL.replace(*change))


def test_host_to_host_link_is_refused() -> None:
    hv1 = "- {name: hv1, kind: host}"
    text = SMALL.replace(hv1, hv1 + "\n  - {name: hv2, kind: host}")
    assert "links[2]" in _bad(text + '  - {endpoints: ["hv1:vmnic1", "hv2:vmnic0"]}\n')


def test_not_yaml_or_not_a_mapping_is_one_line() -> None:
    assert "not valid YAML" in _bad("nodes: [")
    assert "mapping" in _bad("- 1\n- 2\n")


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        tp.load_topology(tmp_path / "nope.yaml")


def test_dot_source_has_every_link_with_port_names() -> None:
    topo = tp.load_topology(None)[0]
    source = graph.dot_source(topo)
    assert source.count(" -- ") == len(topo.links)
    for i, link in enumerate(topo.links):
        lines = [
            f'"{a.node}" -- "{b.node}" [label="{tp.link_name(topo, i)}", '
            f'taillabel="{a.port}", headlabel="{b.port}"'
            for a, b in (tp.endpoints(link), tp.endpoints(link)[::-1])
        ]
        assert any(line in source for line in lines)
    assert '"spine3" -- "leaf1" [label="net1", taillabel="eth1", headlabel="eth51"' in source

"""The overlay lab's plan, without running it: which leaves are VTEPs, their addresses, the
underlay announcing them, and the names the VTEPs reserve."""

from __future__ import annotations

import ipaddress
import re
from importlib import resources

import pytest

from vmfabric.core.errors import ConfigError
from vmfabric.lab import frr
from vmfabric.lab import topology as tp


def test_only_leaves_of_an_underlay_lab_are_vteps() -> None:
    topo, _ = tp.load_topology("overlay")
    assert topo.underlay == tp.Underlay.BGP
    assert tp.vtep_leaves(topo) == ["leaf1", "leaf2", "leaf3"], "spines have no edge port"
    flat = topo.model_copy(update={"underlay": tp.Underlay.NONE})
    assert tp.vtep_leaves(flat) == [], "underlay: none stays one L2 fabric"


def test_each_vtep_gets_the_far_end_of_a_31_its_leaf_announces() -> None:
    topo, _ = tp.load_topology("overlay")
    leaf_side, vtep_side = tp.vtep_link(topo, "leaf3")
    assert (str(leaf_side), str(vtep_side)) == ("10.253.1.4/31", "10.253.1.5/31")
    assert tp.vtep_address(topo, "leaf1") == ipaddress.IPv4Address("10.253.1.1")
    assert tp.vtep_netns("overlay", "leaf1") == "vfl-overlay-vtep-leaf1"
    assert "  network 10.253.1.4/31" in frr.bgpd_config(topo, "leaf3").splitlines()
    assert "network 10.253" not in frr.bgpd_config(topo, "spine4")
    ospf = topo.model_copy(update={"underlay": tp.Underlay.OSPF})
    text = frr.ospfd_config(ospf, "leaf2")
    assert "interface vtepu\n ip ospf area 0\n ip ospf passive\n" in text


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('"leaf1:eth1"', '"leaf1:vtepu"', "links[6].endpoints[0]"),
        ("{name: hv4, kind: host}", "{name: vtep-x, kind: host}", "nodes[8].name"),
        ("vteps: 10.253.1.0/24", "vteps: 10.253.1.0/29", "addressing.vteps"),
    ],
)
def test_names_and_room_the_vteps_need_are_refused(old: str, new: str, key: str) -> None:
    text = resources.files("vmfabric.lab").joinpath("overlay.yaml").read_text()
    assert old in text
    with pytest.raises(ConfigError, match=re.escape(f"lab.yaml: {key}")):
        tp.parse_topology(text.replace(old, new, 1), "lab.yaml")


def test_the_lab_picture_names_each_leafs_vtep() -> None:
    from vmfabric.lab import graph

    overlay = graph.dot_source(tp.load_topology("overlay")[0])
    assert "vtep 10.253.1.5" in overlay
    assert "vtep" not in graph.dot_source(tp.load_topology("leaf-spine")[0]), "no underlay"

"""The lldpcli JSON parser on output recorded from the real lldpd 1.0.16 here, and on odd
inputs: other shapes, unicode names, missing keys, garbage."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from vmfabric.core.errors import ConfigError, TransientError
from vmfabric.core.model import Neighbor
from vmfabric.inventory.topology.lldpd import (
    LldpdOutputError,
    lldpcli_argv,
    parse_neighbors,
    parse_switch_side,
    run_lldpcli,
)

DATA = Path(__file__).parent.parent / "data" / "lldpd"
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def recorded(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# The recording test names links with a per-run prefix; read it from the raw JSON.
P = next(iter(json.loads(recorded("hv_lldp_and_cdp.json"))["lldp"]["interface"][0]))[:-2]


def lldp_json(interfaces: Any) -> str:
    return json.dumps({"lldp": {"interface": interfaces}})


def body(chassis: Any, port: Any, via: str = "LLDP") -> dict[str, Any]:
    return {"via": via, "chassis": chassis, "port": port}


PORT = {"id": {"type": "ifname", "value": "Ethernet7"}, "descr": "uplink"}


@pytest.mark.parametrize("name", ["hv_lldp_and_cdp.json", "hv_lldp_and_cdp.json0.json"])
def test_recorded_hypervisor_view_in_both_formats(name: str) -> None:
    found = parse_neighbors(recorded(name))
    assert sorted(found) == [f"{P}h1", f"{P}h2", f"{P}h3"]
    leaf = found[f"{P}h1"]
    assert leaf == Neighbor("lldp", "leaf1", f"{P}e1", leaf.chassis_id, "192.0.2.11", f"{P}e1")
    assert MAC.match(leaf.chassis_id)
    assert found[f"{P}h3"].port_id == f"{P}e2"
    assert found[f"{P}h3"].chassis_id == leaf.chassis_id
    cdp = found[f"{P}h2"]
    assert (cdp.protocol, cdp.system_name, cdp.port_id) == ("cdp", "cdp-sw1.lab", f"{P}g0")


def test_json_and_json0_agree_on_every_recording() -> None:
    for stem in ("hv_lldp_and_cdp", "switch_two_ports", "cdp_switch_one_port", "empty"):
        assert parse_neighbors(recorded(f"{stem}.json")) == parse_neighbors(
            recorded(f"{stem}.json0.json")
        )


def test_recorded_single_neighbour_dict_shape_with_unicode_name() -> None:
    text = recorded("cdp_switch_one_port.json")
    assert isinstance(json.loads(text)["lldp"]["interface"], dict)
    ((port, neighbor),) = parse_neighbors(text).items()
    assert port == f"{P}g0"
    assert neighbor.system_name == "hv-ünï.example" and neighbor.protocol == "cdp"


def test_switch_side_names_host_and_nic_from_port_description() -> None:
    seen = parse_switch_side(recorded("switch_two_ports.json"))
    assert {p: (s.host, s.nic) for p, s in seen.items()} == {
        f"{P}e1": ("hv-ünï.example", f"{P}h1"),
        f"{P}e2": ("hv-ünï.example", f"{P}h3"),
    }
    assert MAC.match(seen[f"{P}e1"].neighbor.port_id)  # Linux lldpd sends the MAC as port id


def test_switch_side_keeps_an_ifname_port_id() -> None:
    seen = parse_switch_side(lldp_json({"sw-p1": body({"hv9": {"id": "x"}}, PORT)}))
    assert (seen["sw-p1"].host, seen["sw-p1"].nic) == ("hv9", "Ethernet7")


@pytest.mark.parametrize(
    "text",
    [
        recorded("empty.json"),
        recorded("empty.json0.json"),
        '{"lldp": {"interface": []}}',
        '{"lldp": [{"interface": []}]}',
    ],
)
def test_no_neighbour_is_an_empty_mapping(text: str) -> None:
    assert parse_neighbors(text) == {}


def test_unnamed_chassis_falls_back_to_empty_name_with_chassis_id() -> None:
    chassis = {"id": {"type": "mac", "value": "00:11:22:33:44:55"}, "descr": "no name"}
    (neighbor,) = parse_neighbors(lldp_json({"eth0": body(chassis, PORT)})).values()
    assert (neighbor.system_name, neighbor.chassis_id) == ("", "00:11:22:33:44:55")


def test_unicode_interface_and_system_names_survive_bytes_input() -> None:
    text = lldp_json({"éth0": body({"交换机-1": {"id": {"value": "c"}}}, PORT)})
    found = parse_neighbors(text.encode("utf-8"))
    assert found["éth0"].system_name == "交换机-1"


def test_missing_optional_keys_give_empty_fields() -> None:
    port = {"id": {"type": "ifname", "value": "Ethernet3"}}
    (neighbor,) = parse_neighbors(lldp_json({"eth0": body({"sw": {}}, port)})).values()
    assert neighbor == Neighbor("lldp", "sw", "Ethernet3")


def test_mgmt_address_prefers_ipv4_from_a_list() -> None:
    chassis = {"sw": {"id": {"value": "c"}, "mgmt-ip": ["fe80::1", "198.51.100.7"]}}
    (neighbor,) = parse_neighbors(lldp_json({"eth0": body(chassis, PORT)})).values()
    assert neighbor.mgmt_addr == "198.51.100.7"


def test_lldp_wins_over_cdp_on_one_interface() -> None:
    cdp = {"eth0": body({"sw-cdp": {"id": {"value": "c"}}}, PORT, via="CDPv2")}
    lldp = {"eth0": body({"sw-lldp": {"id": {"value": "c"}}}, PORT)}
    found = parse_neighbors(lldp_json([cdp, lldp]))
    assert found["eth0"].system_name == "sw-lldp"


def test_several_neighbours_as_a_list_under_one_interface() -> None:
    two = [body({"a": {"id": {"value": "1"}}}, PORT), body({"b": {"id": {"value": "2"}}}, PORT)]
    assert parse_neighbors(lldp_json({"eth0": two}))["eth0"].system_name == "a"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty output"),
        ("   \n", "empty output"),
        ("lldpd is not running", "not JSON (line 1 column 1"),
        ("[]", "no top-level 'lldp' object"),
        ('{"neighbors": {}}', "no top-level 'lldp' object"),
        ('{"lldp": "x"}', "'lldp' holds a str"),
        ('{"lldp": {"interface": "eth0"}}', "an interface is a str"),
        ('{"lldp": {"interface": {"eth0": 3}}}', "interface eth0 holds a int"),
        (lldp_json({"eth0": {"via": "LLDP", "port": PORT}}), "eth0: neighbour has no chassis"),
        (lldp_json({"eth0": body({"sw": {}}, {"descr": "d"})}), "eth0: neighbour has no port id"),
        (lldp_json({"eth0": body({}, PORT)}), "neither a system name nor a chassis id"),
    ],
)
def test_refuses_what_it_does_not_understand_in_one_line(text: str, problem: str) -> None:
    with pytest.raises(LldpdOutputError) as info:
        parse_neighbors(text, where="lldpcli@hv1")
    message = str(info.value)
    assert message.startswith("lldpcli@hv1: ") and problem in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_argv_forms() -> None:
    assert lldpcli_argv() == ["lldpcli", "-f", "json", "show", "neighbors"]
    assert lldpcli_argv(netns="ns1", socket="/tmp/s")[:6] == [
        "ip",
        "netns",
        "exec",
        "ns1",
        "lldpcli",
        "-u",
    ]
    cmd = "ssh -o 'BatchMode yes' {host} lldpcli -f json show neighbors"
    assert lldpcli_argv(command=cmd, host="kvm-01")[:4] == ["ssh", "-o", "BatchMode yes", "kvm-01"]
    with pytest.raises(ConfigError, match="names \\{host\\} but no host"):
        lldpcli_argv(command=cmd)
    with pytest.raises(ConfigError, match="empty"):
        lldpcli_argv(command="  ")


def test_missing_command_and_failures_are_transient_one_liners() -> None:
    with pytest.raises(TransientError, match="command 'vfl-no-such-lldpcli' not found"):
        run_lldpcli(["vfl-no-such-lldpcli", "-f", "json"])
    with pytest.raises(TransientError, match=r"exit 3: boom$"):
        run_lldpcli(["sh", "-c", "echo boom >&2; exit 3"])
    with pytest.raises(TransientError, match=r"no answer within 0\.2s"):
        run_lldpcli(["sleep", "5"], timeout=0.2)

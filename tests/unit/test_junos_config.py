"""The junos driver's pure part: reading ELS and non-ELS configuration XML (Junos's own shape:
``interfaces``/``vlans`` under ``configuration``) and rendering one plan as one edit-config,
touching only the named members, the apply-macro record and vmfabric's own VLANs."""

from __future__ import annotations

import pytest
from lxml import etree

from vmfabric.core.errors import PermanentError
from vmfabric.core.model import PortMode
from vmfabric.targets.switchport.base import PortWrite
from vmfabric.targets.switchport.junos import JunosConfig, parse_config, render_edit

CONFIG = """<configuration>
  <interfaces>
    <interface><name>ge-0/0/1</name>
      <apply-macro><name>vmfabric</name><data><name>dynamic</name><value>110,300-301</value></data></apply-macro>
      <unit><name>0</name><family><ethernet-switching><interface-mode>trunk</interface-mode>
        <vlan><members>10</members><members>web</members><members>110</members><members>300-305</members></vlan>
      </ethernet-switching></family></unit></interface>
    <interface><name>ge-0/0/2</name><unit><name>0</name><family><ethernet-switching>
        <port-mode>trunk</port-mode><vlan><members>all</members></vlan></ethernet-switching></family></unit></interface>
    <interface><name>ge-0/0/3</name><unit><name>0</name><family><ethernet-switching>
        <interface-mode>access</interface-mode><vlan><members>web</members></vlan></ethernet-switching></family></unit></interface>
    <interface><name>ge-0/0/4</name><unit><name>0</name><family><inet><address><name>192.0.2.1/24</name></address></inet></family></unit></interface>
    <interface><name>ge-0/0/5</name><unit><name>0</name><family><ethernet-switching>
        <interface-mode>trunk</interface-mode><vlan><members>vmfabric-closed</members><members>multi</members></vlan></ethernet-switching></family></unit></interface>
  </interfaces>
  <vlans>
    <vlan><name>v10</name><vlan-id>10</vlan-id></vlan>
    <vlan><name>web</name><vlan-id>120</vlan-id></vlan>
    <vlan><name>vmfabric-110</name><description>x</description><vlan-id>110</vlan-id></vlan>
    <vlan><name>vmfabric-130</name><vlan-id>130</vlan-id><l3-interface>irb.130</l3-interface></vlan>
    <vlan><name>vmfabric-140</name><vlan-id>140</vlan-id></vlan>
    <vlan><name>vmfabric-closed</name><vlan-id>4094</vlan-id></vlan>
    <vlan><name>multi</name><vlan-id-list>200-201</vlan-id-list></vlan>
  </vlans>
</configuration>"""


def config() -> JunosConfig:
    return parse_config(etree.fromstring(CONFIG), physical=["ge-0/0/6"])


def test_every_mode_and_member_form_is_read() -> None:
    cfg = config()
    p1 = cfg.state("leaf1", "ge-0/0/1")
    assert p1.mode is PortMode.TRUNK
    assert p1.vlans == {10, 120, 110, 300, 301, 302, 303, 304, 305}
    assert p1.dynamic == {110, 300, 301}
    assert cfg.state("leaf1", "ge-0/0/2").mode is PortMode.OPEN  # non-ELS port-mode, all
    access = cfg.state("leaf1", "ge-0/0/3")
    assert access.mode is PortMode.ACCESS
    assert access.vlans == {120}
    assert cfg.state("leaf1", "ge-0/0/4").mode is PortMode.ACCESS  # no switching family
    assert cfg.state("leaf1", "ge-0/0/6").mode is PortMode.ACCESS  # unconfigured, present
    assert cfg.state("leaf1", "ge-0/0/9").mode is PortMode.MISSING
    assert cfg.state("leaf1", "ge-0/0/5").vlans == {200, 201}, "vlan-id-list; no placeholder"


def edit(*writes: PortWrite) -> str:
    xml: bytes = etree.tostring(render_edit(config(), writes, closed=True, closed_vlan=4094))
    return xml.decode()


def test_a_removal_splits_a_range_and_deletes_a_named_member() -> None:
    xml = edit(PortWrite("ge-0/0/1", remove=frozenset({302, 120}), record=frozenset({110})))
    assert '<members operation="delete">300-305</members>' in xml
    assert "<members>300-301</members>" in xml and "<members>303-305</members>" in xml
    assert '<members operation="delete">web</members>' in xml
    assert "<value>110</value>" in xml
    assert "<members>10</members>" not in xml, "untouched members are not sent"


def test_a_vlan_missing_from_the_database_is_created_and_own_unused_ones_deleted() -> None:
    xml = edit(
        PortWrite("ge-0/0/1", add=frozenset({150}), remove=frozenset({110}), record=frozenset())
    )
    assert "<name>vmfabric-150</name><description>" in xml and "<vlan-id>150</vlan-id>" in xml
    assert '<vlan operation="delete"><name>vmfabric-110</name></vlan>' in xml
    assert '<vlan operation="delete"><name>vmfabric-140</name></vlan>' in xml  # unused, own
    assert "vmfabric-130</name></vlan>" not in xml, "a VLAN with an l3-interface is not ours"
    assert '<apply-macro operation="delete"><name>vmfabric</name></apply-macro>' in xml


def test_an_emptied_els_trunk_gets_the_placeholder_and_loses_it_on_the_next_vlan() -> None:
    xml = edit(PortWrite("ge-0/0/1", remove=frozenset({10, 120, 110, *range(300, 306)})))
    assert "<members>vmfabric-closed</members>" in xml
    xml = edit(PortWrite("ge-0/0/5", add=frozenset({10})))
    assert '<members operation="delete">vmfabric-closed</members>' in xml


def test_a_vlan_from_a_vlan_id_list_is_refused_not_edited() -> None:
    with pytest.raises(PermanentError, match="comes from VLAN 'multi'"):
        edit(PortWrite("ge-0/0/5", remove=frozenset({200})))


def test_narrowing_an_open_port_deletes_all() -> None:
    xml = edit(PortWrite("ge-0/0/2", add=frozenset({10}), narrow=True, record=frozenset({10})))
    assert '<members operation="delete">all</members>' in xml and "<members>10</members>" in xml

"""The typed read models: one TypedDict per ``show`` view, the JSON contract.

Each field is ``Annotated`` with its description; each view's docstring ends with an
example document after ``Example:``. ``python -m vmfabric.views.doc`` renders both into
docs/json.md, and a unit test keeps that file and these models equal. Keys may be added;
keys listed here are never renamed or removed without a new major version.
"""

from __future__ import annotations

from typing import Annotated, NotRequired, TypedDict

# ---- show session ----------------------------------------------------------------------


class SessionView(TypedDict):
    """A monitoring session (a vCenter, a set of libvirt hypervisors, a static file).

    Example:
    {"name": "lab", "kind": "vcenter", "url": "https://vc.example.com/sdk",
     "state": "connected", "hosts": 2, "vms": 14, "autovlan": true,
     "allowed_vlans": "2-1000", "last_update": "2026-01-02T03:04:05Z", "last_error": null,
     "in_sync": true, "version": "8.0.2", "mode": "enforce", "warnings": [],
     "held_plans": [7]}
    """

    name: Annotated[str, "session name, as configured"]
    kind: Annotated[str, "vcenter, libvirt or static"]
    url: Annotated[str, "the manager's URL, the libvirt URIs, or the inventory file"]
    state: Annotated[str, "connecting, connected or disconnected"]
    hosts: Annotated[int, "hypervisors known of this session"]
    vms: Annotated[int, "VMs known of this session"]
    autovlan: Annotated[bool, "whether this session's VMs put VLANs on switch ports"]
    allowed_vlans: Annotated[str, "the VLANs it may add, as a range string"]
    last_update: Annotated[str | None, "last inventory or status change (ISO 8601 UTC)"]
    last_error: Annotated[str | None, "the last error, null when none"]
    in_sync: Annotated[bool, "false until a full snapshot arrived: removals wait"]
    version: Annotated[str, "the manager's version, when it says"]
    mode: Annotated[str, "enforce, or check (what it wants is only recorded)"]
    warnings: Annotated[list[str], "what vmfabric cannot serve (a PVLAN port group, say)"]
    held_plans: Annotated[list[int], "held plans concerning this session (or no session)"]


class ProvisionedPort(TypedDict):
    """VLANs that a session's VMs account for on one switch port."""

    switch: Annotated[str, "switch name"]
    port: Annotated[str, "edge port"]
    vlans: Annotated[list[int], "dynamic VLANs there that the session's VMs need"]


class SessionAutovlanView(TypedDict):
    """What one session's VMs put on the switches (``show session NAME --autovlan``).

    Example:
    {"name": "lab", "allowed_vlans": "2-1000",
     "provisioned": [{"switch": "leaf1", "port": "e1", "vlans": [110, 120]}]}
    """

    name: Annotated[str, "session name"]
    allowed_vlans: Annotated[str, "the VLANs it may add, as a range string"]
    provisioned: Annotated[list[ProvisionedPort], "per switch port, the VLANs it accounts for"]


# ---- show vm ---------------------------------------------------------------------------


class NetworkRef(TypedDict):
    """One network (port group) of a VM."""

    portgroup: Annotated[str, "port group name"]
    vlan: Annotated[int | str | None, "its VLAN, a trunk range string, or null (none known)"]


class Attachment(TypedDict):
    """A switch port that carries one of a VM's networks to its host."""

    switch: Annotated[str, "switch name"]
    port: Annotated[str, "edge port"]


class VmView(TypedDict):
    """A virtual machine: where it runs and which switch ports serve it. ``--detail``
    adds macs, attributes, guest_os, folder and cluster.

    Example:
    {"name": "web-01", "session": "lab", "host": "esx01", "power_state": "poweredOn",
     "networks": [{"portgroup": "web", "vlan": 110}],
     "attachments": [{"switch": "leaf1", "port": "e1"}],
     "ips": ["10.0.110.11"], "tags": ["env:prod", "tier:web"], "id": "vm-42",
     "carriage": "vswitch"}
    """

    name: Annotated[str, "VM name"]
    session: Annotated[str, "the session that reports it"]
    host: Annotated[str, "the hypervisor it runs on"]
    power_state: Annotated[str, "poweredOn, poweredOff or suspended"]
    networks: Annotated[list[NetworkRef], "its port groups, in the VM's order"]
    attachments: Annotated[list[Attachment], "switch ports carrying its networks"]
    ips: Annotated[list[str], "IPv4 and IPv6 addresses, sorted"]
    tags: Annotated[list[str], 'tags, "category:name" or a bare name, sorted']
    id: Annotated[str, "the manager's id (vCenter moref, libvirt UUID, static: the name)"]
    carriage: Annotated[
        str, "vswitch, or all-uplinks: the host's vSwitch NICs are unknown (a guess)"
    ]
    macs: NotRequired[Annotated[list[str], "MAC addresses, lower case (--detail)"]]
    attributes: NotRequired[Annotated[dict[str, str], "custom attributes (--detail)"]]
    guest_os: NotRequired[Annotated[str, "guest OS id, '' when unknown (--detail)"]]
    folder: NotRequired[Annotated[str, "inventory folder, '' when unknown (--detail)"]]
    cluster: NotRequired[Annotated[str, "the host's cluster, '' when unknown (--detail)"]]


# ---- show host -------------------------------------------------------------------------


class UplinkView(TypedDict):
    """A hypervisor NIC resolved to the switch port it lands on."""

    nic: Annotated[str, "hypervisor NIC"]
    switch: Annotated[str, "switch name"]
    port: Annotated[str, "switch port"]
    source: Annotated[str, "cdp, lldp or static (links: in the config)"]


class NeighborView(TypedDict):
    """What a hypervisor NIC heard over CDP or LLDP."""

    nic: Annotated[str, "hypervisor NIC"]
    protocol: Annotated[str, "cdp or lldp"]
    system_name: Annotated[str, "the neighbour's system name"]
    port_id: Annotated[str, "the neighbour's port"]
    mgmt_addr: Annotated[str, "the neighbour's management address"]
    chassis_id: Annotated[str, "the neighbour's chassis id"]
    port_descr: Annotated[str, "the neighbour's port description"]
    matched: Annotated[bool, "whether it resolved to a configured switch port"]


class HostView(TypedDict):
    """A hypervisor and where its NICs land.

    Example:
    {"name": "esx01", "session": "lab", "vms": 7,
     "uplinks": [{"nic": "vmnic0", "switch": "leaf1", "port": "e1", "source": "lldp"}],
     "neighbors": [{"nic": "vmnic0", "protocol": "lldp", "system_name": "leaf1",
                    "port_id": "e1", "mgmt_addr": "192.0.2.11", "chassis_id": "",
                    "port_descr": "", "matched": true}],
     "nics": ["vmnic0", "vmnic1"]}
    """

    name: Annotated[str, "hypervisor name"]
    session: Annotated[str, "the session that reports it"]
    vms: Annotated[int, "VMs on it"]
    uplinks: Annotated[list[UplinkView], "NICs resolved to switch ports"]
    neighbors: Annotated[list[NeighborView], "every CDP/LLDP neighbour heard, matched or not"]
    nics: Annotated[list[str], "its physical NICs"]


# ---- show interface / vlan / switch ----------------------------------------------------


class InterfaceView(TypedDict):
    """A switch port: an edge port read from its switch, or a port a host uplink names.

    Example:
    {"switch": "leaf1", "port": "e1", "hosts": ["esx01"], "vlans": [50, 110],
     "dynamic_vlans": [110], "static_vlans": [50], "mode": "trunk", "switch_state": "ok"}
    """

    switch: Annotated[str, "switch name"]
    port: Annotated[str, "port name"]
    hosts: Annotated[list[str], "hypervisors whose uplinks land here"]
    vlans: Annotated[list[int], "VLANs it carries, as last read"]
    dynamic_vlans: Annotated[list[int], "of those, the ones vmfabric added"]
    static_vlans: Annotated[list[int], "of those, the ones people configured"]
    mode: Annotated[
        str | None, "trunk, open, access or missing; null: never read (not an edge port)"
    ]
    switch_state: Annotated[
        str | None, "the switch's state (ok, unreachable, error); not ok: VLANs may be stale"
    ]


class VlanView(TypedDict):
    """One VLAN on one switch and the ports carrying it.

    Example:
    {"switch": "leaf1", "vlan": 110, "ports": ["e1", "e2"], "dynamic": true,
     "dynamic_ports": ["e1"], "static_ports": ["e2"]}
    """

    switch: Annotated[str, "switch name"]
    vlan: Annotated[int, "VLAN id"]
    ports: Annotated[list[str], "ports carrying it (with --dynamic: where vmfabric added it)"]
    dynamic: Annotated[bool, "whether vmfabric added it on at least one port"]
    dynamic_ports: Annotated[list[str], "ports where vmfabric added it"]
    static_ports: Annotated[list[str], "ports where people configured it"]


class SwitchView(TypedDict):
    """A switch and how vmfabric last found it.

    Example:
    {"name": "leaf1", "driver": "ovs", "state": "ok", "last_error": null,
     "last_apply": "2026-01-02T03:04:05Z", "pending": 0, "held_plans": [],
     "updated": "2026-01-02T03:04:06Z"}
    """

    name: Annotated[str, "switch name"]
    driver: Annotated[str, "its driver (ovs, eos, ...); '' until the runtime said"]
    state: Annotated[str, "ok, unreachable or error"]
    last_error: Annotated[str | None, "why it is not ok; null when ok"]
    last_apply: Annotated[str | None, "when a change was last confirmed (ISO 8601 UTC)"]
    pending: Annotated[int | None, "member changes waiting (prune delay, guard); null: unknown"]
    held_plans: Annotated[list[int], "its plans held for `vmfabric approve`"]
    updated: Annotated[str | None, "when this state was recorded (ISO 8601 UTC)"]


# ---- show plan / audit -----------------------------------------------------------------


class PlanPort(TypedDict):
    """One port's part of a plan."""

    port: Annotated[str, "edge port (holder)"]
    add: Annotated[list[int], "VLANs to add"]
    remove: Annotated[list[int], "VLANs to remove"]


class PlanView(TypedDict):
    """A plan: held by the guard, approved, being applied, applied, failed, expired, or
    recorded in check mode.

    Example:
    {"id": 7, "switch": "leaf1", "target": "leaf1", "status": "held",
     "created": "2026-01-02T03:04:05Z", "updated": "2026-01-02T03:04:05Z",
     "reason": "removes 60 (port, VLAN) memberships, more than max_removals 50",
     "sessions": ["lab"], "ports": [{"port": "e1", "add": [], "remove": [110, 120]}],
     "vlans": [110, 120], "plan": {"ports": []}}
    """

    id: Annotated[int, "plan id (for `vmfabric approve ID`)"]
    switch: Annotated[str, "the switch (target) it is for"]
    target: Annotated[str, "the same, named for any target kind"]
    status: Annotated[str, "held, approved, applying, applied, failed, expired or check"]
    created: Annotated[str | None, "when it was recorded (ISO 8601 UTC)"]
    updated: Annotated[str | None, "when its status last changed (ISO 8601 UTC)"]
    reason: Annotated[str, "why it is held or recorded"]
    sessions: Annotated[list[str], "sessions it concerns; empty: not known"]
    ports: Annotated[list[PlanPort], "per port, what it adds and removes"]
    vlans: Annotated[list[int], "every VLAN it adds or removes"]
    plan: Annotated[dict[str, object], "the plan as the runtime recorded it"]


class AuditView(TypedDict):
    """One change vmfabric made, or one approval. Switch-port entries (kind
    ``switchport``) also have ``switch``, ``port`` and ``vlan``.

    Example:
    {"id": 1041, "time": "2026-01-02T03:04:05.123Z", "kind": "switchport",
     "target": "leaf1", "holder": "e1", "member": "110", "action": "add",
     "reason": "VMs web-01 (port group web)", "session": "lab", "plan": 12,
     "switch": "leaf1", "port": "e1", "vlan": 110}
    """

    id: Annotated[int, "entry id, increasing"]
    time: Annotated[str, "when (ISO 8601 UTC, milliseconds)"]
    kind: Annotated[str, "switchport, addrset, vtep, ... or approval"]
    target: Annotated[str, "the switch, firewall or VTEP list"]
    holder: Annotated[str, "what holds the member (an edge port); '' for approvals"]
    member: Annotated[str, "the member as text (a VLAN, an address); approvals: the plan id"]
    action: Annotated[str, "add, remove, close, approve, ..."]
    reason: Annotated[str, "why (the VMs and port groups, or a note)"]
    session: Annotated[str, "the session whose VMs caused it, '' when not one"]
    plan: Annotated[int | None, "the plan that made the change, null when none"]
    switch: NotRequired[Annotated[str, "switch-port entries: the switch"]]
    port: NotRequired[Annotated[str, "switch-port entries: the port"]]
    vlan: NotRequired[
        Annotated[int, "switch-port entries: the VLAN (0: not one VLAN, as closing an open port)"]
    ]

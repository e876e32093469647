"""The store's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL.

Inventory rows are scoped by session, like the domain types. VLAN sets are stored as range
strings ("10,20-30"); small nested values (a host's vSwitch NIC map, a session's warnings,
a plan) are JSON. No table has a column for a secret, and none may get one.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 1

metadata = MetaData()

_NAME = 255

# one row: ("schema_version", "1"); a store written by another schema version is refused
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("name", String(_NAME), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("url", Text, nullable=False, default=""),
    Column("autovlan", Boolean, nullable=False, default=True),
    Column("allowed_vlans", Text, nullable=False, default=""),
    Column("mode", String(16), nullable=False, default="enforce"),
    Column("state", String(16), nullable=False, default="connecting"),
    Column("in_sync", Boolean, nullable=False, default=False),
    Column("error", Text, nullable=False, default=""),
    Column("version", Text, nullable=False, default=""),
    Column("warnings", JSON, nullable=False, default=list),
    Column("last_update", Float, nullable=True),
)

hosts = Table(
    "hosts",
    metadata,
    Column("session", String(_NAME), primary_key=True),
    Column("name", String(_NAME), primary_key=True),
    # {vswitch: [nic, ...]}: which physical NICs carry each virtual switch
    Column("vswitch_nics", JSON, nullable=False, default=dict),
)

host_nics = Table(
    "host_nics",
    metadata,
    Column("session", String(_NAME), primary_key=True),
    Column("host", String(_NAME), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("nic", String(_NAME), nullable=False),
    # the CDP/LLDP neighbour; protocol is NULL when the NIC heard none
    Column("protocol", String(8), nullable=True),
    Column("system_name", Text, nullable=False, default=""),
    Column("port_id", Text, nullable=False, default=""),
    Column("chassis_id", Text, nullable=False, default=""),
    Column("mgmt_addr", Text, nullable=False, default=""),
    Column("port_descr", Text, nullable=False, default=""),
)

host_uplinks = Table(
    "host_uplinks",
    metadata,
    Column("session", String(_NAME), primary_key=True),
    Column("host", String(_NAME), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("nic", String(_NAME), nullable=False),
    Column("switch", String(_NAME), nullable=False),
    Column("port", String(_NAME), nullable=False),
    Column("source", String(8), nullable=False),
)
Index("ix_host_uplinks_port", host_uplinks.c.switch, host_uplinks.c.port)

portgroups = Table(
    "portgroups",
    metadata,
    Column("session", String(_NAME), primary_key=True),
    Column("name", String(_NAME), primary_key=True),
    Column("vlans", Text, nullable=False, default=""),
    Column("vswitch", String(_NAME), nullable=False, default=""),
    Column("problem", Text, nullable=False, default=""),
)

vms = Table(
    "vms",
    metadata,
    Column("session", String(_NAME), primary_key=True),
    Column("id", String(_NAME), primary_key=True),
    Column("name", String(_NAME), nullable=False),
    Column("host", String(_NAME), nullable=False),
    Column("power", String(16), nullable=False),
)
Index("ix_vms_name", vms.c.name)

vm_networks = Table(
    "vm_networks",
    metadata,
    Column("session", String(_NAME), primary_key=True),
    Column("vm_id", String(_NAME), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("portgroup", String(_NAME), nullable=False),
)

port_states = Table(
    "port_states",
    metadata,
    Column("switch", String(_NAME), primary_key=True),
    Column("port", String(_NAME), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("vlans", Text, nullable=False, default=""),
    Column("dynamic", Text, nullable=False, default=""),
    Column("updated", Float, nullable=False, default=0.0),
)

switches = Table(
    "switches",
    metadata,
    Column("name", String(_NAME), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("error", Text, nullable=False, default=""),
    Column("updated", Float, nullable=False, default=0.0),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("switch", String(_NAME), nullable=False),
    Column("port", String(_NAME), nullable=False),
    Column("vlan", Integer, nullable=False),
    Column("action", String(8), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("session", String(_NAME), nullable=False, default=""),
)
Index("ix_audit_log_switch", audit_log.c.switch, audit_log.c.id)

plans = Table(
    "plans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("switch", String(_NAME), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    # sessions whose VMs the plan concerns; empty when the caller did not say
    Column("sessions", JSON, nullable=False, default=list),
    Column("plan", JSON, nullable=False),
)
Index("ix_plans_status", plans.c.status)

INVENTORY_TABLES = (hosts, host_nics, host_uplinks, portgroups, vms, vm_networks)

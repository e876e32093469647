"""The store's tables (SQLAlchemy Core), portable between SQLite and PostgreSQL.

Inventory rows are scoped by session, like the domain types. VLAN sets are stored as range
strings ("10,20-30"); small nested values (a host's vSwitch NIC map, a VM's addresses and
tags, a session's warnings, a plan) are JSON. No table has a column for a secret, and none
may get one.

This module is the schema of a new store. An existing store reaches it through the Alembic
migrations in ``vmfabric/store/migrations/versions``: change a table here only together with
a new migration, and move ``HEAD_REVISION`` (and ``SCHEMA_VERSION``) to it. A unit test
checks that the migrations and this module agree, on SQLite and PostgreSQL.

Target-side tables are typed for any target kind: a *target* (a switch, a firewall, a VTEP
list) holds *holders* (edge ports, address sets, flood lists) that hold *members* (VLANs,
addresses, VTEP addresses), always as text. The audit log, plans and origins use these
words; switch ports are kind ``switchport`` with holder = port and member = the VLAN.
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
    text,
)

SCHEMA_VERSION = 2
"""Written to ``meta`` as ``schema_version``: a wave-1 vmfabric (which knows only 1)
refuses a store of any other version instead of misreading it."""

HEAD_REVISION = "0002"
"""The Alembic revision this schema is; readers compare the store's against it without
importing Alembic."""

LEGACY_REVISION = "0001"
"""The revision of a wave-1 store (schema version 1, which had no ``alembic_version``)."""

metadata = MetaData()

_NAME = 255

# ("schema_version", "2"); wave 1 refuses a store whose version it does not know
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

_EMPTY_LIST = text("'[]'")
_EMPTY_TEXT = text("''")

vms = Table(
    "vms",
    metadata,
    Column("session", String(_NAME), primary_key=True),
    Column("id", String(_NAME), primary_key=True),
    Column("name", String(_NAME), nullable=False),
    Column("host", String(_NAME), nullable=False),
    Column("power", String(16), nullable=False),
    # schema 2: the port groups, in the VM's order (schema 1 had a vm_networks table)
    Column("networks", JSON, nullable=False, server_default=_EMPTY_LIST),
    # schema 2: what intents beyond autovlan match on (Vm's fields of the same names);
    # server defaults fill the rows of a store upgraded from schema 1
    Column("ips", JSON, nullable=False, server_default=_EMPTY_LIST),
    Column("macs", JSON, nullable=False, server_default=_EMPTY_LIST),
    Column("tags", JSON, nullable=False, server_default=_EMPTY_LIST),
    # [[key, value], ...] in key order
    Column("attributes", JSON, nullable=False, server_default=_EMPTY_LIST),
    Column("guest_os", Text, nullable=False, server_default=_EMPTY_TEXT),
    Column("folder", Text, nullable=False, server_default=_EMPTY_TEXT),
    Column("cluster", Text, nullable=False, server_default=_EMPTY_TEXT),
)
Index("ix_vms_name", vms.c.name)

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
    # schema 2
    Column("driver", String(64), nullable=False, server_default=_EMPTY_TEXT),
    Column("last_apply", Float, nullable=True),  # when a plan was last confirmed applied
    Column("pending", Integer, nullable=True),  # member changes waiting; NULL: not known
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("kind", String(32), nullable=False),  # switchport, addrset, vtep, approval, ...
    Column("target", String(_NAME), nullable=False),  # schema 1: switch
    Column("holder", String(_NAME), nullable=False),  # schema 1: port
    Column("member", Text, nullable=False),  # schema 1: vlan (an integer)
    Column("action", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("session", String(_NAME), nullable=False, default=""),
    Column("plan", Integer, nullable=True),  # the plan that made the change, if any
)
Index("ix_audit_log_target", audit_log.c.target, audit_log.c.id)

plans = Table(
    "plans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", String(_NAME), nullable=False),  # schema 1: switch
    Column("status", String(16), nullable=False),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    # sessions whose VMs the plan concerns; empty when the caller did not say
    Column("sessions", JSON, nullable=False, default=list),
    Column("plan", JSON, nullable=False),
    # schema 2: the audit entries an "applying" plan writes once the target confirms them
    Column("entries", JSON, nullable=True),
)
Index("ix_plans_status", plans.c.status)
Index("ix_plans_target", plans.c.target, plans.c.status)

# what vmfabric added, for drivers whose target cannot keep that record itself
origins = Table(
    "origins",
    metadata,
    Column("target", String(_NAME), primary_key=True),
    Column("holder", String(_NAME), primary_key=True),
    Column("member", String(_NAME), primary_key=True),
)

INVENTORY_TABLES = (hosts, host_nics, host_uplinks, portgroups, vms)

"""Schema version 1, as wave 1 created it (a store with no ``alembic_version`` table and
``meta.schema_version`` 1 is stamped with this revision, then upgraded).

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_NAME = 255


def _name(column: str, *, primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(column, sa.String(_NAME), nullable=False, primary_key=primary_key)


def _text(column: str) -> sa.Column[str]:
    return sa.Column(column, sa.Text(), nullable=False)


def _inventory() -> None:
    op.create_table(
        "sessions",
        _name("name", primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        _text("url"),
        sa.Column("autovlan", sa.Boolean(), nullable=False),
        _text("allowed_vlans"),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("in_sync", sa.Boolean(), nullable=False),
        _text("error"),
        _text("version"),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("last_update", sa.Float(), nullable=True),
    )
    op.create_table(
        "hosts",
        _name("session", primary_key=True),
        _name("name", primary_key=True),
        sa.Column("vswitch_nics", sa.JSON(), nullable=False),
    )
    op.create_table(
        "host_nics",
        _name("session", primary_key=True),
        _name("host", primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        _name("nic"),
        sa.Column("protocol", sa.String(8), nullable=True),
        *(_text(c) for c in ("system_name", "port_id", "chassis_id", "mgmt_addr", "port_descr")),
    )
    op.create_table(
        "host_uplinks",
        _name("session", primary_key=True),
        _name("host", primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        _name("nic"),
        _name("switch"),
        _name("port"),
        sa.Column("source", sa.String(8), nullable=False),
    )
    op.create_index("ix_host_uplinks_port", "host_uplinks", ["switch", "port"])
    op.create_table(
        "portgroups",
        _name("session", primary_key=True),
        _name("name", primary_key=True),
        _text("vlans"),
        _name("vswitch"),
        _text("problem"),
    )
    op.create_table(
        "vms",
        _name("session", primary_key=True),
        _name("id", primary_key=True),
        _name("name"),
        _name("host"),
        sa.Column("power", sa.String(16), nullable=False),
    )
    op.create_index("ix_vms_name", "vms", ["name"])
    op.create_table(
        "vm_networks",
        _name("session", primary_key=True),
        _name("vm_id", primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        _name("portgroup"),
    )


def _switch_side() -> None:
    op.create_table(
        "port_states",
        _name("switch", primary_key=True),
        _name("port", primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        _text("vlans"),
        _text("dynamic"),
        sa.Column("updated", sa.Float(), nullable=False),
    )
    op.create_table(
        "switches",
        _name("name", primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        _text("error"),
        sa.Column("updated", sa.Float(), nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float(), nullable=False),
        _name("switch"),
        _name("port"),
        sa.Column("vlan", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        _text("reason"),
        _name("session"),
    )
    op.create_index("ix_audit_log_switch", "audit_log", ["switch", "id"])
    op.create_table(
        "plans",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _name("switch"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        _text("reason"),
        sa.Column("sessions", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
    )
    op.create_index("ix_plans_status", "plans", ["status"])


def upgrade() -> None:
    meta = op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    _inventory()
    _switch_side()
    op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])


def downgrade() -> None:
    raise NotImplementedError("schema 1 is the first: to undo it, delete the store")

"""Schema version 2: audit, plans and origins typed for any target kind; VM details.

- audit_log: switch, port, vlan become target, holder, member (text); new kind (existing
  rows are "switchport") and plan (the plan that made the change).
- plans: switch becomes target; new entries (audit entries of an "applying" plan);
  wave 1's unused statuses rejected and superseded become expired.
- switches: new driver, last_apply, pending.
- vms: new networks (a JSON list: the vm_networks table is folded in and dropped), ips,
  macs, tags, attributes, guest_os, folder, cluster.
- origins: new (target, holder, member) for drivers whose target keeps no origin record.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_NAME = sa.String(255)
_EMPTY_LIST = sa.text("'[]'")
_EMPTY_TEXT = sa.text("''")


def _vms() -> None:
    with op.batch_alter_table("vms") as batch:
        for name in ("networks", "ips", "macs", "tags", "attributes"):
            batch.add_column(sa.Column(name, sa.JSON(), nullable=False, server_default=_EMPTY_LIST))
        for name in ("guest_os", "folder", "cluster"):
            batch.add_column(sa.Column(name, sa.Text(), nullable=False, server_default=_EMPTY_TEXT))


def _fold_networks() -> None:
    """Each VM's port groups (vm_networks rows, in position order) into vms.networks."""
    conn = op.get_bind()
    old = sa.table(
        "vm_networks",
        sa.column("session", _NAME),
        sa.column("vm_id", _NAME),
        sa.column("position", sa.Integer()),
        sa.column("portgroup", _NAME),
    )
    order = (old.c.session, old.c.vm_id, old.c.position)
    found: dict[tuple[str, str], list[str]] = {}
    for session, vm_id, portgroup in conn.execute(
        sa.select(old.c.session, old.c.vm_id, old.c.portgroup).order_by(*order)
    ):
        found.setdefault((session, vm_id), []).append(portgroup)
    vms = sa.table(
        "vms", sa.column("session", _NAME), sa.column("id", _NAME), sa.column("networks", sa.JSON())
    )
    stmt = (
        vms.update()
        .where((vms.c.session == sa.bindparam("k_session")) & (vms.c.id == sa.bindparam("k_id")))
        .values(networks=sa.bindparam("k_networks", type_=sa.JSON()))
    )
    params = [{"k_session": s, "k_id": i, "k_networks": n} for (s, i), n in found.items()]
    if params:
        conn.execute(stmt, params)
    op.drop_table("vm_networks")


def _switches() -> None:
    with op.batch_alter_table("switches") as batch:
        batch.add_column(
            sa.Column("driver", sa.String(64), nullable=False, server_default=_EMPTY_TEXT)
        )
        batch.add_column(sa.Column("last_apply", sa.Float(), nullable=True))
        batch.add_column(sa.Column("pending", sa.Integer(), nullable=True))


def _audit_log() -> None:
    kind = sa.Column("kind", sa.String(32), nullable=False, server_default="switchport")
    op.drop_index("ix_audit_log_switch", table_name="audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(kind)
        batch.alter_column(
            "vlan",
            new_column_name="member",
            type_=sa.Text(),
            existing_type=sa.Integer(),
            existing_nullable=False,
            postgresql_using="vlan::text",
        )
        batch.alter_column("switch", new_column_name="target", existing_type=_NAME)
        batch.alter_column("port", new_column_name="holder", existing_type=_NAME)
        batch.alter_column("action", type_=sa.String(16), existing_type=sa.String(8))
        batch.add_column(sa.Column("plan", sa.Integer(), nullable=True))
    with op.batch_alter_table("audit_log") as batch:  # every row has its kind now
        batch.alter_column("kind", server_default=None, existing_type=sa.String(32))
    op.create_index("ix_audit_log_target", "audit_log", ["target", "id"])


def _plans() -> None:
    with op.batch_alter_table("plans") as batch:
        batch.alter_column("switch", new_column_name="target", existing_type=_NAME)
        batch.add_column(sa.Column("entries", sa.JSON(), nullable=True))
    op.create_index("ix_plans_target", "plans", ["target", "status"])
    plans = sa.table("plans", sa.column("status", sa.String(16)))
    op.execute(
        plans.update()
        .where(plans.c.status.in_(["rejected", "superseded"]))
        .values(status="expired")
    )


def upgrade() -> None:
    _vms()
    _fold_networks()
    _switches()
    _audit_log()
    _plans()
    op.create_table(
        "origins",
        sa.Column("target", _NAME, primary_key=True),
        sa.Column("holder", _NAME, primary_key=True),
        sa.Column("member", _NAME, primary_key=True),
    )
    meta = sa.table("meta", sa.column("key", sa.String(64)), sa.column("value", sa.Text()))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="2"))


def downgrade() -> None:
    raise NotImplementedError(
        "schema 2 cannot go back to 1 without losing audit entries of other target kinds "
        "and origin records: restore a copy of the store taken before the upgrade"
    )

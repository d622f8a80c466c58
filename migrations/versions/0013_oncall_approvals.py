"""On-call-aware approval slots: ``approval.slot`` (the slot an approval filled) and the
partial unique index ``uq_approval_slot``: one slot of a request is filled once, whichever
replica handles the clicks (one person fills one slot: ``uq_approval_person``).

Revision ID: 0013_oncall_approvals
Revises: 0012_replication_streams
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_oncall_approvals"
down_revision = "0012_replication_streams"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slot", sa.String(), nullable=False, server_default=""))
    where = sa.text("slot != ''")
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.create_index("uq_approval_slot", ["request_id", "slot"], unique=True,
                              sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.drop_index("uq_approval_slot")
        batch_op.drop_column("slot")

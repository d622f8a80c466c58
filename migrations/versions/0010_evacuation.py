"""Region evacuations: one request moving every service of a region in waves. The
request kinds ``evacuate`` and ``return``; the ``evacuation`` table (its settings and
board) and ``evacuation_member`` (one row per service, with the child request that moves
it). Child requests point at the evacuation through ``change_request.parent_id``.

Revision ID: 0010_evacuation
Revises: 0009_failback_watch
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_evacuation"
down_revision = "0009_failback_watch"
branch_labels = None
depends_on = None

NEW_KINDS = ("EVACUATE", "RETURN")
"""Enum values are stored by name (see 0001_baseline)."""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        adds = [f"ALTER TYPE requestkind ADD VALUE IF NOT EXISTS '{kind}'" for kind in NEW_KINDS]
        if bind.dialect.server_version_info >= (12,):
            # PostgreSQL 12+ adds enum values inside a transaction block (bot.store.schema runs
            # every revision in one, under its advisory lock); the values are usable once it commits
            for add in adds:
                op.execute(add)
        else:  # older servers refuse ADD VALUE inside a transaction block
            with op.get_context().autocommit_block():
                for add in adds:
                    op.execute(add)
    op.create_table("evacuation",
                    sa.Column("request_id", sa.Integer(), nullable=False),
                    sa.Column("region", sa.String(), nullable=False),
                    sa.Column("direction", sa.String(), nullable=False),
                    sa.Column("parallelism", sa.Integer(), nullable=False),
                    sa.Column("on_failure", sa.String(), nullable=False),
                    sa.Column("board_ts", sa.String(), nullable=False),
                    sa.Column("wave", sa.Integer(), nullable=False),
                    sa.Column("aborted_by", sa.String(), nullable=False),
                    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
                    sa.ForeignKeyConstraint(["request_id"], ["change_request.id"]),
                    sa.PrimaryKeyConstraint("request_id"))
    op.create_table("evacuation_member",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("evacuation_id", sa.Integer(), nullable=False),
                    sa.Column("service", sa.String(), nullable=False),
                    sa.Column("wave", sa.Integer(), nullable=False),
                    sa.Column("position", sa.Integer(), nullable=False),
                    sa.Column("from_region", sa.String(), nullable=False),
                    sa.Column("to_region", sa.String(), nullable=False),
                    sa.Column("child_id", sa.Integer(), nullable=True),
                    sa.Column("undoes", sa.Integer(), nullable=True),
                    sa.Column("state", sa.String(), nullable=False),
                    sa.Column("note", sa.String(), nullable=False),
                    sa.Column("preflight", sa.Text(), nullable=False),
                    sa.ForeignKeyConstraint(["evacuation_id"], ["change_request.id"]),
                    sa.PrimaryKeyConstraint("id"),
                    sa.UniqueConstraint("evacuation_id", "service", name="uq_evacuation_member"))
    with op.batch_alter_table("evacuation_member", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evacuation_member_evacuation_id"), ["evacuation_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_evacuation_member_child_id"), ["child_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("evacuation_member", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evacuation_member_child_id"))
        batch_op.drop_index(batch_op.f("ix_evacuation_member_evacuation_id"))
    op.drop_table("evacuation_member")
    op.drop_table("evacuation")
    # PostgreSQL cannot drop an enum value; rows of these kinds must be gone before a downgrade

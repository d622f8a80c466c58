"""What a run records when it starts and ends, for honest drill reports and evidence:
``run.sandbox`` (it read or acted on a simulated backend), ``run.targets`` (the tier, RTO
and RPO it is judged against, as configured when it started) and ``run.proof`` (what a
drill proved: moved, not_moved or check; see ``bot.drill_proof``). Runs recorded before
this revision keep empty values: not sandbox, targets not recorded, proof not judged.

Revision ID: 0004_run_facts
Revises: 0003_one_open_change
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_run_facts"
down_revision = "0003_one_open_change"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:  # string defaults: no table copy on SQLite
        batch_op.add_column(sa.Column("sandbox", sa.Boolean(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("targets", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("proof", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("proof")
        batch_op.drop_column("targets")
        batch_op.drop_column("sandbox")

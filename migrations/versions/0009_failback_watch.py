"""The failback assistant's memory (``failback_watch``): per service failed over away from
its home region, the move it refers to, since when the home region has held healthy with
lag under the threshold, and when the failback was suggested (once per failover).

Revision ID: 0009_failback_watch
Revises: 0008_incident_command
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_failback_watch"
down_revision = "0008_incident_command"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("failback_watch",
                    sa.Column("service", sa.String(), nullable=False),
                    sa.Column("home_region", sa.String(), nullable=False),
                    sa.Column("away_region", sa.String(), nullable=False),
                    sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("moved_by_request", sa.Integer(), nullable=True),
                    sa.Column("healthy_since", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("suggested_at", sa.DateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint("service"))


def downgrade() -> None:
    op.drop_table("failback_watch")

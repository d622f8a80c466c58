"""Honest measurements and failback safety (docs/measurements.md): a run's RTO from
detection (``detected_at``, ``detection``, ``rto_from_detection_s``) and from run start
(``rto_from_run_start_s``), where its RTOs end (``rto_end``), how its RPO was found
(``rpo_method``, ``rpo_detail``); a request's explicit, audited ``allow_data_loss``. Runs
recorded before this revision keep empty values: method not recorded.

Revision ID: 0006_measurements
Revises: 0005_open_incident_service
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_measurements"
down_revision = "0005_open_incident_service"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:  # string defaults: no table copy on SQLite
        batch_op.add_column(sa.Column("detected_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("detection", sa.String(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("rto_from_detection_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("rto_from_run_start_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("rto_end", sa.String(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("rpo_method", sa.String(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("rpo_detail", sa.String(), nullable=False, server_default=""))
    with op.batch_alter_table("change_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allow_data_loss", sa.Boolean(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("change_request", schema=None) as batch_op:
        batch_op.drop_column("allow_data_loss")
    with op.batch_alter_table("run", schema=None) as batch_op:
        for name in ("rpo_detail", "rpo_method", "rto_end", "rto_from_run_start_s", "rto_from_detection_s",
                     "detection", "detected_at"):
            batch_op.drop_column(name)

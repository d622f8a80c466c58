"""Several replication streams per service: no schema change (streams are configuration,
their readings are not stored); the revision stays so that the chain reserved for the
work done side by side remains linear.

Revision ID: 0012_replication_streams
Revises: 0011_manual_steps
Create Date: 2026-11-29
"""
from __future__ import annotations

revision = "0012_replication_streams"
down_revision = "0011_manual_steps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""On-call-aware approval slots.

Revision ID: 0013_oncall_approvals
Revises: 0012_replication_streams
Create Date: 2026-11-29
"""
from __future__ import annotations

revision = "0013_oncall_approvals"
down_revision = "0012_replication_streams"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

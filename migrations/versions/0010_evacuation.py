"""Region evacuations: one request moving every service of a region in waves (filled in by the evacuation work).

Revision ID: 0010_evacuation
Revises: 0009_failback_watch
Create Date: 2026-11-29
"""
from __future__ import annotations

revision = "0010_evacuation"
down_revision = "0009_failback_watch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""Manual runbook steps: who answered Done or Failed, and when.

Revision ID: 0011_manual_steps
Revises: 0010_evacuation
Create Date: 2026-11-29
"""
from __future__ import annotations

revision = "0011_manual_steps"
down_revision = "0010_evacuation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

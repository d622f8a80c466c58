"""Manual runbook steps: who answered Done or Failed, and when (``manual_answer``, one row
per run step waiting on a person; the first answer wins by a conditional update).

Revision ID: 0011_manual_steps
Revises: 0010_evacuation
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_manual_steps"
down_revision = "0010_evacuation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("manual_answer",
                    sa.Column("run_step_id", sa.Integer(), nullable=False),
                    sa.Column("request_id", sa.Integer(), nullable=False),
                    sa.Column("run_request_id", sa.Integer(), nullable=False),
                    sa.Column("service", sa.String(), nullable=False),
                    sa.Column("position", sa.Integer(), nullable=False),
                    sa.Column("name", sa.String(), nullable=False),
                    sa.Column("text", sa.Text(), nullable=False),
                    sa.Column("allowed", sa.Text(), nullable=False),
                    sa.Column("channel", sa.String(), nullable=False),
                    sa.Column("message_ts", sa.String(), nullable=False),
                    sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("answer", sa.String(), nullable=False),
                    sa.Column("answered_by", sa.String(), nullable=False),
                    sa.Column("answered_by_name", sa.String(), nullable=False),
                    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("reason", sa.Text(), nullable=False),
                    sa.ForeignKeyConstraint(["run_step_id"], ["run_step.id"]),
                    sa.PrimaryKeyConstraint("run_step_id"))
    with op.batch_alter_table("manual_answer") as batch:
        batch.create_index(batch.f("ix_manual_answer_request_id"), ["request_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("manual_answer") as batch:
        batch.drop_index(batch.f("ix_manual_answer_request_id"))
    op.drop_table("manual_answer")

"""Incident command: who holds each role of an incident (``incident_role``: one holder per
role), the follow-ups agreed on (``follow_up``), the pinned summary's message
(``incident.summary_ts``, updated in place when the severity or a role changes), when a
missing commander was called out (``incident.commander_called_at``, once per incident) and
the postmortem review (``incident.reviewed_at``, ``incident.review_reminded_at``).

Revision ID: 0008_incident_command
Revises: 0007_alert_inbox
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_incident_command"
down_revision = "0007_alert_inbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("incident_role",
                    sa.Column("incident_id", sa.Integer(), nullable=False),
                    sa.Column("role", sa.String(), nullable=False),
                    sa.Column("user_id", sa.String(), nullable=False),
                    sa.Column("user_name", sa.String(), nullable=False),
                    sa.Column("assigned_by", sa.String(), nullable=False),
                    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
                    sa.PrimaryKeyConstraint("incident_id", "role"))
    op.create_table("follow_up",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("incident_id", sa.Integer(), nullable=False),
                    sa.Column("text", sa.Text(), nullable=False),
                    sa.Column("owner", sa.String(), nullable=False),
                    sa.Column("owner_name", sa.String(), nullable=False),
                    sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("state", sa.String(), nullable=False),
                    sa.Column("created_by", sa.String(), nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("done_by", sa.String(), nullable=False),
                    sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("tracker_key", sa.String(), nullable=False),
                    sa.Column("tracker_url", sa.String(), nullable=False),
                    sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
                    sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
                    sa.PrimaryKeyConstraint("id"))
    with op.batch_alter_table("follow_up", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_follow_up_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_follow_up_state"), ["state"], unique=False)
    with op.batch_alter_table("incident", schema=None) as batch_op:  # string default: no table copy on SQLite
        batch_op.add_column(sa.Column("summary_ts", sa.String(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("commander_called_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("review_reminded_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incident", schema=None) as batch_op:
        for name in ("review_reminded_at", "reviewed_at", "commander_called_at", "summary_ts"):
            batch_op.drop_column(name)
    op.drop_table("follow_up")
    op.drop_table("incident_role")

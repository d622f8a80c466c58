"""The outbox as the one path to the outside world: pacing and coalescing keys on outbox
items, the shared pacing slots, and one decision per status-page preview.

Revision ID: 0002_outbox_events
Revises: 0001_baseline
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_outbox_events"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pace_key", sa.String(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("coalesce_key", sa.String(), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_item_coalesce_key"), ["coalesce_key"], unique=False)
    op.create_table("pace_slot",
                    sa.Column("key", sa.String(), nullable=False),
                    sa.Column("tat", sa.Float(), nullable=False),
                    sa.PrimaryKeyConstraint("key"))
    op.create_table("preview_decision",
                    sa.Column("item_id", sa.Integer(), nullable=False),
                    sa.Column("decision", sa.String(), nullable=False),
                    sa.Column("decided_by", sa.String(), nullable=False),
                    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("item_id"))
    # the kinds of the events that were queued before (pending items keep being delivered)
    for old, new in (("slack.incident_channel", "incident.channel"), ("slack.alerts", "incident.alerts"),
                     ("slack.failover_suggestion", "incident.failover_suggestion"),
                     ("slack.statuspage_preview", "incident.statuspage_preview"),
                     ("slack.reminder", "incident.reminder"), ("slack.resolved", "incident.resolved"),
                     ("slack.unknown_alert", "alert.unknown_service"), ("slack.readiness_change", "readiness.change"),
                     ("slack.digest", "digest.weekly"), ("slack.drill", "drill.post")):
        op.execute(sa.text("UPDATE outbox_item SET kind = :new WHERE kind = :old AND state = 'PENDING'")
                   .bindparams(old=old, new=new))


def downgrade() -> None:
    op.drop_table("preview_decision")
    op.drop_table("pace_slot")
    with op.batch_alter_table("outbox_item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_item_coalesce_key"))
        batch_op.drop_column("coalesce_key")
        batch_op.drop_column("pace_key")

"""Alert intake as a pipeline (``bot.alerts.drain``): the table ``alert_inbox`` holds each alert
notification accepted over HTTP (its raw body, stored in one INSERT before the 200) until
the drain worker (``bot.alerts.drain``) has processed it; ``alert.inbox_id``, the newest
notification applied to an alert (an older one processed later by another replica cannot
set an older status); and an index on the alert table
(incident, status, signal) so that the per-batch checks of an incident (does an alert
still fire, which signal classes fire) are index lookups, whatever the incident's size.

Revision ID: 0007_alert_inbox
Revises: 0006_measurements
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_alert_inbox"
down_revision = "0006_measurements"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("alert_inbox",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("endpoint", sa.String(), nullable=False),
                    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("body", sa.Text(), nullable=False),
                    sa.Column("alerts", sa.Integer(), nullable=False),
                    sa.Column("done", sa.Integer(), nullable=False),
                    sa.Column("state", sa.String(), nullable=False),
                    sa.Column("attempts", sa.Integer(), nullable=False),
                    sa.Column("error", sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint("id"),
                    sqlite_autoincrement=True)
    with op.batch_alter_table("alert_inbox", schema=None) as batch_op:
        batch_op.create_index("ix_alert_inbox_state_id", ["state", "id"], unique=False)
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inbox_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_alert_incident_status_signal", ["incident_id", "status", "signal"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_incident_status_signal")
        batch_op.drop_column("inbox_id")
    with op.batch_alter_table("alert_inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_inbox_state_id")
    op.drop_table("alert_inbox")

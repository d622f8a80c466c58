"""One open change per service: ``change_request.parallel`` and the partial unique index
``uq_change_request_one_open`` on the service of open failovers, failbacks and ad-hoc
drills (see ``bot.store.models``). Requests that were already open side by side when this
revision runs are marked ``parallel`` (all but the oldest of a service), so the index can
be built and they stay as they are.

Revision ID: 0003_one_open_change
Revises: 0002_outbox_events
Create Date: 2026-11-30
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_one_open_change"
down_revision = "0002_outbox_events"
branch_labels = None
depends_on = None

OPEN = ("{t}.kind IN ('FAILOVER', 'FAILBACK', 'DRILL') "
        "AND {t}.state IN ('PENDING', 'APPROVED', 'RUNNING', 'INTERRUPTED') "
        "AND {t}.not_before IS NULL AND NOT {t}.parallel")


def upgrade() -> None:
    with op.batch_alter_table("change_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parallel", sa.Boolean(), nullable=False, server_default="0"))  # a string: no table copy on SQLite
    op.execute(sa.text(
        f"UPDATE change_request SET parallel = :yes WHERE id IN (SELECT c.id FROM change_request c "
        f"WHERE {OPEN.format(t='c')} AND EXISTS (SELECT 1 FROM change_request o "
        f"WHERE o.service = c.service AND o.id < c.id AND {OPEN.format(t='o')}))").bindparams(yes=True))
    where = sa.text(OPEN.format(t="change_request").replace("change_request.", ""))
    with op.batch_alter_table("change_request", schema=None) as batch_op:
        batch_op.create_index("uq_change_request_one_open", ["service"], unique=True,
                              sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    with op.batch_alter_table("change_request", schema=None) as batch_op:
        batch_op.drop_index("uq_change_request_one_open")
        batch_op.drop_column("parallel")

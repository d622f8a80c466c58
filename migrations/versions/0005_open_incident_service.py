"""One open incident per service: the table ``open_incident_service`` (service primary key,
incident_id), claimed with INSERT ... ON CONFLICT DO NOTHING when an incident opens and
released when it resolves (see ``bot.incidents.open_or_join``). Incidents open when this
revision runs claim their services, the newest first (the one alerts were grouped into).

Revision ID: 0005_open_incident_service
Revises: 0004_run_facts
Create Date: 2026-11-30
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005_open_incident_service"
down_revision = "0004_run_facts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    claims = op.create_table("open_incident_service",
                             sa.Column("service", sa.String(), nullable=False),
                             sa.Column("incident_id", sa.Integer(), nullable=False),
                             sa.PrimaryKeyConstraint("service"))
    with op.batch_alter_table("open_incident_service", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_open_incident_service_incident_id"), ["incident_id"], unique=False)
    open_ = op.get_bind().execute(sa.text(
        "SELECT id, services FROM incident WHERE status <> 'RESOLVED' ORDER BY id DESC")).all()
    claimed: dict[str, int] = {}
    for incident_id, services in open_:
        for service in json.loads(services or "[]"):
            claimed.setdefault(service, incident_id)
    if claimed:
        op.bulk_insert(claims, [{"service": s, "incident_id": i} for s, i in sorted(claimed.items())])


def downgrade() -> None:
    with op.batch_alter_table("open_incident_service", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_open_incident_service_incident_id"))
    op.drop_table("open_incident_service")

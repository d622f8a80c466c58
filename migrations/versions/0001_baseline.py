"""The schema of the first released drbot (before migrations existed): every table as
``create_all`` made it. A database made by that version is adopted at this revision
(``bot.store.schema`` stamps it) and upgraded from here.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(), nullable=False),
    sa.Column('source', sa.String(), nullable=False),
    sa.Column('service', sa.String(), nullable=True),
    sa.Column('service_hint', sa.String(), nullable=False),
    sa.Column('region', sa.String(), nullable=False),
    sa.Column('severity', sa.String(), nullable=False),
    sa.Column('signal', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('labels', sa.Text(), nullable=False),
    sa.Column('links', sa.Text(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('times_seen', sa.Integer(), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('fingerprint', name='uq_alert_fingerprint')
    )
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_service'), ['service'], unique=False)

    op.create_table('audit_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(), nullable=False),
    sa.Column('actor_name', sa.String(), nullable=False),
    sa.Column('origin', sa.String(), nullable=False),
    sa.Column('action', sa.String(), nullable=False),
    sa.Column('target', sa.String(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_entry_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_actor'), ['actor'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_at'), ['at'], unique=False)

    op.create_table('change_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('FAILOVER', 'FAILBACK', 'DRILL', 'ROLLBACK', 'RESUME', 'DRILL_SKIP', 'DRILL_POSTPONE', name='requestkind'), nullable=False),
    sa.Column('service', sa.String(), nullable=False),
    sa.Column('from_region', sa.String(), nullable=False),
    sa.Column('to_region', sa.String(), nullable=False),
    sa.Column('scenario', sa.String(), nullable=False),
    sa.Column('reason', sa.String(), nullable=False),
    sa.Column('requester', sa.String(), nullable=False),
    sa.Column('requester_name', sa.String(), nullable=False),
    sa.Column('state', sa.Enum('PENDING', 'APPROVED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK', 'DENIED', 'EXPIRED', 'CANCELLED', 'INTERRUPTED', 'ABORTED', name='requeststate'), nullable=False),
    sa.Column('required_approvals', sa.Integer(), nullable=False),
    sa.Column('break_glass', sa.Boolean(), nullable=False),
    sa.Column('justification', sa.String(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('occurrence_id', sa.Integer(), nullable=True),
    sa.Column('postpone_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('state_reason', sa.String(), nullable=False),
    sa.Column('preflight', sa.Text(), nullable=False),
    sa.Column('channel', sa.String(), nullable=False),
    sa.Column('message_ts', sa.String(), nullable=False),
    sa.Column('origin', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['change_request.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('change_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_change_request_service'), ['service'], unique=False)
        batch_op.create_index(batch_op.f('ix_change_request_state'), ['state'], unique=False)

    op.create_table('drill_occurrence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('service', sa.String(), nullable=False),
    sa.Column('schedule', sa.String(), nullable=False),
    sa.Column('planned_for', sa.DateTime(timezone=True), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.Enum('PLANNED', 'STARTED', 'MISSED', 'SKIPPED', name='occurrencestate'), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.String(), nullable=False),
    sa.Column('thread_ts', sa.String(), nullable=False),
    sa.Column('announced', sa.String(), nullable=False),
    sa.Column('note', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('service', 'schedule', 'planned_for', name='uq_drill_occurrence')
    )
    with op.batch_alter_table('drill_occurrence', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_drill_occurrence_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_drill_occurrence_service'), ['service'], unique=False)
        batch_op.create_index(batch_op.f('ix_drill_occurrence_starts_at'), ['starts_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_drill_occurrence_state'), ['state'], unique=False)

    op.create_table('incident',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(), nullable=False),
    sa.Column('severity', sa.String(), nullable=False),
    sa.Column('status', sa.Enum('INVESTIGATING', 'IDENTIFIED', 'MONITORING', 'RESOLVED', name='incidentstatus'), nullable=False),
    sa.Column('services', sa.String(), nullable=False),
    sa.Column('channel_id', sa.String(), nullable=False),
    sa.Column('channel_name', sa.String(), nullable=False),
    sa.Column('opened_by', sa.String(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('mitigated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_update_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('statuspage_id', sa.String(), nullable=False),
    sa.Column('failover_suggested', sa.Boolean(), nullable=False),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('alerts_ts', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incident_status'), ['status'], unique=False)

    op.create_table('lag_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('service', sa.String(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('lag_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lag_record_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_lag_record_service'), ['service'], unique=False)

    op.create_table('outbox_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('stream', sa.String(), nullable=False),
    sa.Column('idempotency_key', sa.String(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('state', sa.Enum('PENDING', 'DELIVERED', 'DEAD', 'SKIPPED', name='outboxstate'), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('claimed_by', sa.String(), nullable=False),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key', name='uq_outbox_key')
    )
    with op.batch_alter_table('outbox_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_item_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_item_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_item_stream'), ['stream'], unique=False)

    op.create_table('service_state',
    sa.Column('service', sa.String(), nullable=False),
    sa.Column('active_region', sa.String(), nullable=False),
    sa.Column('standby_region', sa.String(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('changed_by_request', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('service')
    )
    op.create_table('timeline_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('incident_id', sa.Integer(), nullable=True),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('service', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('actor', sa.String(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('timeline_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_timeline_event_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_timeline_event_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_timeline_event_request_id'), ['request_id'], unique=False)

    op.create_table('watch_state',
    sa.Column('service', sa.String(), nullable=False),
    sa.Column('verdict', sa.String(), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lag_band', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('service')
    )
    op.create_table('approval',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('approver', sa.String(), nullable=False),
    sa.Column('approver_name', sa.String(), nullable=False),
    sa.Column('approve', sa.Boolean(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['change_request.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'approver', name='uq_approval_person')
    )
    with op.batch_alter_table('approval', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approval_request_id'), ['request_id'], unique=False)

    op.create_table('run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('FAILOVER', 'FAILBACK', 'DRILL', 'ROLLBACK', 'RESUME', 'DRILL_SKIP', 'DRILL_POSTPONE', name='requestkind'), nullable=False),
    sa.Column('service', sa.String(), nullable=False),
    sa.Column('state', sa.Enum('PENDING', 'APPROVED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK', 'DENIED', 'EXPIRED', 'CANCELLED', 'INTERRUPTED', 'ABORTED', name='requeststate'), nullable=False),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('measured_rto_s', sa.Float(), nullable=True),
    sa.Column('measured_rpo_s', sa.Float(), nullable=True),
    sa.Column('passed', sa.Boolean(), nullable=True),
    sa.Column('error', sa.String(), nullable=False),
    sa.Column('progress_ts', sa.String(), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['change_request.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_run_service'), ['service'], unique=False)
        batch_op.create_index(batch_op.f('ix_run_state'), ['state'], unique=False)

    op.create_table('run_step',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('action', sa.String(), nullable=False),
    sa.Column('rollback', sa.Boolean(), nullable=False),
    sa.Column('state', sa.Enum('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'SKIPPED', name='stepstate'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('output', sa.Text(), nullable=False),
    sa.Column('error', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'position', 'attempt', name='uq_step_attempt')
    )
    with op.batch_alter_table('run_step', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_run_step_run_id'), ['run_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('run_step', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_step_run_id'))

    op.drop_table('run_step')
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_state'))
        batch_op.drop_index(batch_op.f('ix_run_service'))
        batch_op.drop_index(batch_op.f('ix_run_request_id'))

    op.drop_table('run')
    with op.batch_alter_table('approval', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approval_request_id'))

    op.drop_table('approval')
    op.drop_table('watch_state')
    with op.batch_alter_table('timeline_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_timeline_event_request_id'))
        batch_op.drop_index(batch_op.f('ix_timeline_event_incident_id'))
        batch_op.drop_index(batch_op.f('ix_timeline_event_at'))

    op.drop_table('timeline_event')
    op.drop_table('service_state')
    with op.batch_alter_table('outbox_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_item_stream'))
        batch_op.drop_index(batch_op.f('ix_outbox_item_state'))
        batch_op.drop_index(batch_op.f('ix_outbox_item_next_attempt_at'))

    op.drop_table('outbox_item')
    with op.batch_alter_table('lag_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lag_record_service'))
        batch_op.drop_index(batch_op.f('ix_lag_record_at'))

    op.drop_table('lag_record')
    with op.batch_alter_table('incident', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_incident_status'))

    op.drop_table('incident')
    with op.batch_alter_table('drill_occurrence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_drill_occurrence_state'))
        batch_op.drop_index(batch_op.f('ix_drill_occurrence_starts_at'))
        batch_op.drop_index(batch_op.f('ix_drill_occurrence_service'))
        batch_op.drop_index(batch_op.f('ix_drill_occurrence_request_id'))

    op.drop_table('drill_occurrence')
    with op.batch_alter_table('change_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_change_request_state'))
        batch_op.drop_index(batch_op.f('ix_change_request_service'))

    op.drop_table('change_request')
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_entry_at'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_actor'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_action'))

    op.drop_table('audit_entry')
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_service'))
        batch_op.drop_index(batch_op.f('ix_alert_incident_id'))

    op.drop_table('alert')

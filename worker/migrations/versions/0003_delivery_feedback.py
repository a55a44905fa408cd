"""provider message ids, paused campaigns, delivery events (bounces, complaints, deliveries)

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('provider_message_id', sa.String(length=200), nullable=True))
        batch.create_index('ix_deliveries_provider_message_id', ['provider_message_id'])
        batch.create_index('ix_deliveries_message_id', ['message_id'])
    with op.batch_alter_table('campaigns') as batch:
        batch.add_column(sa.Column('status_reason', sa.Text(), nullable=True))
    op.create_table(
        'delivery_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('event_key', sa.String(length=300), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('subscriber_id', sa.Integer(), nullable=True),
        sa.Column('delivery_id', sa.Integer(), nullable=True),
        sa.Column('campaign_id', sa.Integer(), nullable=True),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id']),
        sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id']),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('event_key'),
    )
    op.create_index('ix_delivery_events_kind', 'delivery_events', ['kind'])
    op.create_index('ix_delivery_events_subscriber_id', 'delivery_events', ['subscriber_id'])
    op.create_index('ix_delivery_events_campaign_id', 'delivery_events', ['campaign_id'])


def downgrade() -> None:
    op.drop_table('delivery_events')
    with op.batch_alter_table('campaigns') as batch:
        batch.drop_column('status_reason')
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_index('ix_deliveries_message_id')
        batch.drop_index('ix_deliveries_provider_message_id')
        batch.drop_column('provider_message_id')

"""double opt-in columns on subscribers; erasures (keyed hashes of erased addresses)

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=20), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('confirm_nonce', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('confirm_sent_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('welcome_sent_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('erasures',
                    sa.Column('key_hash', sa.String(length=64), nullable=False),
                    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('key_hash'))


def downgrade() -> None:
    op.drop_table('erasures')
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        for column in ('welcome_sent_at', 'confirm_sent_at', 'confirm_nonce', 'confirmed_at', 'source'):
            batch_op.drop_column(column)

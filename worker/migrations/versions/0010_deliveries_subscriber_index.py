"""deliveries: an index on subscriber_id, for everything that looks up one person's deliveries

Erasing an address (`newsletter subscribers erase`) updates that subscriber's deliveries twice,
and the trigger of 0008 that refuses to delete a subscriber deliveries refer to looks for one.
(campaign_id, subscriber_id) cannot answer "this subscriber's rows" directly (PostgreSQL before
18 has no skip scan): each was a walk of that whole index, 10 ms per million deliveries
(measured on this machine); a year of weekly episodes to 100,000 people is five million rows,
so 50 ms twice per erased address, 17 minutes for 10,000 erasures. With this index: 0.1 ms.
Publishing writes one more index entry a row: a million rows took 3.6-3.9 s against 3.1 s
without it (benchmarks/million.py, same hour).

Plain CREATE INDEX (inside the migration's transaction, as 0009) blocks writes to `deliveries`
while it builds: about a second per million rows; run it between sends.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NAME = "ix_deliveries_subscriber_id"


def upgrade() -> None:
    op.create_index(NAME, "deliveries", ["subscriber_id"])


def downgrade() -> None:
    op.drop_index(NAME, table_name="deliveries")

"""deliveries: an index on subscriber_id, for everything that looks up one person's deliveries

Erasing an address (`newsletter subscribers erase`) updates that subscriber's deliveries twice,
and the trigger of 0008 that refuses to delete a subscriber deliveries refer to looks for one.
(campaign_id, subscriber_id) cannot answer "this subscriber's rows" (PostgreSQL before 18 has
no skip scan), so each was a scan of every delivery ever made: a year of weekly episodes to
100,000 people is five million rows, about a second a scan, twice per erased address. Now it
is a few index probes. Publishing writes one more index entry a row (see the README's
"A million subscribers" for what that costs).

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

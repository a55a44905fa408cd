"""deliveries: index claim_token, message_id and provider_message_id only where they are set

All three are NULL when a campaign's rows are written (a million at a time) and are only ever
looked up by equality, which implies NOT NULL, so partial indexes serve every query while
publishing writes three index entries fewer per row.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = {
    "ix_deliveries_claim": "claim_token",
    "ix_deliveries_message_id": "message_id",
    "ix_deliveries_provider_message_id": "provider_message_id",
}


def upgrade() -> None:
    for name, column in COLUMNS.items():
        op.drop_index(name, table_name="deliveries")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "deliveries", [column], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, column in COLUMNS.items():
        op.drop_index(name, table_name="deliveries")
        op.create_index(name, "deliveries", [column])

"""deliveries (PostgreSQL): no per-row foreign-key checks on insert; deleting a referenced
subscriber or campaign is refused by a trigger instead

Publishing writes one delivery row per subscriber in one INSERT ... SELECT. PostgreSQL checks
each foreign key with a trigger per inserted row (a `SELECT ... FOR KEY SHARE` of the
referenced row, which also dirties it): for a million rows, two million such checks, about half
of the publishing time. The rows are only ever made by that INSERT ... SELECT, from the
subscribers table itself, for a campaign created or locked in the same transaction, so the
check can never fail there. What the keys also did, refuse to delete (or renumber) a
subscriber or campaign that deliveries point to, is kept by the `nl_keep_referenced` triggers
below, which cost nothing on insert; the application never deletes either (an erased
subscriber stays as a tombstone, `worker.privacy`). SQLite keeps its keys: one writer, a
B-tree look-up per row, and dropping them there would mean rebuilding the table.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEYS = {
    "deliveries_campaign_id_fkey": ("campaign_id", "campaigns"),
    "deliveries_subscriber_id_fkey": ("subscriber_id", "subscribers"),
}

# TG_ARGV[0]: the deliveries column that points at the table the trigger is on.
PG_FUNCTION = """
CREATE FUNCTION nl_keep_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    referenced boolean;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NEW;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM deliveries WHERE %I = $1)', TG_ARGV[0])
        INTO referenced USING OLD.id;
    IF referenced THEN
        RAISE EXCEPTION 'deliveries still refer to %.id %', TG_TABLE_NAME, OLD.id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$
"""


def _trigger(table: str, column: str) -> str:
    return (
        f"CREATE TRIGGER nl_keep_referenced BEFORE DELETE OR UPDATE OF id ON {table} FOR EACH ROW "
        f"EXECUTE FUNCTION nl_keep_referenced('{column}')"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(PG_FUNCTION)
    for name, (column, table) in KEYS.items():
        op.drop_constraint(name, "deliveries", type_="foreignkey")
        op.execute(_trigger(table, column))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (column, table) in KEYS.items():
        op.execute(f"DROP TRIGGER nl_keep_referenced ON {table}")
        op.create_foreign_key(name, "deliveries", table, [column], ["id"])
    op.execute("DROP FUNCTION nl_keep_referenced()")

"""campaign_counts: deliveries per (campaign, status), kept by triggers; an in-flight index

`newsletter status` and GET /campaigns/{id} read these few rows instead of counting a
campaign's deliveries per request (a million rows: ~0.3 s, every time). Triggers keep them, so
every writer (claims, progress, sweeps, resends, future code) is counted alike. On PostgreSQL
the triggers are per statement, over transition tables, and each backend adds to its own `slot`
row so concurrent workers never wait for one another's count update; a reader sums the slots.
On SQLite, row triggers (one writer at a time, in-process).

`ix_deliveries_in_flight` (claimed or sending rows only) keeps the sweeper's search for
orphaned rows as small as the work in flight, however many finished campaigns there are.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SLOTS = 16  # PostgreSQL: count rows per (campaign, status); a backend writes slot pid % SLOTS

PG_FUNCTION = f"""
CREATE FUNCTION nl_count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO campaign_counts AS c (campaign_id, status, slot, n)
        SELECT campaign_id, status, pg_backend_pid() % {SLOTS}, count(*) FROM new_rows GROUP BY 1, 2
        ON CONFLICT (campaign_id, status, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO campaign_counts AS c (campaign_id, status, slot, n)
        SELECT campaign_id, status, pg_backend_pid() % {SLOTS}, -count(*) FROM old_rows GROUP BY 1, 2
        ON CONFLICT (campaign_id, status, slot) DO UPDATE SET n = c.n + excluded.n;
    ELSE  -- one upsert for the net change; rows whose status stayed add nothing
        INSERT INTO campaign_counts AS c (campaign_id, status, slot, n)
        SELECT campaign_id, status, pg_backend_pid() % {SLOTS}, sum(d) FROM (
            SELECT campaign_id, status, -1 AS d FROM old_rows
            UNION ALL SELECT campaign_id, status, 1 FROM new_rows) AS t
        GROUP BY 1, 2 HAVING sum(d) <> 0
        ON CONFLICT (campaign_id, status, slot) DO UPDATE SET n = c.n + excluded.n;
    END IF;
    RETURN NULL;
END $$
"""
PG_TRIGGERS = [
    "CREATE TRIGGER nl_count_insert AFTER INSERT ON deliveries REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION nl_count_deliveries()",
    "CREATE TRIGGER nl_count_update AFTER UPDATE ON deliveries REFERENCING OLD TABLE AS old_rows "
    "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION nl_count_deliveries()",
    "CREATE TRIGGER nl_count_delete AFTER DELETE ON deliveries REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION nl_count_deliveries()",
]


def _lite_add(row: str, sign: str) -> str:
    return (
        f"INSERT OR IGNORE INTO campaign_counts (campaign_id, status, slot, n) VALUES ({row}.campaign_id, {row}.status, 0, 0); "
        f"UPDATE campaign_counts SET n = n {sign} 1 WHERE campaign_id = {row}.campaign_id AND status = {row}.status "
        "AND slot = 0;"
    )


LITE_TRIGGERS = [
    f"CREATE TRIGGER nl_count_insert AFTER INSERT ON deliveries BEGIN {_lite_add('NEW', '+')} END",
    "CREATE TRIGGER nl_count_update AFTER UPDATE OF status, campaign_id ON deliveries "
    f"WHEN OLD.status IS NOT NEW.status OR OLD.campaign_id IS NOT NEW.campaign_id "
    f"BEGIN {_lite_add('OLD', '-')} {_lite_add('NEW', '+')} END",
    f"CREATE TRIGGER nl_count_delete AFTER DELETE ON deliveries BEGIN {_lite_add('OLD', '-')} END",
]


def upgrade() -> None:
    op.create_table(
        "campaign_counts",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "status", "slot"),
    )
    op.execute(
        "INSERT INTO campaign_counts (campaign_id, status, slot, n) "
        "SELECT campaign_id, status, 0, count(*) FROM deliveries GROUP BY campaign_id, status"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in LITE_TRIGGERS:
            op.execute(statement)
    op.create_index(
        "ix_deliveries_in_flight",
        "deliveries",
        ["claim_token"],
        postgresql_where=sa.text("status IN ('claimed', 'sending')"),
        sqlite_where=sa.text("status IN ('claimed', 'sending')"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_in_flight", table_name="deliveries")
    for name in ("nl_count_insert", "nl_count_update", "nl_count_delete"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON deliveries")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS nl_count_deliveries()")
    op.drop_table("campaign_counts")

#!/usr/bin/env python3
"""What a claim costs as a big campaign is sent, and what publishing costs, on PostgreSQL.

    .venv/bin/python benchmarks/claims.py                     # this checkout, N = 1,000,000
    .venv/bin/python benchmarks/claims.py --root /path/to/older/checkout --n 200000

Seeds N subscribers in a schema of its own and publishes `--publishes` campaigns of N rows
(each timed, after a CHECKPOINT); then, on the first campaign: a 500-row `claim_batch` (wall
time, the rows put back after each, median of `--repeat`) and `EXPLAIN (ANALYZE, BUFFERS)` of
its UPDATE (rolled back, median of 5; "select" is the part that finds the rows), at the start,
and after 50 % and 90 % of the rows are set to 'sent' in bulk, each before and after VACUUM
(before: the index entries of the rows just sent are dead but not yet removed). 300 retry rows
sit behind the sent ones from then on, a third of them due. Prints the figures and writes
benchmarks/results/claims-<label>.json. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
BATCH = 500
# rows back as they were: retry rows keep their next_attempt_at
PUT_BACK = (
    "UPDATE deliveries SET status = CASE WHEN next_attempt_at IS NULL THEN 'queued' ELSE 'retry' END, "
    "claim_token = NULL WHERE claim_token = :t"
)


def main() -> int:  # noqa: PLR0915 - one measurement, start to end
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose worker package is measured")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--publishes", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--label", default="run")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    sys.path.insert(0, args.root)

    import sqlalchemy as sa

    schema = f"nl_claims_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    var = Path(f"/tmp/bench-claims-{schema}")
    var.mkdir()
    os.environ.update(
        {
            "NEWSLETTER_SECRET_KEY": "bench",
            "NEWSLETTER_BASE_URL": "https://news.example.org",
            "NEWSLETTER_FROM_ADDR": "The Roundup <newsletter@news.example.org>",
            "NEWSLETTER_LIST_ID": "roundup.news.example.org",
            "NEWSLETTER_DATABASE_URL": f"{PG}?options=-csearch_path%3D{schema}",
            "NEWSLETTER_BROKER_URL": REDIS,
            "NEWSLETTER_VAR_DIR": str(var),
        }
    )
    import worker
    from worker.db import dispose_engines, migrate, session_factory, session_scope
    from worker.episodes import load_episode
    from worker.ledger import claim_batch
    from worker.publish import create_campaign
    from worker.settings import get_settings

    print("measuring", worker.__file__, flush=True)
    out: dict = {"label": args.label, "root": args.root, "n": args.n}
    try:
        settings = get_settings()
        migrate(settings)
        with session_scope(settings) as s:
            s.execute(
                sa.text(
                    "INSERT INTO subscribers (email, email_key, name, status, status_reason, created_at, updated_at) "
                    "SELECT 'reader' || g || '@example.org', 'reader' || g || '@example.org', 'Reader ' || g, "
                    "'active', '', now(), now() FROM generate_series(1, :n) g"
                ),
                {"n": args.n},
            )
        with admin.connect() as c:
            c.exec_driver_sql(f"VACUUM ANALYZE {schema}.subscribers")
        base = load_episode(Path(args.root) / "tests/fixtures/episodes/sample-episode.txt", settings.tz)
        publish_s, cids = [], []
        for k in range(args.publishes):
            episode = dataclasses.replace(base, guid=f"urn:bench:{k}", slug=f"bench-{k}")
            with admin.connect() as c:
                c.exec_driver_sql("CHECKPOINT")
            t0 = time.perf_counter()
            with session_scope(settings) as s:
                cids.append(create_campaign(s, episode, settings).campaign.id)
            publish_s.append(time.perf_counter() - t0)
            print(f"publish {k}: {publish_s[-1]:.2f} s", flush=True)
        out["publish_s"] = publish_s
        with admin.connect() as c:
            sizes = c.exec_driver_sql(
                "SELECT indexrelname, pg_relation_size(indexrelid) / 1048576.0 FROM pg_stat_user_indexes "
                f"WHERE schemaname = '{schema}' AND relname = 'deliveries' ORDER BY 1"
            ).all()
        out["index_mb"] = {name: round(float(mb), 1) for name, mb in sizes}
        print(f"index MB after {args.publishes} publishes:", out["index_mb"], flush=True)
        cid = cids[0]
        with session_scope(settings) as s:
            s.execute(sa.text("UPDATE campaigns SET status = 'sending' WHERE id = :c"), {"c": cid})
            lo = s.scalar(sa.text("SELECT min(id) FROM deliveries WHERE campaign_id = :c"), {"c": cid})
        with admin.connect() as c:
            c.exec_driver_sql(f"VACUUM ANALYZE {schema}.deliveries")
        new_session = session_factory(settings)

        def one_claim() -> float:
            """One claim_batch of BATCH rows, in ms; the rows are put back afterwards."""
            token = f"bench-{uuid.uuid4().hex[:8]}"
            with new_session() as s:
                t0 = time.perf_counter()
                rows = claim_batch(s, cid, token, BATCH, "bench")
                ms = (time.perf_counter() - t0) * 1000
                assert len(rows) == BATCH, len(rows)
                s.execute(sa.text(PUT_BACK), {"t": token})
                s.execute(sa.text("DELETE FROM claims WHERE token = :t"), {"t": token})
                s.commit()
            return ms

        def explain() -> tuple[float, float, str]:
            """EXPLAIN (ANALYZE, BUFFERS) of claim_batch's UPDATE, rolled back: (whole statement
            ms, its row-finding subquery ms, the plan)."""
            captured: list = []

            def grab(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
                if statement.startswith("UPDATE deliveries SET status") and "claim_token" in statement:
                    captured.append((statement, parameters))

            sa.event.listen(sa.Engine, "before_cursor_execute", grab)
            try:
                with new_session() as s:
                    claim_batch(s, cid, "bench-capture", BATCH, "bench")
                    s.execute(sa.text(PUT_BACK), {"t": "bench-capture"})
                    s.commit()
            finally:
                sa.event.remove(sa.Engine, "before_cursor_execute", grab)
            statement, params = captured[0]
            raw = new_session().connection().engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                plan = "\n".join(r[0] for r in cur.fetchall())
                raw.rollback()
            finally:
                raw.close()
            total = float(plan.rsplit("Execution Time:", 1)[1].split()[0])
            finding = next(line for line in plan.splitlines() if 'Subquery Scan on "ANY_subquery"' in line)
            return total, float(finding.split("actual time=")[1].split("..")[1].split()[0]), plan

        def measure(tag: str) -> None:
            first = one_claim()  # kills the index entries of rows now dead: slower
            walls = [one_claim() for _ in range(args.repeat)]
            plans = [explain() for _ in range(5)]
            out[tag] = {
                "first_claim_ms": first,
                "claim_ms": walls,
                "update_ms": [p[0] for p in plans],
                "select_ms": [p[1] for p in plans],
                "plan": plans[-1][2],
            }
            print(
                f"{tag}: claim_batch first {first:.1f} ms, median {statistics.median(walls):.1f} ms; "
                f"UPDATE {statistics.median(p[0] for p in plans):.2f} ms, "
                f"of it finding the rows {statistics.median(p[1] for p in plans):.2f} ms",
                flush=True,
            )

        def advance(fraction: float) -> None:
            upto = lo + int(fraction * args.n)
            with session_scope(settings) as s:
                s.execute(
                    sa.text(
                        "UPDATE deliveries SET status = 'sent', sent_at = now() "
                        "WHERE campaign_id = :c AND id < :u AND status = 'queued'"
                    ),
                    {"c": cid, "u": upto},
                )
                s.execute(
                    sa.text(
                        "UPDATE deliveries SET status = 'retry', attempts = 1, next_attempt_at = now() + "
                        "CASE WHEN id % 3 = 0 THEN interval '-1 minute' ELSE interval '1 hour' END "
                        "WHERE campaign_id = :c AND id >= :u - 3000 AND id < :u AND id % 10 = 0"
                    ),
                    {"c": cid, "u": upto},
                )

        measure("start")
        for fraction in (0.5, 0.9):
            advance(fraction)
            measure(f"{fraction:.0%} sent, not vacuumed")
            with admin.connect() as c:
                c.exec_driver_sql(f"VACUUM ANALYZE {schema}.deliveries")
            measure(f"{fraction:.0%} sent, vacuumed")
    finally:
        dispose_engines()
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
    results = Path(args.out)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"claims-{args.label}.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

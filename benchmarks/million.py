#!/usr/bin/env python3
"""A million subscribers on PostgreSQL: publish, status during the send, sweeper cost, memory.

    .venv/bin/python benchmarks/million.py                  # N = 1,000,000, 90 s of sending
    .venv/bin/python benchmarks/million.py --n 200000 --send-seconds 30

Seeds N subscribers in a schema of its own, publishes the sample episode (render + N ledger
rows, timed), starts `celery -A worker worker --concurrency 2` against Postfix's smtp-sink and,
while it sends: times `ledger.status()` (what `newsletter status --json` prints) and
GET /campaigns/{id} (in-process ASGI client), times the sweep, samples the worker processes'
RSS, and times a claim at the start and at the end; halfway, it adds finished campaigns with as
many delivery rows again, to show the sweep does not grow with them. Prints a table (and
writes benchmarks/results/million.{json,md}); it is a measurement, not a test: the machine's
other load shows in it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.campaign import PG, REDIS, Sink, bench_env, proc_tree, seed_subscribers, stop, wait_ready  # noqa: E402

EPISODE = ROOT / "tests" / "fixtures" / "episodes" / "sample-episode.txt"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def timed(fn, repeat: int = 5) -> float:  # noqa: ANN001
    """Median wall time of `fn()` in milliseconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def add_finished_campaigns(session, rows: int, campaigns: int) -> None:  # noqa: ANN001
    """Earlier campaigns, done, each with rows/campaigns 'sent' deliveries (set-up, not timed)."""
    from sqlalchemy import text

    per = rows // campaigns
    for k in range(campaigns):
        guid = f"urn:bench:finished:{k}:{uuid.uuid4().hex[:6]}"
        episode_id = session.execute(
            text(
                "INSERT INTO episodes (guid, slug, title, published_on, source, data, created_at) "
                "VALUES (:g, :g, 'finished', now(), '', '{}', now()) RETURNING id"
            ),
            {"g": guid},
        ).scalar()
        cid = session.execute(
            text(
                "INSERT INTO campaigns (episode_id, status, subject, html, text, nonce, as_of, total, created_at, "
                "started_at, finished_at) VALUES (:e, 'done', 's', '', '', 'n', now(), :n, now(), now(), now()) "
                "RETURNING id"
            ),
            {"e": episode_id, "n": per},
        ).scalar()
        session.execute(
            text(
                "INSERT INTO deliveries (campaign_id, subscriber_id, email, name, status, attempts, message_id, "
                "sent_at, updated_at) SELECT :c, id, email, name, 'sent', 1, 'm' || id, now(), now() "
                "FROM subscribers ORDER BY id LIMIT :n"
            ),
            {"c": cid, "n": per},
        )
        session.commit()


def main() -> int:  # noqa: PLR0915 - one measurement, start to end
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--send-seconds", type=float, default=90.0, help="how long to measure during the send")
    parser.add_argument("--finished", type=int, default=2, help="finished campaigns added halfway (N rows in all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    import redis
    import sqlalchemy as sa

    schema = f"nl_million_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    redis.Redis.from_url(REDIS).flushdb()
    sink = Sink()
    env = bench_env(schema, sink.port)
    env["NEWSLETTER_STAFF_TOKEN"] = "bench-staff-token"
    os.environ.update({k: v for k, v in env.items() if k.startswith("NEWSLETTER_")})
    from fastapi.testclient import TestClient

    from worker.db import dispose_engines, migrate, session_scope
    from worker.episodes import load_episode
    from worker.ledger import claim_batch, counts, release_claim, status, sweep
    from worker.publish import create_campaign, start
    from worker.settings import get_settings, reset_settings
    from worker.web import create_app

    reset_settings()
    dispose_engines()
    settings = get_settings()
    migrate(settings)
    workdir = Path(tempfile.mkdtemp(prefix="bench-million-"))
    worker = None
    figures: dict = {"n": args.n, "cores": os.cpu_count()}
    try:
        seed_subscribers(settings, args.n)
        with admin.connect() as c:
            c.exec_driver_sql(f"ANALYZE {schema}.subscribers")
        print(f"seeded {args.n:,} subscribers; publishing …", flush=True)
        episode = load_episode(EPISODE, settings.tz)
        t0 = time.perf_counter()
        with session_scope(settings) as s:
            cid = create_campaign(s, episode, settings).campaign.id
        figures["publish_seconds"] = round(time.perf_counter() - t0, 2)
        print(f"  publish (render + {args.n:,} rows): {figures['publish_seconds']} s", flush=True)

        log = workdir / "worker.log"
        with open(log, "wb") as fh:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "worker", "worker", "--concurrency", "2", "--pool", "prefork",
                 "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_ready(log, worker)
        start(cid)
        client = TestClient(create_app(settings))
        auth = {"Authorization": "Bearer bench-staff-token"}

        def status_call() -> dict:
            with session_scope(settings) as s:
                return status(s, cid).as_dict()

        def web_call() -> None:
            r = client.get(f"/campaigns/{cid}", headers=auth)
            assert r.status_code == 200, r.text

        def counts_call() -> None:
            with session_scope(settings) as s:
                counts(s, cid)

        def sweep_call() -> None:
            with session_scope(settings) as s:
                sweep(s, settings)

        def claim_ms() -> float:
            """A worker's claim (`batch_size` rows) in ms, median of 5; the rows go straight back."""
            times = []
            for _ in range(5):
                with session_scope(settings) as s:
                    t0 = time.perf_counter()
                    claim_batch(s, cid, "bench-claim", settings.batch_size, "bench")
                    times.append((time.perf_counter() - t0) * 1000)
                    release_claim(s, "bench-claim")
            return statistics.median(times)

        figures["claim_ms_first"] = round(claim_ms(), 1)

        samples = []
        added_finished = False
        t_send = time.perf_counter()
        paused = 0.0  # time spent adding finished campaigns: not part of the measured send
        while (elapsed := time.perf_counter() - t_send - paused) < args.send_seconds:
            if not added_finished and elapsed >= args.send_seconds / 2 and args.finished:
                t_add = time.perf_counter()
                with session_scope(settings) as s:
                    add_finished_campaigns(s, args.n, args.finished)
                with admin.connect() as c:
                    c.exec_driver_sql(f"ANALYZE {schema}.deliveries")
                added_finished = True
                paused += time.perf_counter() - t_add
                print(f"  added {args.finished} finished campaigns, {args.n:,} delivery rows", flush=True)
                continue
            st = status_call()
            sample = {
                "t": round(elapsed, 1),
                "sent": st["sent"],
                "counts_ms": round(timed(counts_call), 1),
                "status_ms": round(timed(status_call), 1),
                "web_ms": round(timed(web_call), 1),
                "sweep_ms": round(timed(sweep_call, 3), 1),
                "finished_rows": args.n if added_finished else 0,
                "worker_rss_mb": [round(rss_mb(p), 1) for p in proc_tree(worker.pid)[1:]],
            }
            samples.append(sample)
            print(f"  {sample}", flush=True)
            time.sleep(2)
        figures["samples"] = samples
        figures["claim_ms_last"] = round(claim_ms(), 1)
    finally:
        if worker is not None:
            stop(worker)
        sink.stop()
        dispose_engines()
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()

    before = [s for s in samples if not s["finished_rows"]]
    after = [s for s in samples if s["finished_rows"]]
    rss_first, rss_last = samples[0]["worker_rss_mb"], samples[-1]["worker_rss_mb"]
    sent = samples[-1]["sent"]
    summary = {
        "publish_s": figures["publish_seconds"],
        "counts_ms_median": statistics.median(s["counts_ms"] for s in samples),
        "status_ms_median": statistics.median(s["status_ms"] for s in samples),
        "status_ms_max": max(s["status_ms"] for s in samples),
        "web_ms_median": statistics.median(s["web_ms"] for s in samples),
        "web_ms_max": max(s["web_ms"] for s in samples),
        "sweep_ms_median_before": statistics.median(s["sweep_ms"] for s in before) if before else None,
        "sweep_ms_median_after": statistics.median(s["sweep_ms"] for s in after) if after else None,
        "worker_rss_first_mb": rss_first,
        "worker_rss_last_mb": rss_last,
        "sent_during_measurement": sent,
        "claim_ms_first": figures["claim_ms_first"],
        "claim_ms_last": figures["claim_ms_last"],
    }
    figures["summary"] = summary
    rows = [
        "| measure | figure | target |",
        "|---|---:|---|",
        # The target is for a million rows; a smaller run shows it only as that reference.
        f"| publish: render + {args.n:,} ledger rows | {summary['publish_s']:.1f} s | "
        f"{'≤ 15 s' if args.n == 1_000_000 else '(≤ 15 s for 1,000,000)'} |",
        f"| reading the kept counts (a session and one query), median | {summary['counts_ms_median']:.1f} ms | |",
        f"| `ledger.status()` (`newsletter status --json`) during the send, median / slowest sample | "
        f"{summary['status_ms_median']:.1f} / {summary['status_ms_max']:.1f} ms | ≤ 100 ms |",
        f"| GET /campaigns/{{id}} during the send, median / slowest sample | "
        f"{summary['web_ms_median']:.1f} / {summary['web_ms_max']:.1f} ms | ≤ 100 ms |",
        f"| sweep, median, no finished campaigns | {summary['sweep_ms_median_before'] or 0:.1f} ms | |",
        f"| sweep, median, + {args.finished} finished campaigns ({args.n:,} rows) | "
        f"{summary['sweep_ms_median_after'] or 0:.1f} ms | no growth |",
        f"| worker RSS per process, first → last sample | {', '.join(f'{v:.0f}' for v in rss_first)} → "
        f"{', '.join(f'{v:.0f}' for v in rss_last)} MB | flat |",
        f"| a worker's claim ({settings.batch_size} rows), median of 5: at the start → at the end | "
        f"{summary['claim_ms_first']:.1f} → {summary['claim_ms_last']:.1f} ms | flat |",
        f"| messages sent while measuring ({args.send_seconds:.0f} s) | {sent:,} | |",
    ]
    table = "\n".join(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "million.json").write_text(json.dumps(figures, indent=2))
    (out / "million.md").write_text(table + "\n")
    print()
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""End-to-end campaign throughput, against the SMTP ceiling and a naive pipeline, in one run.

    ./dev bench                       # N = 1,000 and 10,000
    ./dev bench --sizes 1000,10000,100000

For each N: seed N subscribers in PostgreSQL, start Postfix's smtp-sink on a free port, start
`celery -A worker worker --concurrency 2` on Redis, publish the sample episode, wait until the
campaign is done. Then, against the same sink binary: the ceiling (one smtplib connection sending
prebuilt bytes of the same size) and the naive pipeline (per recipient Jinja2 + premailer +
EmailMessage, one Celery task and one SMTP connection per message). Prints a table with the
ratios and writes JSON, Markdown and a PNG plot to benchmarks/results/ (or --out).

    ./dev bench --rtt 40 --sizes 20000   # a server 40 ms away, against smtp-source -d

It empties Redis databases 14 and 15 (FLUSHDB) and uses PostgreSQL's `test` database; the
environment variables BENCH_REDIS_URL, BENCH_NAIVE_REDIS_URL and BENCH_POSTGRES_URL point it at
others. With --rtt, use 10,000 subscribers or more: below that, measuring and opening the
sessions is a large part of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
NAIVE_REDIS = os.environ.get("BENCH_NAIVE_REDIS_URL", "redis://127.0.0.1:6379/15")
EPISODE = ROOT / "tests" / "fixtures" / "episodes" / "sample-episode.txt"
SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
CLK = os.sysconf("SC_CLK_TCK")
# Every run sends the sample "as of" its own date, so all three carry the same event banner.
AS_OF = "2023-11-23T00:00:00+00:00"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """Postfix's smtp-sink; `-c` prints a running count of completed DATA commands."""

    def __init__(self) -> None:
        self.port = free_port()
        self.out = tempfile.NamedTemporaryFile(prefix="sink-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [SINK, "-u", "nobody", "-c", f"127.0.0.1:{self.port}", "2000"], stdout=self.out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    def count(self) -> int:
        found = re.findall(rb"mesg=(\d+)", Path(self.out.name).read_bytes())
        return int(found[-1]) if found else 0

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        n = self.count()
        os.unlink(self.out.name)
        return n


def proc_tree(pid: int) -> list[int]:
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [int(k) for k in kids]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (FileNotFoundError, IndexError):
            pass
    return total / CLK


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds([pid]) for pid in pids}


def postgres_pids() -> list[int]:
    """Every PostgreSQL process on the machine (backends, WAL writer, checkpointer): the
    benchmark is the only client while it runs."""
    out = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_ready(log: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b"ready." in log.read_bytes():
            return
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.1)
    raise RuntimeError("worker did not start")


def stop(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()


class DelayProxy:
    """A TCP relay in front of the sink that holds each of the server's replies for `rtt_ms`
    (client bytes go through at once): network distance, as the client sees it. Runs an asyncio
    loop in a thread of this process."""

    def __init__(self, upstream_port: int, rtt_ms: float) -> None:
        import asyncio
        import threading

        self.port = free_port()
        self.delay = rtt_ms / 1000
        self.upstream = upstream_port
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", self.port))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    async def _relay(self, client_r, client_w) -> None:  # noqa: ANN001
        import asyncio

        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream)
        held: asyncio.Queue = asyncio.Queue()

        async def up() -> None:
            while data := await client_r.read(65536):
                server_w.write(data)
                await server_w.drain()
            server_w.close()

        async def down_read() -> None:
            while data := await server_r.read(65536):
                await held.put((self.loop.time() + self.delay, data))
            await held.put((self.loop.time() + self.delay, b""))

        async def down_write() -> None:
            while True:
                due, data = await held.get()
                if (wait := due - self.loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    client_w.close()
                    return
                client_w.write(data)
                await client_w.drain()

        try:
            await asyncio.gather(up(), down_read(), down_write())
        except (ConnectionError, OSError):
            pass
        finally:
            client_w.close()
            server_w.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def run_smtp_source(port: int, sessions: int, n: int, size: int) -> dict:
    """Postfix's smtp-source (C, no pipelining) with `sessions` sessions, each kept open for its
    next message (-d), `n` messages of `size` bytes: the reference in the same run."""
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    t0 = time.perf_counter()
    subprocess.run(
        [
            source,
            "-d",
            "-s",
            str(sessions),
            "-m",
            str(n),
            "-l",
            str(size),
            "-f",
            "bench@example.org",
            "-t",
            "reader@example.org",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=900,
    )
    elapsed = time.perf_counter() - t0
    return {"n": n, "sessions": sessions, "seconds": round(elapsed, 2), "msgs_per_s": round(n / elapsed, 1)}


def bench_env(schema: str, sink_port: int) -> dict:
    return {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": f"{PG}?options=-csearch_path%3D{schema}",
        "NEWSLETTER_BROKER_URL": REDIS,
        "NEWSLETTER_MAIL_URL": f"smtp://127.0.0.1:{sink_port}?starttls=off",
        "NEWSLETTER_SECRET_KEY": "benchmark-key",
        "NEWSLETTER_VAR_DIR": tempfile.mkdtemp(prefix="bench-var-"),
        "NEWSLETTER_BATCH_SIZE": os.environ.get("NEWSLETTER_BATCH_SIZE", "500"),
    }


def sessions_in_flight(log: Path, fixed: int) -> int:
    """The sessions the worker's processes sent on (each batch logs "on N session(s)": what the
    measurement wanted and the destination's cap granted), the most per process, summed;
    `fixed` when the log has none."""
    import re

    chosen: dict[str, int] = {}
    for worker_name, n in re.findall(r"/(\S+?)\].*? on (\d+) session", log.read_text(errors="replace")):
        chosen[worker_name] = max(chosen.get(worker_name, 0), int(n))
    return sum(chosen.values()) or fixed


def seed_subscribers(settings, n: int) -> None:  # noqa: ANN001 - worker.settings.Settings
    """N active subscribers reader1..readerN@example.org in one statement (PostgreSQL)."""
    import sqlalchemy as sa

    from worker.db import session_scope

    with session_scope(settings) as s:
        s.execute(
            sa.text(
                "INSERT INTO subscribers (email, email_key, name, status, status_reason, created_at, "
                "updated_at) SELECT 'reader' || g || '@example.org', 'reader' || g || '@example.org', "
                "'Reader ' || g, 'active', '', now(), now() FROM generate_series(1, :n) g"
            ),
            {"n": n},
        )


def run_pipeline(n: int, workdir: Path, rtt_ms: float = 0, sessions: int | None = None) -> dict:
    import redis
    import sqlalchemy as sa

    schema = f"nl_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    redis.Redis.from_url(REDIS).flushdb()
    sink = Sink()
    proxy = DelayProxy(sink.port, rtt_ms) if rtt_ms else None
    env = bench_env(schema, proxy.port if proxy else sink.port)
    if sessions:  # that many in each of the two processes, all of them from the first message
        env["NEWSLETTER_SESSIONS_PER_WORKER"] = str(sessions)
        env["NEWSLETTER_SESSIONS_PER_DESTINATION"] = str(2 * sessions)
        env["NEWSLETTER_SESSIONS_AUTO"] = "false"
    os.environ.update({k: v for k, v in env.items() if k.startswith("NEWSLETTER_")})
    from worker.db import dispose_engines, migrate, session_scope
    from worker.episodes import load_episode
    from worker.ledger import status as campaign_status
    from worker.publish import create_campaign, start
    from worker.settings import get_settings, reset_settings

    reset_settings()
    dispose_engines()
    settings = get_settings()
    migrate(settings)
    seed_subscribers(settings, n)  # set-up, not measured
    log = workdir / f"worker-{n}.log"
    with open(log, "wb") as fh:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "worker",
                "--concurrency",
                "2",
                "--pool",
                "prefork",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(log, worker)
        pids = proc_tree(worker.pid)
        cpu0 = cpu_seconds(pids)
        pg0, sink0 = cpu_by_pid(postgres_pids()), cpu_seconds([sink.proc.pid])
        episode = load_episode(EPISODE, settings.tz)
        t0 = time.perf_counter()
        with session_scope(settings) as s:
            result = create_campaign(s, episode, settings, as_of=datetime.fromisoformat(AS_OF))
            cid = result.campaign.id
            t_render_and_freeze = time.perf_counter() - t0
        start(cid)
        while True:
            with session_scope(settings) as s:
                st = campaign_status(s, cid).as_dict()
            if st["state"] == "done":
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pids) - cpu0
        # Backends born during the run count from zero; any that ended before now are missed.
        pg_cpu = sum(t - pg0.get(pid, 0.0) for pid, t in cpu_by_pid(postgres_pids()).items())
        sink_cpu = cpu_seconds([sink.proc.pid]) - sink0
        rss = {pid: peak_rss_mb(pid) for pid in pids}
    finally:
        stop(worker)
        reference = None
        in_flight = sessions_in_flight(log, 2 * (sessions or get_settings().sessions_per_worker))
        if proxy is not None:  # smtp-source through the same proxy, as many sessions as the pipeline had
            reference = run_smtp_source(proxy.port, in_flight, min(n, 50 * in_flight), len(sample_message()))
            proxy.stop()
        received = sink.stop() - (reference["n"] if reference else 0)
        dispose_engines()
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
    return {
        "n": n,
        "seconds": round(elapsed, 2),
        "msgs_per_s": round(n / elapsed, 1),
        "publish_seconds": round(t_render_and_freeze, 3),
        "cpu_ms_per_msg": round(cpu / n * 1000, 3),
        "postgres_cpu_ms_per_msg": round(pg_cpu / n * 1000, 3),
        "sink_cpu_ms_per_msg": round(sink_cpu / n * 1000, 3),
        "peak_rss_mb": round(max(rss.values()), 1),
        "peak_rss_per_process_mb": [round(v, 1) for v in rss.values()],
        "sent": st["sent"],
        "received": received,
        "exact": received == n and st["sent"] == n,
        "worker_log": str(log),
        "rtt_ms": rtt_ms,
        "sessions_per_worker": sessions or get_settings().sessions_per_worker,
        "sessions_in_flight": in_flight,
        "smtp_source": reference,
    }


def sample_message() -> bytes:
    from worker.episodes import load_episode
    from worker.message import Recipient, compose
    from worker.settings import get_settings

    settings = get_settings()
    ep = load_episode(EPISODE, settings.tz)
    return compose(ep, settings, as_of=datetime.fromisoformat(AS_OF)).build(
        Recipient("reader1@example.org", "Reader 1")
    )[0]


def run_ceiling(n: int, message: bytes) -> dict:
    sink = Sink()
    try:
        smtp = smtplib.SMTP("127.0.0.1", sink.port, timeout=30)
        t0 = time.perf_counter()
        for i in range(n):
            smtp.sendmail("newsletter@example.org", [f"reader{i}@example.org"], message)
        elapsed = time.perf_counter() - t0
        smtp.quit()
    finally:
        received = sink.stop()
    return {
        "n": n,
        "seconds": round(elapsed, 2),
        "msgs_per_s": round(n / elapsed, 1),
        "received": received,
        "message_bytes": len(message),
    }


def run_naive(n: int, workdir: Path) -> dict:
    import redis

    redis.Redis.from_url(NAIVE_REDIS).flushdb()
    sink = Sink()
    env = {
        **os.environ,
        "NAIVE_BROKER_URL": NAIVE_REDIS,
        "NEWSLETTER_MAIL_URL": f"smtp://127.0.0.1:{sink.port}",
        "NEWSLETTER_SECRET_KEY": "benchmark-key",
    }
    log = workdir / "naive-worker.log"
    with open(log, "wb") as fh:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "benchmarks.naive",
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "-Q",
                "naive",
            ],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(log, worker)
        os.environ["NAIVE_BROKER_URL"] = NAIVE_REDIS
        from benchmarks.naive import app as naive_app
        from benchmarks.naive import send_one

        naive_app.conf.broker_url = NAIVE_REDIS
        as_of = AS_OF
        t0 = time.perf_counter()
        with naive_app.connection_for_write() as conn:
            for i in range(n):
                send_one.apply_async((f"reader{i}@example.org", f"Reader {i}", str(EPISODE), as_of), connection=conn)
        while sink.count() < n:
            if worker.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
    finally:
        stop(worker)
        received = sink.stop()
    return {"n": n, "seconds": round(elapsed, 2), "msgs_per_s": round(n / elapsed, 1), "received": received}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated subscriber counts")
    parser.add_argument("--naive", type=int, default=600, help="messages for the naive pipeline")
    parser.add_argument("--ceiling", type=int, default=10000, help="messages for the ceiling")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--rtt", type=float, default=0, help="delay the sink's replies by this many ms (a proxy)")
    parser.add_argument(
        "--sessions", type=int, default=0, help="sessions per process, fixed (default: the settings, measured)"
    )
    args = parser.parse_args()
    if args.rtt:
        return main_rtt(args)
    sizes = [int(x) for x in args.sizes.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    os.environ.setdefault("NEWSLETTER_SECRET_KEY", "benchmark-key")

    pipeline = []
    for n in sizes:
        print(f"pipeline, N={n:,} …", flush=True)
        pipeline.append(run_pipeline(n, workdir))
        print(f"  {pipeline[-1]}", flush=True)
        print(f"  the worker's log (sessions chosen and granted, one line a batch): {pipeline[-1]['worker_log']}")
    message = sample_message()
    print(f"ceiling, {args.ceiling:,} messages of {len(message):,} bytes …", flush=True)
    ceiling = run_ceiling(args.ceiling, message)
    print(f"naive, {args.naive:,} messages …", flush=True)
    naive = run_naive(args.naive, workdir)

    largest = pipeline[-1]
    ratios = {
        "pipeline_over_ceiling": round(largest["msgs_per_s"] / ceiling["msgs_per_s"], 3),
        "pipeline_over_naive": round(largest["msgs_per_s"] / naive["msgs_per_s"], 1),
    }
    results = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
        "pipeline": pipeline,
        "ceiling": ceiling,
        "naive": naive,
        "ratios": ratios,
        "at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (out / "campaign.json").write_text(json.dumps(results, indent=2))

    lines = [
        "| run | N | msg/s | time to done | publish: render + N ledger rows | worker CPU/msg "
        "| PostgreSQL CPU/msg | smtp-sink CPU/msg | peak RSS/process | received |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in pipeline:
        lines.append(
            f"| pipeline | {r['n']:,} | {r['msgs_per_s']:,.0f} | {r['seconds']:.1f} s | "
            f"{r['publish_seconds']:.2f} s | {r['cpu_ms_per_msg']:.2f} ms | "
            f"{r['postgres_cpu_ms_per_msg']:.2f} ms | {r['sink_cpu_ms_per_msg']:.2f} ms | "
            f"{r['peak_rss_mb']:.0f} MB | {r['received']:,} {'✓' if r['exact'] else '✗'} |"
        )
    lines.append(
        f"| ceiling (1 smtplib connection, prebuilt bytes) | {ceiling['n']:,} | {ceiling['msgs_per_s']:,.0f} | "
        f"{ceiling['seconds']:.1f} s | | | | | | {ceiling['received']:,} |"
    )
    lines.append(
        f"| naive (render + premailer + EmailMessage per message) | {naive['n']:,} | "
        f"{naive['msgs_per_s']:,.0f} | {naive['seconds']:.1f} s | | | | | | {naive['received']:,} |"
    )
    lines.append("")
    lines.append(
        f"Largest N = {largest['n']:,}: pipeline / ceiling = **{ratios['pipeline_over_ceiling']:.2f}**, "
        f"pipeline / naive = **{ratios['pipeline_over_naive']:.1f}×**. "
        f"Message size {ceiling['message_bytes']:,} bytes; {os.cpu_count()} cores."
    )
    table = "\n".join(lines)
    (out / "campaign.md").write_text(table + "\n")
    print()
    print(table)

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["n"] for r in pipeline], [r["msgs_per_s"] for r in pipeline], "o-", label="pipeline")
        ax.axhline(ceiling["msgs_per_s"], color="green", linestyle="--", label="ceiling (1 connection)")
        ax.axhline(naive["msgs_per_s"], color="red", linestyle=":", label="naive")
        ax.set_xscale("log")
        ax.set_xlabel("subscribers (N)")
        ax.set_ylabel("messages / s")
        ax.set_ylim(bottom=0)
        ax.legend(loc="center right")
        ax.set_title("Campaign throughput, 2 worker processes")
        fig.tight_layout()
        fig.savefig(out / "campaign.png", dpi=100)
    except ImportError:
        print("(matplotlib is not installed: no plot)")
    failed = [r for r in pipeline if not r["exact"]]
    return 1 if failed else 0


def main_rtt(args: argparse.Namespace) -> int:
    """`--rtt MS`: the pipeline through the delay proxy, then smtp-source -d through the same
    proxy with as many sessions as the pipeline had in flight; writes campaign-rtt.{json,md}."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    os.environ.setdefault("NEWSLETTER_SECRET_KEY", "benchmark-key")
    rows = []
    for n in [int(x) for x in args.sizes.split(",")]:
        print(f"pipeline, N={n:,}, RTT {args.rtt:g} ms …", flush=True)
        rows.append(run_pipeline(n, workdir, args.rtt, args.sessions or None))
        print(f"  {rows[-1]}", flush=True)
        print(f"  the worker's log (sessions chosen and granted, one line a batch): {rows[-1]['worker_log']}")
    lines = [
        "| RTT | N | sessions in flight | pipeline msg/s | smtp-source -d msg/s (same sessions) | ratio "
        "| worker CPU/msg | PostgreSQL CPU/msg | peak RSS/process | received |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ref = r["smtp_source"]
        lines.append(
            f"| {r['rtt_ms']:g} ms | {r['n']:,} | {ref['sessions']} | {r['msgs_per_s']:,.0f} | "
            f"{ref['msgs_per_s']:,.0f} | {r['msgs_per_s'] / ref['msgs_per_s']:.2f} | "
            f"{r['cpu_ms_per_msg']:.2f} ms | {r['postgres_cpu_ms_per_msg']:.2f} ms | {r['peak_rss_mb']:.0f} MB | "
            f"{r['received']:,} {'✓' if r['exact'] else '✗'} |"
        )
    table = "\n".join(lines)
    (out / "campaign-rtt.json").write_text(json.dumps(rows, indent=2))
    (out / "campaign-rtt.md").write_text(table + "\n")
    print()
    print(table)
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

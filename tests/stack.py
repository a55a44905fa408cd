"""Real worker and beat processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from worker.settings import PROJECT_DIR


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    interval: float = 0.2,
    details: Callable[[], str] | None = None,
):
    """Poll a condition until it holds (or fail, saying what we waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


class Stack:
    """`celery -A worker worker` (prefork) and `celery -A worker beat` as child processes."""

    def __init__(self, log_dir: Path, concurrency: int = 2):
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.workers: list[subprocess.Popen] = []
        self.beat: subprocess.Popen | None = None
        self._n = 0

    def _spawn(
        self, args: list[str], name: str, prefix: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen, Path]:
        self._n += 1
        log = self.log_dir / f"{name}-{self._n}.log"
        fh = open(log, "wb")
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "celery", "-A", "worker", *args],
            cwd=PROJECT_DIR,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        fh.close()
        return proc, log

    def start_worker(
        self, concurrency: int | None = None, prefix: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """A prefork worker; `prefix` goes before the interpreter on the command line (e.g.
        `faketime -f -10m`, `ip netns exec HOST`), `env` over this process's environment."""
        proc, log = self._spawn(
            [
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency or self.concurrency),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"w{self._n + 1}@%h",
            ],
            "worker",
            prefix,
            env,
        )
        self.workers.append(proc)
        wait_for(lambda: b"ready." in log.read_bytes() or proc.poll() is not None, 60, "the worker to start")
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        return proc

    def start_beat(self, prefix: Sequence[str] = (), env: dict[str, str] | None = None) -> subprocess.Popen:
        self.beat, _ = self._spawn(
            ["beat", "--loglevel", "INFO", "-s", str(self.log_dir / "celerybeat-schedule")], "beat", prefix, env
        )
        return self.beat

    def pool_pids(self, proc: subprocess.Popen) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill_all_workers(self) -> int:
        """SIGKILL every worker process (main and pool); returns how many processes died."""
        killed = 0
        for proc in self.workers:
            if proc.poll() is None:
                pids = self.pool_pids(proc)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                killed += 1 + len(pids)
        self.workers = []
        return killed

    def shut_down_workers(self) -> None:
        """SIGTERM to each worker's main process only: Celery's warm shutdown, as a service
        manager does it."""
        for proc in self.workers:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        self.workers = []

    def stop(self) -> None:
        for proc in [*self.workers, *([self.beat] if self.beat else [])]:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=20)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=10)
        self.workers, self.beat = [], None

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.log_dir.glob("*.log"))
        )

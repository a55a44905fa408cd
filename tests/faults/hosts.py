"""Several hosts on one machine, for the multi-host fault suite.

`Network` makes a bridge in this (the services') network namespace and one namespace per worker
host, each joined to the bridge by a veth pair, with its own address: iproute2's `ip netns` and
`ip link` (root needed). Services listen on the bridge's address, so workers reach PostgreSQL,
Redis and the SMTP server over their links; `cut(host)` takes the host's link down on the
services' side, so its packets vanish silently (no reset, no "unreachable": a real partition),
and `restore(host)` brings it back.

`PostgresCluster` is a PostgreSQL server of the suite's own (initdb in a temporary folder, a free
port), so restarting it leaves the shared instance on :5432 alone. `RedisServer` likewise.
Everything is torn down on exit, failures included; leftovers of a killed run are removed first.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ..smtp_server import free_port
from ..stack import wait_for

PREFIX = "nlf"  # every namespace and link this module makes starts with it
BRIDGE = f"{PREFIX}br0"
SUBNET = "10.213.0"
SERVICES = f"{SUBNET}.1"  # the services' address, on the bridge
LOCK = "/tmp/nlf-faults.lock"


class NamespacesUnavailable(AssertionError):
    """Raised (a failure, never a skip) where network namespaces cannot be made."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NamespacesUnavailable(
            f"`ip {' '.join(args)}` failed ({proc.stderr.strip()}): the multi-host fault suite needs root and "
            "iproute2 to make network namespaces and veth pairs"
        )
    return proc


class Network:
    """Worker hosts `hosts` (names of a letter or two), each in namespace nlf-NAME at
    10.213.0.(10+i); the services at 10.213.0.1."""

    def __init__(self, hosts: tuple[str, ...] = ("a", "b")):
        self.hosts = {name: f"{SUBNET}.{10 + i}" for i, name in enumerate(hosts)}
        self._lock_fh = None

    @staticmethod
    def netns(host: str) -> str:
        return f"{PREFIX}-{host}"

    def prefix(self, host: str) -> list[str]:
        """Command prefix that runs a program on `host`."""
        return ["ip", "netns", "exec", self.netns(host)]

    def __enter__(self) -> Network:
        if shutil.which("ip") is None:
            raise NamespacesUnavailable("`ip` (iproute2) is missing: ./dev test installs it")
        if os.geteuid() != 0:
            raise NamespacesUnavailable("the multi-host fault suite must run as root (network namespaces)")
        self._lock_fh = open(LOCK, "w")  # one suite at a time on this machine: the names are fixed
        fcntl.flock(self._lock_fh, fcntl.LOCK_EX)
        try:
            self._remove_leftovers()
            _ip("link", "add", BRIDGE, "type", "bridge")
            _ip("addr", "add", f"{SERVICES}/24", "dev", BRIDGE)
            _ip("link", "set", BRIDGE, "up")
            for host, addr in self.hosts.items():
                ns, outer, inner = self.netns(host), f"{PREFIX}-{host}0", f"{PREFIX}-{host}1"
                _ip("netns", "add", ns)
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                _ip("link", "set", inner, "netns", ns)
                _ip("link", "set", outer, "master", BRIDGE)
                _ip("link", "set", outer, "up")
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def cut(self, host: str) -> None:
        """The host's link goes dark: its packets, both ways, are dropped without a word."""
        _ip("link", "set", f"{PREFIX}-{host}0", "down")

    def restore(self, host: str) -> None:
        _ip("link", "set", f"{PREFIX}-{host}0", "up")

    def _remove_leftovers(self) -> None:
        for host in self.hosts:
            _kill_in_namespace(self.netns(host))
            _ip("netns", "del", self.netns(host), check=False)
            _ip("link", "del", f"{PREFIX}-{host}0", check=False)
        _ip("link", "del", BRIDGE, check=False)

    def __exit__(self, *exc: object) -> None:
        try:
            self._remove_leftovers()
        finally:
            if self._lock_fh:
                self._lock_fh.close()
                self._lock_fh = None


def _kill_in_namespace(ns: str) -> None:
    """SIGKILL what is left running in a namespace of ours (a run killed before its clean-up)."""
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    for pid in out.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise AssertionError(f"PostgreSQL's {name} is missing (Debian package postgresql; ./dev test installs it)")
    return found[-1]


class PostgresCluster:
    """A private PostgreSQL server listening on 127.0.0.1 and `listen`, trust auth, no fsync
    (the suite restarts the server, it does not crash the machine)."""

    def __init__(self, listen: str = SERVICES):
        self.listen = listen
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="nlf-pg-"))
        self.data = self.dir / "data"

    def _as_postgres(self, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, f"{' '.join(args)}: {proc.stdout}{proc.stderr}"

    def __enter__(self) -> PostgresCluster:
        shutil.chown(self.dir, "postgres", "postgres")
        try:
            self._as_postgres(
                _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"
            )
            with open(self.data / "pg_hba.conf", "a") as fh:
                fh.write(f"host all all {SUBNET}.0/24 trust\n")
            with open(self.data / "postgresql.conf", "a") as fh:
                fh.write(
                    f"listen_addresses = '127.0.0.1,{self.listen}'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.dir}'\nfsync = off\nfull_page_writes = off\n"
                    "max_connections = 100\nshared_buffers = 64MB\n"
                )
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self) -> None:
        self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{self.listen}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import sqlalchemy as sa

        admin = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        return self.url(name)

    def __exit__(self, *exc: object) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except (AssertionError, subprocess.TimeoutExpired):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """A private redis-server on `bind` (and 127.0.0.1), no persistence: a stop loses its queue,
    as a crashed Redis without AOF would."""

    def __init__(self, bind: str = SERVICES):
        self.bind = bind
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="nlf-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.bind}:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is missing"
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                self.bind,
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.pings, 10, "the suite's Redis to start")

    def pings(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=self.bind, port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def pause(seconds: float) -> None:
    """A fault's duration (how long a link stays cut, a server stays down): the scenario, not a
    wait for something to happen."""
    time.sleep(seconds)


def skewed_clock(offset: str) -> dict[str, str]:
    """Environment that runs a program on a clock `offset` from the real one (libfaketime's
    format, e.g. "-10m"). Preloaded directly rather than through the `faketime` wrapper, which
    forks: the program is then the process the test started, and stopping it stops it."""
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    assert found, "libfaketime is missing (Debian package faketime; ./dev test installs it)"
    return {"LD_PRELOAD": found[0], "FAKETIME": offset}

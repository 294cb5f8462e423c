"""A throwaway PostgreSQL server in a temporary directory, for `crmsync demo --app postgres`
and the test suite.

`initdb` and `postgres` refuse to run as root, so as root they run as the `postgres` system
user (`runuser -u postgres`, which the server package creates), with the data directory owned
by it. The server listens on a Unix socket in its own directory only (no TCP port), with
durability off (it is thrown away). The binaries are found in $CRMSYNC_PG_BIN, on the PATH, or
in Debian's /usr/lib/postgresql/<version>/bin (the newest).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = ("install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; "
                "or set CRMSYNC_PG_BIN to the directory holding initdb and pg_ctl)")


class NoPostgres(Exception):
    """No PostgreSQL server binaries here; the message says how to install them."""


def find_bindir() -> Path:
    env = os.environ.get("CRMSYNC_PG_BIN")
    if env and (Path(env) / "initdb").exists():
        return Path(env)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".")
                                     if x.isdigit()])
    if versions:
        return Path(versions[-1]).parent
    raise NoPostgres(f"no PostgreSQL server found: {INSTALL_HINT}")


def _free_port() -> int:
    # Only names the socket file (.s.PGSQL.<port>); any unused number will do.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ThrowawayPostgres:
    """A server in `directory`: data in `directory/data`, its socket in `directory`."""

    directory: Path
    bindir: Path
    port: int
    user: str | None  # the system user the server runs as (None: the current one)
    # Commits survive a crash (fsync, synchronous commit). Off, the server is faster but a
    # killed server may lose transactions it had acknowledged.
    durable: bool = False

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host={self.directory} port={self.port} user={user} dbname={dbname}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=timeout)

    @classmethod
    def create(cls, parent: str | None = None, durable: bool = False) -> ThrowawayPostgres:
        """initdb a new cluster (trust authentication, superuser `postgres`) and start it."""
        bindir = find_bindir()
        user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise NoPostgres("running as root, and there is no `postgres` system user "
                                 f"to run the server as: {INSTALL_HINT}") from None
            user = "postgres"
        directory = Path(tempfile.mkdtemp(prefix="crmsync-pg-", dir=parent))
        directory.chmod(0o755)
        if user is not None:
            shutil.chown(directory, user)
        server = cls(directory, bindir, _free_port(), user, durable)
        server._run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8", "--locale=C")
        server.start()
        return server

    def start(self) -> None:
        opts = f"-c listen_addresses='' -k {self.directory} -p {self.port} -c max_connections=200"
        if not self.durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.log),
                  "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (sessions are ended cleanly) or `immediate` (as a crash:
        no shutdown checkpoint, recovery on the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.directory, ignore_errors=True)

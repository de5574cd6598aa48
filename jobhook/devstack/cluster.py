"""A private PostgreSQL 15 cluster, the database half of the dev stack and of the test suite.

The cluster is driven through the server's own tools (initdb, pg_ctl) so that a crash is
recovered the way PostgreSQL recovers it: `pg_ctl start` replays WAL and replaces a stale
`postmaster.pid`. PostgreSQL refuses to run as root, so as root every server command runs
as the `postgres` OS user, which owns the data directory.

Its roles are hosted Supabase's: the bootstrap superuser is `supabase_admin`, and `postgres`, the
role projects and their migrations connect as, is not a superuser (platform/roles.sql).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

from jobhook.jobs import SetupError

_PLATFORM = "jobhook.devstack.platform"
PG_BIN = Path(os.environ.get("JOBHOOK_PG_BIN", "/usr/lib/postgresql/15/bin"))
# The OS user the server runs as when started by root (the postgresql-15 package's).
SERVER_USER = "postgres"
# The bootstrap superuser, as in the supabase/postgres image (Dockerfile-15: POSTGRES_USER).
SUPERUSER = "supabase_admin"
# The role a project connects as and runs its migrations as; not a superuser (platform/roles.sql).
ROLE = "postgres"
# The supabase CLI's local database password, for both roles as the image sets them
# (supabase/postgres migrations/db/migrate.sh:46); loopback only.
PASSWORD = "postgres"  # noqa: S105

# Settings the platform needs: pg_cron preloaded for the database the migrations run in
# (pg_cron refuses `create extension` anywhere else), logical WAL for Realtime.
BASE_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "shared_preload_libraries": "'pg_cron'",
    "cron.database_name": "'postgres'",
    # Run scheduled commands in background workers: no login, so no password to hand pg_cron.
    "cron.use_background_workers": "on",
    "max_worker_processes": "32",
    # pg_net's settings (supabase/pg_net v0.20.4 src/worker.c:496-509), for the delivery worker
    # to read. Named here so that `alter system set pg_net.batch_size ...` works as it does with
    # pg_net loaded: PostgreSQL 15 refuses ALTER SYSTEM on a setting it has never seen. An empty
    # database_name or username means the database and user of the worker's own URL (the dev
    # stack's: database postgres as the superuser, upstream's defaults, src/worker.c:258).
    "pg_net.batch_size": "200",
    "pg_net.ttl": "'6 hours'",
    "pg_net.database_name": "''",
    "pg_net.username": "''",
    "wal_level": "logical",
    "max_connections": "200",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}


class ClusterError(SetupError):
    """The cluster could not be created, started or stopped; the message says what to do."""


def server_reachable(root: Path) -> Path:
    """`root`, or a stand-in under /var/tmp when the server user cannot reach it.

    As root, the server runs as `postgres`, which cannot enter a checkout under a private home
    directory such as /root. Rather than loosen the home directory's mode, the cluster then
    lives in a folder of its own named after the checkout, and is reused across runs all the same.
    """
    if os.geteuid() != 0:
        return root
    # The root itself is handed to the server user on init; what matters is the way to it.
    probe = subprocess.run(  # noqa: S603
        ["runuser", "-u", SERVER_USER, "--", "test", "-x", str(_nearest_existing(root.parent))],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        return root
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    # Reachable by the server user, kept across reboots; made 0700 for that user on init.
    return Path("/var/tmp") / f"jobhook-{digest}"  # noqa: S108


def _alive(pid: int) -> bool:
    """True for a live process; False when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _nearest_existing(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Cluster:
    root: Path
    port: int = 54322
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def extension_dir(self) -> Path:
        """Where the platform stand-in extensions are installed for this cluster only.

        Debian's PostgreSQL looks for extensions under `extension_destdir` first, then in its own
        share directory, so `create extension pg_net` finds the stand-in without touching the
        system and pgcrypto, pg_cron and pgTAP still come from their packages.
        """
        return self.root / "extensions"

    @property
    def url(self) -> str:
        """Where the app, the migrations and a project's tools connect: as `postgres`."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        """The superuser's, for what only the platform does on hosted (cluster settings,
        extensions outside the migrations, other sessions, pg_net's worker)."""
        return self.admin_database_url("postgres")

    def admin_database_url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle -------------------------------------------------------------------------

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        # A postmaster killed with -9 stays a zombie until its parent reaps it, and pg_ctl
        # counts a zombie as running; look at the process itself first.
        pid = self.postmaster_pid()
        if pid is None or not _alive(pid):
            return False
        result = self._server_tool(["pg_ctl", "status", "-D", str(self.data_dir)], check=False)
        return result.returncode == 0

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def init(self) -> None:
        """Create the data directory once; later runs reuse it."""
        if self.initialized():
            return
        _require_server_binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        self._hand_to_server_user(self.root)
        pwfile = self.root / ".pwfile"
        pwfile.write_text(PASSWORD + "\n")
        self._hand_to_server_user(pwfile)
        try:
            self._server_tool(
                [
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'jobhook.conf'\n")
        # The Vault stand-in's root key lives outside the database, as pgsodium's does.
        key_file = self.data_dir / "vault_root_key"
        key_file.write_text(secrets.token_hex(32) + "\n")
        key_file.chmod(0o600)
        self._hand_to_server_user(key_file)

    def start(self) -> None:
        """Start the server, or adopt one already running on this data directory.

        The settings file is rewritten on every start so a reused cluster follows the code.
        After a crash `pg_ctl start` replaces the stale pid file and PostgreSQL replays WAL.
        """
        self.init()
        self._install_extensions()
        self._write_settings()
        started = not self.running()
        if started:
            self._start_server()
        try:
            self._ensure_roles()
        except ClusterError:
            if started:
                self.stop()
            raise

    def _start_server(self) -> None:
        if port_is_listening(self.port):
            raise ClusterError(
                f"port {self.port} is taken by another server; stop it "
                f"(`ss -ltnp 'sport = :{self.port}'` shows which) or choose another port"
            )
        self.log_file.touch()
        self._hand_to_server_user(self.log_file)
        # The lock file of a crashed server names a process that is gone (or a zombie, which
        # the postmaster would take for alive); it is stale, so it goes.
        if self.postmaster_pid() is not None:
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        # Backends of a crashed server notice its death within a moment; until they have, the
        # new server refuses their shared memory. Give them that moment.
        start = ["pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file)]
        start += ["-w", "-t", "120"]
        deadline = time.monotonic() + 15
        while True:
            result = self._server_tool(start, check=False)
            if result.returncode == 0:
                return
            if "still in use" not in _tail(self.log_file, 5) or time.monotonic() > deadline:
                raise ClusterError(
                    f"PostgreSQL did not start: {result.stderr.strip() or result.stdout.strip()}\n"
                    f"last lines of {self.log_file}:\n{_tail(self.log_file)}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self.initialized() and self.running():
            self._server_tool(["pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w"])

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------

    def _ensure_roles(self) -> None:
        """Give the cluster hosted Supabase's roles (platform/roles.sql), as the superuser."""
        try:
            conn = psycopg.connect(self.admin_url, autocommit=True)
        except psycopg.OperationalError as exc:
            if self._made_before_supabase_admin():
                raise ClusterError(
                    f"the database in {self.root} was made before the dev stack took hosted "
                    f"Supabase's roles (superuser {SUPERUSER}, {ROLE} not a superuser); "
                    "`jobhook reset` drops it and the next start makes it afresh"
                ) from exc
            raise ClusterError(f"cannot connect as {SUPERUSER}: {exc}") from exc
        with conn:
            conn.execute(resources.files(_PLATFORM).joinpath("roles.sql").read_bytes())
            # The password is the dev stack's published one, set here rather than written
            # into the SQL file.
            conn.execute(
                sql.SQL("alter role {} password {}").format(
                    sql.Identifier(ROLE), sql.Literal(PASSWORD)
                )
            )

    def _made_before_supabase_admin(self) -> bool:
        """True for a data dir whose bootstrap superuser is `postgres` (jobhook's first role
        model): `postgres` logs in, is a superuser, and there is no supabase_admin."""
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                row = conn.execute(
                    "select rolsuper, not exists (select from pg_roles where rolname = %s)"
                    " from pg_roles where rolname = current_user",
                    (SUPERUSER,),
                ).fetchone()
        except psycopg.Error:
            return False
        return row is not None and bool(row[0]) and bool(row[1])

    def _install_extensions(self) -> None:
        target = self.extension_dir / _share_dir().relative_to("/") / "extension"
        target.mkdir(parents=True, exist_ok=True)
        for item in resources.files(_PLATFORM).iterdir():
            if item.name.endswith(".control") or (item.name.endswith(".sql") and "--" in item.name):
                (target / item.name).write_text(item.read_text())
        for path in [self.extension_dir, *self.extension_dir.rglob("*")]:
            self._hand_to_server_user(path)

    def _write_settings(self) -> None:
        merged = {
            **BASE_SETTINGS,
            "port": str(self.port),
            "extension_destdir": f"'{self.extension_dir}'",
            **self.settings,
        }
        text = "".join(f"{key} = {value}\n" for key, value in merged.items())
        path = self.data_dir / "jobhook.conf"
        path.write_text(
            "# written by jobhook on every start; edit the code, not this file\n" + text
        )
        self._hand_to_server_user(path)

    def _server_tool(
        self, argv: list[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if check and result.returncode != 0:
            raise ClusterError(
                f"{argv[0]} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def _hand_to_server_user(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        server_user = pwd.getpwnam(SERVER_USER)
        os.chown(path, server_user.pw_uid, server_user.pw_gid)
        if path.is_dir():
            path.chmod(0o700)


def _require_server_binaries() -> None:
    if not (PG_BIN / "postgres").exists():
        raise ClusterError(
            f"PostgreSQL 15 server binaries are missing from {PG_BIN}; run `make bootstrap` "
            "(or: sudo apt-get install postgresql-15 postgresql-15-cron)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError as exc:
            raise ClusterError(
                "running as root needs the `postgres` OS user, which the postgresql-15 "
                "package creates; run `make bootstrap`"
            ) from exc


def _share_dir() -> Path:
    result = subprocess.run(  # noqa: S603
        [str(PG_BIN / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
    )
    return Path(result.stdout.strip())


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"

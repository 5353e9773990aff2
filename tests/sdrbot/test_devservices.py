"""The embedded services as ``make services`` / ``make stop`` run them: idempotent start, stop, status, recovery
from a crash (kill -9) with its stale pid files, and nothing started when URLs are configured."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(data_dir: Path, verb: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "XDG_RUNTIME_DIR"}}
    env.update(SDRBOT_DATA_DIR=str(data_dir), **env_extra)
    return subprocess.run([sys.executable, "-m", "sdrbot.devservices", verb], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def data_dir(tmp_path: Path):
    d = tmp_path / "data"
    yield d
    run(d, "stop")


def test_start_is_idempotent_and_stop_stops(data_dir: Path) -> None:
    first = run(data_dir, "start")
    assert first.returncode == 0, first.stderr
    assert "postgres  running  started" in first.stdout and "redis     running  started" in first.stdout
    second = run(data_dir, "start")
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stdout.splitlines()[0] and "already running" in second.stdout.splitlines()[1]
    # the database really serves, with pgvector
    import psycopg

    sock = data_dir / "pg"
    with psycopg.connect(host=str(sock), dbname="sdrbot", user="postgres") as conn:
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()[0].startswith("0.")
    assert run(data_dir, "status").returncode == 0
    stopped = run(data_dir, "stop")
    assert "postgres  stopped  stopped" in stopped.stdout and "redis     stopped  stopped" in stopped.stdout
    status = run(data_dir, "status")
    assert status.returncode == 3 and "stopped" in status.stdout


def test_restart_after_kill_9_with_stale_pid_files(data_dir: Path) -> None:
    assert run(data_dir, "start").returncode == 0
    pg_pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
    children = psutil.Process(pg_pid).children(recursive=True)
    for pid in [pg_pid, redis_pid, *[c.pid for c in children]]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    psutil.wait_procs([p for p in children if p.is_running()], timeout=10)
    time.sleep(0.5)
    assert (data_dir / "pg" / "postmaster.pid").exists()  # the crash left its pid file behind
    again = run(data_dir, "start")
    assert again.returncode == 0, again.stderr
    assert "postgres  running  started" in again.stdout and "redis     running  started" in again.stdout
    assert run(data_dir, "status").returncode == 0


def test_pid_reused_by_another_process_does_not_block(data_dir: Path) -> None:
    (data_dir / "redis").mkdir(parents=True)
    (data_dir / "redis" / "redis.pid").write_text(str(os.getpid()))  # alive, but not redis
    out = run(data_dir, "start")
    assert out.returncode == 0, out.stderr
    assert int((data_dir / "redis" / "redis.pid").read_text()) != os.getpid()


def test_configured_urls_start_nothing(tmp_path: Path) -> None:
    d = tmp_path / "unused"
    out = run(d, "start", DATABASE_URL="postgres://u:p@db.invalid/x", REDIS_URL="redis://cache.invalid:6379/0")
    assert out.returncode == 0
    assert "DATABASE_URL is set; nothing started" in out.stdout and "REDIS_URL is set; nothing started" in out.stdout
    assert not (d / "pg").exists() and not (d / "redis").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root to switch to a normal user")
def test_works_as_a_normal_user(tmp_path: Path) -> None:
    """Start and stop the services as an unprivileged account (as on a developer's laptop)."""
    user = "sdrbot-ci-user"
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
    data = Path("/tmp") / f"sdrbot-user-{os.getpid()}"
    data.mkdir(exist_ok=True)
    shutil.chown(data, user)
    # The venv's interpreter may live under /root (unreadable to others): use the system Python of the same
    # minor version with the venv's packages, as a developer's own checkout would.
    system_python = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin:/usr/local/bin")
    if system_python is None:
        pytest.skip(f"no system python{sys.version_info.major}.{sys.version_info.minor} for the normal user")
    site = next(p for p in sys.path if p.endswith("site-packages") and "venv" in p)
    env_args = [f"SDRBOT_DATA_DIR={data}", "PATH=/usr/bin:/bin", "HOME=/tmp", f"PYTHONPATH={ROOT}:{site}"]
    base = ["runuser", "-u", user, "--", "env", *env_args, system_python, "-m", "sdrbot.devservices"]
    try:
        up = subprocess.run([*base, "start"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "postgres  running  started" in up.stdout
        owner = psutil.Process(int((data / "pg" / "postmaster.pid").read_text().split()[0])).username()
        assert owner == user
    finally:
        subprocess.run([*base, "stop"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        shutil.rmtree(data, ignore_errors=True)

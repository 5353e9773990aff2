"""Shared test setup. Tests run against the real embedded PostgreSQL + pgvector and Redis (``make test`` starts
them); sdrbot/settings_test.py keeps the tests' Celery queue apart from a running demo's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SDRBOT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def database_url(d: dict) -> str:
    """The URL of a Django database settings dict (the test database, for processes the tests start)."""
    from urllib.parse import quote

    user, pw, name, host = quote(d["USER"] or ""), quote(d.get("PASSWORD") or ""), d["NAME"], d.get("HOST") or ""
    if host.startswith("/"):
        return f"postgres://{user}:{pw}@/{name}?host={host}"
    return f"postgres://{user}:{pw}@{host}:{d.get('PORT') or 5432}/{name}"


@pytest.fixture(scope="session", autouse=True)
def widget_listener_stopped(django_db_setup, django_db_blocker) -> Iterator[None]:
    """The widget's change listener (conversations.live) holds a connection to the test database once a stream has
    waited on it; it is closed before the database is dropped."""
    yield
    from conversations.live import hub

    hub.stop()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker) -> Iterator[subprocess.Popen]:
    """A real Celery worker (separate process) on the tests' broker and the test database."""
    from django.db import connection

    env = dict(os.environ)
    env["DATABASE_URL"] = database_url(connection.settings_dict)
    env["DJANGO_SETTINGS_MODULE"] = "sdrbot.settings_test"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "sdrbot", "worker", "--loglevel", "WARNING", "--concurrency", "2",
         "--without-gossip", "--without-mingle", "--hostname", f"test-worker-{os.getpid()}@%h"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    from sdrbot.celery import app

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        if app.control.ping(timeout=0.5):
            break
    else:
        proc.kill()
        raise RuntimeError("celery worker did not answer a ping within 60 s")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_user("admin-t", "admin@example.com", "pw-admin-123", is_staff=True,
                                                 is_superuser=True)


@pytest.fixture
def agent_user(django_user_model):
    return django_user_model.objects.create_user("agent-t", "agent@example.com", "pw-agent-123", is_staff=True)


@pytest.fixture
def outsider_user(django_user_model):
    return django_user_model.objects.create_user("outsider-t", "out@example.com", "pw-out-123")


class RecordingServer:
    """A local HTTP server whose handler is a function (method, path, headers, body) → (status, headers, body);
    it records every request. Used to speak outside services' protocols to their real client libraries."""

    def __init__(self, handler: Callable[[str, str, dict, bytes], tuple[int, dict, bytes]]) -> None:
        self.requests: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "body": body})
                status, headers, payload = handler(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def json_bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests if r["body"]]


@pytest.fixture
def recording_server() -> Iterator[Callable[..., RecordingServer]]:
    servers: list[RecordingServer] = []

    def make(handler) -> RecordingServer:
        s = RecordingServer(handler)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def wait_for(predicate, timeout: float = 60.0):
    """Poll ``predicate`` every 0.2 s until it returns something truthy (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting")

"""Change notifications for the widget's event streams and long polls: PostgreSQL ``LISTEN``/``NOTIFY``.

Triggers (migration ``0008_widget_change_notify``) send ``NOTIFY sdrbot_widget, 't:<ticket id>'`` when a widget
ticket is inserted or updated and ``'c:<conversation id>'`` when a widget conversation is updated; PostgreSQL delivers
them when the writing transaction commits. Every service that changes what the widget shows updates the ticket
(``updated_at``), so no writer has to remember to publish anything.

One listener thread per process holds one database connection and wakes exactly the streams waiting on that key. An
open stream therefore holds no database connection while nothing happens and reads once per keepalive (10 s) as a
safety net; before, each one read its ticket's row every ``WIDGET_STREAM_POLL_SECONDS`` over its own connection. When the listener has no connection
(PostgreSQL restarting), or with ``WIDGET_NOTIFY_LISTEN=false`` (a deployment that reaches PostgreSQL only through a
transaction-mode pooler, where LISTEN cannot work), :meth:`Watch.wait` returns after the caller's fallback interval,
so the callers poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

CHANNEL = "sdrbot_widget"
RECONNECT_SECONDS = 2.0

log = logging.getLogger(__name__)


def ticket_key(ticket_id: int) -> str:
    return f"t:{ticket_id}"


def conversation_key(conversation_id: int) -> str:
    return f"c:{conversation_id}"


def listen_connect():
    """A plain autocommit psycopg connection to the ``default`` database (Django's cursor and adapter settings
    left out), for ``LISTEN``."""
    import psycopg
    from django.db import connections

    params = connections["default"].get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(django_only, None)
    return psycopg.connect(**params, autocommit=True)


class Watch:
    """What one waiter watches: set when a notification for any of its keys arrives (see :meth:`Hub.watch`)."""

    def __init__(self, hub: Hub, keys: Iterable[str]) -> None:
        self.hub = hub
        self.keys: set[str] = set()
        self.event = threading.Event()
        self.add(*keys)

    def add(self, *keys: str) -> None:
        with self.hub.lock:
            for key in keys:
                if key not in self.keys:
                    self.keys.add(key)
                    self.hub.waiters.setdefault(key, set()).add(self)

    def wait(self, timeout: float, *, fallback: float) -> bool:
        """Block until a notification for one of the keys, or ``timeout`` seconds (``fallback`` seconds when the
        listener is not connected: the caller polls). True when notified. Clears the flag, so a notification that
        arrives while the caller reads the database is not lost: the next wait returns at once."""
        notified = self.event.wait(timeout if self.hub.listening.is_set() else min(timeout, fallback))
        self.event.clear()
        return notified

    def close(self) -> None:
        with self.hub.lock:
            for key in self.keys:
                waiting = self.hub.waiters.get(key)
                if waiting is not None:
                    waiting.discard(self)
                    if not waiting:
                        del self.hub.waiters[key]
        self.keys.clear()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hub:
    """The process's listener: started on first use, a daemon thread that keeps one ``LISTEN`` connection (the
    database settings of ``default``) and reconnects every ``RECONNECT_SECONDS`` after a failure."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiters: dict[str, set[Watch]] = {}
        self.listening = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def stop(self, timeout: float = 5.0) -> None:
        """End the listener thread and close its connection (a test database cannot be dropped while it is open);
        the next :meth:`watch` starts a new one."""
        with self.lock:
            thread = self._thread
            self._stopping.set()
        if thread is not None:
            thread.join(timeout)
        with self.lock:
            self._thread = None
            self._stopping.clear()
        self.listening.clear()

    def watch(self, *keys: str) -> Watch:
        self._ensure_started()
        return Watch(self, keys)

    def _ensure_started(self) -> None:
        from django.conf import settings

        if not settings.WIDGET_NOTIFY_LISTEN:  # e.g. only a transaction-mode pooler is reachable: waiters poll
            return
        with self.lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sdrbot-widget-listener", daemon=True)
                self._thread.start()

    def _connect(self):
        conn = listen_connect()
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                conn = self._connect()
            except Exception as exc:  # noqa: BLE001 — PostgreSQL down or restarting: waiters poll meanwhile
                log.warning("widget listener: cannot connect (%s); retrying", type(exc).__name__)
                self.listening.clear()
                self._stopping.wait(RECONNECT_SECONDS)
                continue
            self.listening.set()
            self._wake_all()  # anything may have changed while nobody listened
            try:
                with conn:
                    while not self._stopping.is_set():
                        for notify in conn.notifies(timeout=1.0):  # returns each second to look at _stopping
                            self._wake(notify.payload)
            except Exception as exc:  # noqa: BLE001 — the connection broke
                log.warning("widget listener: connection lost (%s); reconnecting", type(exc).__name__)
            self.listening.clear()
            self._stopping.wait(RECONNECT_SECONDS)
        self._wake_all()  # waiters go back to polling

    def _wake(self, key: str) -> None:
        with self.lock:
            waiting = list(self.waiters.get(key, ()))
        for watch in waiting:
            watch.event.set()

    def _wake_all(self) -> None:
        with self.lock:
            waiting = [w for ws in self.waiters.values() for w in ws]
        for watch in waiting:
            watch.event.set()


hub = Hub()

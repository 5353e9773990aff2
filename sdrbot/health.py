"""``/healthz``: one JSON report of every part the product needs, HTTP 200 only when all are healthy, else 503."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

CELERY_PING_TIMEOUT_S = 1.0


def _database() -> dict[str, Any]:
    with connection.cursor() as cur:
        cur.execute("SELECT version()")
        (version,) = cur.fetchone()
    return {"version": version.split(",")[0]}


def _pgvector() -> dict[str, Any]:
    with connection.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cur.fetchone()
    if row is None:
        raise RuntimeError("extension 'vector' is not installed in this database")
    return {"version": row[0]}


def _redis() -> dict[str, Any]:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        client.ping()
        return {"version": client.info("server").get("redis_version")}
    finally:
        client.close()


def _celery() -> dict[str, Any]:
    from sdrbot.celery import app

    # limit=1: answer as soon as one worker replies instead of waiting out the timeout for all of them
    replies = app.control.ping(timeout=CELERY_PING_TIMEOUT_S, limit=1)
    if not replies:
        raise RuntimeError(f"no Celery worker answered a ping within {CELERY_PING_TIMEOUT_S}s")
    return {"workers": sorted(name for reply in replies for name in reply)}


def _embedding_model() -> dict[str, Any]:
    from sdrbot.embeddings import get_embedder

    emb = get_embedder()
    vec = emb.embed(["health check"])
    if vec.shape != (1, settings.EMBEDDING_DIMENSIONS):
        raise RuntimeError(f"model returned shape {vec.shape}, expected (1, {settings.EMBEDDING_DIMENSIONS})")
    return {"model": emb.name, "dimensions": int(vec.shape[1])}


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": _database,
    "pgvector": _pgvector,
    "redis": _redis,
    "celery": _celery,
    "embedding_model": _embedding_model,
}


def run_checks() -> dict[str, dict[str, Any]]:
    """Each check → ``{"ok": bool, "ms": float, ...details or "error": str}``. Never raises."""
    out: dict[str, dict[str, Any]] = {}
    for name, check in CHECKS.items():
        t = time.perf_counter()
        try:
            out[name] = {"ok": True, **check()}
        except Exception as exc:  # a health check reports every failure rather than raising it
            out[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        out[name]["ms"] = round((time.perf_counter() - t) * 1000, 1)
    return out


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = run_checks()
    ok = all(c["ok"] for c in checks.values())
    return JsonResponse({"status": "ok" if ok else "unhealthy", "checks": checks}, status=200 if ok else 503)

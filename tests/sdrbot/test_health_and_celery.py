"""/healthz and the Celery round trip, against the real services and a real worker process."""

from __future__ import annotations

import pytest
from django.conf import settings

from sdrbot.celery import app
from sdrbot.tasks import ping


def test_celery_config_is_safe_for_redelivery() -> None:
    conf = app.conf
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.task_time_limit == settings.CELERY_TASK_TIME_LIMIT > conf.task_soft_time_limit > 0
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


@pytest.mark.django_db(transaction=True)
def test_smoke_task_round_trip_through_a_real_worker(celery_worker_process) -> None:
    result = ping.delay("hello").get(timeout=30)
    assert result["echo"] == "hello"
    assert result["worker"].startswith("test-worker-")


@pytest.mark.django_db(transaction=True)
def test_healthz_all_green_with_worker(client, celery_worker_process) -> None:
    resp = client.get("/healthz")
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "pgvector", "redis", "celery", "embedding_model"}
    assert body["checks"]["pgvector"]["version"].startswith("0.8")
    assert body["checks"]["embedding_model"] == {**body["checks"]["embedding_model"], "ok": True, "dimensions": 384}
    assert any(w.startswith("test-worker-") for w in body["checks"]["celery"]["workers"])


@pytest.mark.django_db
def test_healthz_503_names_the_broken_part(client, settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    resp = client.get("/healthz")
    body = resp.json()
    assert resp.status_code == 503
    assert body["status"] == "unhealthy"
    assert body["checks"]["redis"]["ok"] is False and "Connection" in body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_healthz_rejects_post(client) -> None:
    assert client.post("/healthz").status_code == 405

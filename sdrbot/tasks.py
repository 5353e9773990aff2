"""Cross-cutting Celery tasks."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="sdrbot.ping", time_limit=10, soft_time_limit=5)
def ping(payload: str) -> dict[str, str]:
    """Smoke task: proves a real worker round trip (broker → worker → result backend). Returns the payload and
    the worker's hostname."""
    from celery import current_task

    return {"echo": payload, "worker": str(current_task.request.hostname)}

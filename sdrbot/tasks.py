"""Cross-cutting Celery tasks."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="sdrbot.ping", time_limit=10, soft_time_limit=5, ignore_result=False)
def ping(payload: str) -> dict[str, str]:
    """Smoke task: proves a real worker round trip (broker → worker → result backend). Returns the payload and
    the worker's hostname."""
    from celery import current_task

    return {"echo": payload, "worker": str(current_task.request.hostname)}


@shared_task(name="sdrbot.export_trace", time_limit=60, soft_time_limit=45, max_retries=5,
             autoretry_for=(ConnectionError, TimeoutError), retry_backoff=True, retry_jitter=True)
def export_trace(trace_id: str) -> str:
    """Send one trace (its spans and scores) to Langfuse. Runs apart from drafting: a slow or missing Langfuse
    delays nothing. Returns quietly when the trace is gone or Langfuse is not configured."""
    from sdrbot import langfuse_export

    return langfuse_export.export_trace(trace_id)

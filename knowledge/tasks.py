"""Celery tasks of the knowledge base (thin: each calls one service)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="knowledge.sources_refresh_due", time_limit=3600, soft_time_limit=3500)
def sources_refresh_due() -> list[str]:
    """Periodic (beat): re-sync sources older than their refresh interval."""
    from knowledge import services

    return services.sources_refresh_due()

"""Celery tasks of the drafting pipeline (thin: ids in, one service call)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings


@shared_task(name="drafts.draft_generate", time_limit=settings.CELERY_TASK_TIME_LIMIT,
             soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT, acks_late=True)
def draft_generate(draft_id: int) -> str:
    """Produce one pending draft. Safe to run twice (the service claims the draft); returns the outcome."""
    from drafts import services

    draft = services.draft_generate(draft_id=draft_id)
    return "skipped" if draft is None else draft.status


@shared_task(name="drafts.rollout_breaker", time_limit=120, soft_time_limit=100)
def rollout_breaker() -> list[str]:
    """Periodic (beat): demote customer-facing categories whose bot replies go wrong (drafts.rollout)."""
    from drafts import rollout

    return [c.category.slug for c in rollout.breaker_run()]


@shared_task(name="drafts.rollout_weeks_refresh", time_limit=600, soft_time_limit=540)
def rollout_weeks_refresh() -> int:
    """Nightly (beat): the weekly rollup behind the rollout dashboard's trends."""
    from drafts import rollout

    return rollout.rollout_weeks_refresh(weeks=2)

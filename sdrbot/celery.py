"""The Celery app. Settings come from django settings (``CELERY_*``): JSON serializer only, ``acks_late`` with
``reject_on_worker_lost`` (a task whose worker dies is redelivered, so every task must be safe to run twice),
hard and soft time limits, and a broker visibility timeout above the hard limit."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sdrbot.settings")

app = Celery("sdrbot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_up(**_kwargs) -> None:
    """Load the embedding model and the text tables in each worker process before its first task, so the first
    draft does not pay about a second of loading."""
    import django

    django.setup()
    from drafts.text import stop_words
    from sdrbot.embeddings import get_embedder

    get_embedder().embed(["warm up"])
    stop_words()

"""The Celery app. Settings come from django settings (``CELERY_*``): JSON serializer only, ``acks_late`` with
``reject_on_worker_lost`` (a task whose worker dies is redelivered, so every task must be safe to run twice),
hard and soft time limits, and a broker visibility timeout above the hard limit.

Database connections: Celery's Django fixup closes every connection before and after each task unless
``CELERY_DB_REUSE_MAX`` is set — a new PostgreSQL backend per draft, about 8 ms of the claim and 4 ms of CPU
(docs/benchmarks.md). The settings set it high, and the handlers below apply Django's own rule around every task
instead, as a request does: ``close_old_connections`` drops a connection older than ``CONN_MAX_AGE`` or unusable
(``CONN_HEALTH_CHECKS``), so a restarted database costs one reconnect, not a failed draft. With the connection pool
(``DB_POOL_MAX_SIZE``, the default) closing gives the connection back to the process's pool, which keeps it open."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sdrbot.settings")

app = Celery("sdrbot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_up(**_kwargs) -> None:
    """Load the embedding model and the text tables in each worker process before its first task, so the first
    draft does not pay about a second of loading; then move everything loaded so far out of the garbage
    collector's reach (``gc.freeze``, Python ≥ 3.7): the model, Django and scikit-learn objects live as long as
    the process, and full collections that walk them would land inside drafts as multi-millisecond pauses."""
    import gc

    import django

    django.setup()
    from drafts.text import stop_words
    from sdrbot.embeddings import get_embedder

    get_embedder().embed(["warm up"])
    stop_words()
    gc.collect()
    gc.freeze()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**_kwargs) -> None:
    from django.db import close_old_connections

    close_old_connections()

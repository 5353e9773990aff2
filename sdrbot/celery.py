"""The Celery app. Settings come from django settings (``CELERY_*``): JSON serializer only, ``acks_late`` with
``reject_on_worker_lost`` (a task whose worker dies is redelivered, so every task must be safe to run twice),
hard and soft time limits, and a broker visibility timeout above the hard limit."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sdrbot.settings")

app = Celery("sdrbot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

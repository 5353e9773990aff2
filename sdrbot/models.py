"""Traces, spans and scores: one trace per turn, stored in Postgres and optionally exported to Langfuse."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class Trace(models.Model):
    """One turn of one thread (``thread_id`` + ``turn_id``): every step the system took for it."""

    class Status(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        ERROR = "error"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    thread_id = models.CharField(max_length=64, db_index=True)
    turn_id = models.CharField(max_length=64)
    ticket_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    environment = models.CharField(max_length=32, default="development")
    metadata = models.JSONField(default=dict, blank=True)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    exported_at = models.DateTimeField(null=True, blank=True)
    export_error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["thread_id", "turn_id"])]
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.name} {self.thread_id}:{self.turn_id}"


class Span(models.Model):
    """One step of a trace: kind, input, output, timing, status and attempt number (retries are separate spans)."""

    class Kind(models.TextChoices):
        CLASSIFY = "classify"
        RETRIEVE = "retrieve"
        GENERATE = "generate"
        LLM = "llm"
        CHECK = "check"
        STORE = "store"
        TOOL = "tool"
        OTHER = "other"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="spans")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OTHER)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, default="ok")
    error = models.TextField(blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    duration_ms = models.FloatField()

    class Meta:
        ordering = ["started_at"]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name} (attempt {self.attempt})"


class Score(models.Model):
    """A named measurement attached to a trace (edit distance, thumbs, grounding, …); ``value`` is numeric,
    ``string_value`` for categorical scores."""

    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="scores")
    name = models.CharField(max_length=64)
    value = models.FloatField(null=True, blank=True)
    string_value = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    source = models.CharField(max_length=16, default="auto")  # auto | human
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    exported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["name", "created_at"])]

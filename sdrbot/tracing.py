"""Tracing: one trace per turn (keyed by ``thread_id`` and ``turn_id``) with a span per step.

Spans are collected in memory while the turn runs and written in one insert when it ends, so tracing adds two
queries to a turn. Inputs and outputs are redacted (:mod:`sdrbot.pii`) before they are stored. When Langfuse is
configured, the finished trace is exported by a separate Celery task queued on commit, so a slow or absent
Langfuse never delays or breaks the turn.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sdrbot.models import Score, Span, Trace
from sdrbot.pii import redact

MAX_FIELD_CHARS = 20_000  # longer strings are cut in stored spans (a 100 KB message stays readable, not huge)


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + f"… [{len(value) - MAX_FIELD_CHARS} more characters]"
    if isinstance(value, dict):
        return {k: _clip(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clip(v) for v in value]
    return value


def clean(value: Any) -> Any:
    """What is stored or exported for a span field: redacted, clipped."""
    return _clip(redact(value))


@dataclass
class SpanHandle:
    name: str
    kind: str
    input: Any = None
    output: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    error: str = ""
    attempt: int = 1
    parent: SpanHandle | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    started_at: Any = None
    ended_at: Any = None
    duration_ms: float = 0.0


class SpanCollector:
    """Times steps as spans in memory. The base of :class:`TraceRecorder`; used alone where nothing must be
    stored (offline replay)."""

    def __init__(self) -> None:
        self.spans: list[SpanHandle] = []
        self._t0 = time.perf_counter()

    @contextmanager
    def span(self, name: str, kind: str, *, input: Any = None, attempt: int = 1,
             parent: SpanHandle | None = None) -> Iterator[SpanHandle]:
        """Time a step. An exception marks the span ``error`` (with its message) and propagates."""
        handle = SpanHandle(name=name, kind=kind, input=input, attempt=attempt, parent=parent,
                            started_at=timezone.now())
        t = time.perf_counter()
        try:
            yield handle
        except BaseException as exc:
            handle.status = "error"
            handle.error = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            handle.duration_ms = (time.perf_counter() - t) * 1000
            handle.ended_at = handle.started_at + timedelta(milliseconds=handle.duration_ms)
            self.spans.append(handle)

    def step_latency_ms(self) -> dict[str, float]:
        """Duration of each top-level step (ms), the last attempt winning when a step repeats."""
        return {s.name: round(s.duration_ms, 3) for s in self.spans if s.parent is None}


class TraceRecorder(SpanCollector):
    """Collects the spans of one turn and stores them with its trace. Usage::

        rec = TraceRecorder.start(name="draft", thread_id=..., turn_id=..., ticket_id=..., metadata={...})
        with rec.span("retrieve", "retrieve", input={...}) as s:
            s.output = {...}
        rec.finish(output={...})
    """

    def __init__(self, trace: Trace) -> None:
        super().__init__()
        self.trace = trace

    @classmethod
    def start(cls, *, name: str, thread_id: str, turn_id: str, ticket_id: int | None = None,
              metadata: dict[str, Any] | None = None, input: Any = None) -> TraceRecorder:
        trace = Trace.objects.create(
            name=name, thread_id=str(thread_id), turn_id=str(turn_id), ticket_id=ticket_id,
            environment=settings.SDRBOT_ENV, metadata=clean(metadata or {}), input=clean(input),
        )
        return cls(trace)

    def finish(self, *, status: str = "ok", output: Any = None, metadata: dict[str, Any] | None = None) -> Trace:
        """Write the spans and close the trace; queue the Langfuse export after commit when configured."""
        trace = self.trace
        trace.status = status
        trace.output = clean(output)
        if metadata:
            trace.metadata = {**trace.metadata, **clean(metadata)}
        trace.ended_at = timezone.now()
        trace.duration_ms = round((time.perf_counter() - self._t0) * 1000, 3)
        Span.objects.bulk_create([
            Span(id=s.id, trace=trace, parent_id=s.parent.id if s.parent else None, name=s.name, kind=s.kind,
                 input=clean(s.input), output=clean(s.output), metadata=clean(s.metadata), status=s.status,
                 error=redact(s.error), attempt=s.attempt, started_at=s.started_at, ended_at=s.ended_at,
                 duration_ms=round(s.duration_ms, 3))
            # shallowest first, so every parent row precedes its children in the insert
            for s in sorted(self.spans, key=_depth)
        ])
        trace.save(update_fields=["status", "output", "metadata", "ended_at", "duration_ms"])
        schedule_export(trace.pk)
        return trace


def _depth(span: SpanHandle) -> int:
    depth, node = 0, span.parent
    while node is not None:
        depth, node = depth + 1, node.parent
    return depth


def langfuse_enabled() -> bool:
    return bool(settings.LANGFUSE_PUBLIC_KEY and settings.LANGFUSE_SECRET_KEY and settings.LANGFUSE_HOST)


def schedule_export(trace_id: uuid.UUID) -> None:
    if not langfuse_enabled():
        return
    from sdrbot.tasks import export_trace

    transaction.on_commit(lambda: export_trace.delay(str(trace_id)))


def score_record(*, trace: Trace, name: str, value: float | None = None, string_value: str = "", comment: str = "",
                 source: str = "auto", author=None) -> Score:
    """Attach a score to a trace (exported to Langfuse after commit when configured)."""
    score = Score.objects.create(trace=trace, name=name, value=value, string_value=string_value[:200],
                                 comment=redact(comment), source=source, author=author)
    schedule_export(trace.pk)
    return score


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]

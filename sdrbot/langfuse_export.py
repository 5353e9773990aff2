"""Export of one stored trace (its spans and scores) to Langfuse, with the Langfuse SDK (v5, OpenTelemetry-based).

Called by the Celery task :func:`sdrbot.tasks.export_trace`, never inside a turn. What is sent:

* the trace as OTLP spans (``POST {LANGFUSE_HOST}/api/public/otel/v1/traces``, protobuf, gzip): a root observation
  named ``trace.name`` carrying the trace's input, output and metadata, with the trace name, session id
  (= ``thread_id``), environment and correlation ids set as Langfuse trace attributes, and one child observation
  per :class:`~sdrbot.models.Span` (``kind == "llm"`` → generation, any other kind → span) nested per
  ``Span.parent``, with the real start and end times;
* the scores not exported yet (``POST {LANGFUSE_HOST}/api/public/scores``, JSON list).

Ids are deterministic, so re-exporting upserts rather than duplicates: the Langfuse trace id is ``trace.id.hex``,
an observation id is the low 64 bits of the span's UUID (the root's: of the trace's UUID), a score id is
``<trace hex>-<score pk>`` with the score's creation time as its timestamp. A trace whose spans were exported after
it ended is not sent again (only its new scores are); ``force=True`` sends it anyway.

Every network call is bounded by ``settings.LANGFUSE_EXPORT_TIMEOUT`` (seconds, default 5) and is not retried here:
a failure is recorded in ``trace.export_error`` and raised as :class:`ConnectionError` or :class:`TimeoutError`,
which the Celery task retries with backoff.

One Langfuse client is kept per process for the current settings (host, keys, timeout) and rebuilt when they
change. It has its own OpenTelemetry ``TracerProvider`` (the process-wide one is never touched) and is kept out of
the SDK's process-wide client registry. Exports in one process run one at a time, under a lock.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from langfuse import Langfuse, LangfuseGeneration, LangfuseSpan, propagate_attributes
from langfuse._client.resource_manager import LangfuseResourceManager
from langfuse._version import __version__ as langfuse_version
from langfuse.api import ScoreDataType
from langfuse.api.core.api_error import ApiError
from langfuse.api.scores.types.create_score_batch_results import CreateScoreBatchResults
from langfuse.api.scores.types.create_score_request import CreateScoreRequest
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from sdrbot.models import Score, Span, Trace
from sdrbot.tracing import format_exception, langfuse_enabled

logger = logging.getLogger(__name__)

OTLP_PATH = "/api/public/otel/v1/traces"
DEFAULT_TIMEOUT_SECONDS = 5
# Langfuse's rule for environment names; anything else stays in metadata only
_ENVIRONMENT_RE = re.compile(r"^(?!langfuse)[a-z0-9_-]{1,40}$")
# Langfuse drops propagated trace metadata values whose JSON encoding is longer than this
_MAX_TRACE_METADATA_CHARS = 200
_OTLP_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)

_export_lock = threading.RLock()
_current: _Exporter | None = None  # the client for the current settings; replaced when they change


class ExportDisabled(RuntimeError):
    """The SDK is switched off by its environment variables: nothing can be sent, and retrying will not help."""


def export_trace(trace_id: str, *, force: bool = False) -> str:
    """Send one trace to Langfuse (see the module docstring). Returns a one-line summary; raises
    :class:`ConnectionError` / :class:`TimeoutError` when Langfuse cannot be reached or answers with an error."""
    if not langfuse_enabled():
        return "langfuse not configured: nothing exported"
    try:
        trace = Trace.objects.filter(pk=trace_id).first()
    except (ValidationError, ValueError):
        trace = None
    if trace is None:
        return f"trace {trace_id} not found: nothing exported"

    send_spans = force or not (trace.exported_at and trace.ended_at and trace.exported_at >= trace.ended_at)
    spans = list(trace.spans.order_by("started_at", "id")) if send_spans else []
    scores = list(trace.scores.filter(exported_at__isnull=True).order_by("created_at", "pk"))
    if not send_spans and not scores:
        return f"trace {trace.id}: already exported, no new scores"

    parts: list[str] = []
    try:
        with _export_lock:
            exporter = _exporter()
            if send_spans:
                exporter.send_trace(trace, spans)
                trace.exported_at = timezone.now()
                trace.export_error = ""
                trace.save(update_fields=["exported_at", "export_error"])
                parts.append(f"{len(spans) + 1} observations")
            if scores:
                rejected = exporter.send_scores(trace, scores)
                now = timezone.now()
                for s in scores:
                    s.exported_at = now
                Score.objects.bulk_update(scores, ["exported_at"])
                parts.append(f"{len(scores)} scores")
                if rejected:
                    trace.export_error = f"Langfuse rejected scores: {rejected}"[:2000]
                    trace.save(update_fields=["export_error"])
                    parts.append(f"with rejections ({rejected})")
                elif trace.export_error:
                    trace.export_error = ""
                    trace.save(update_fields=["export_error"])
    except ExportDisabled as exc:
        trace.export_error = str(exc)
        trace.save(update_fields=["export_error"])
        return f"trace {trace.id}: not exported: {exc}"
    except Exception as exc:  # recorded for the admin; ConnectionError / TimeoutError make the task retry
        trace.export_error = format_exception(exc)
        trace.save(update_fields=["export_error"])
        logger.warning("langfuse export of trace %s failed: %s", trace.id, exc)
        raise
    return f"trace {trace.id}: exported " + ", ".join(parts)


# ── ids and times ──────────────────────────────────────────────────────────────────────────────────────────────


def langfuse_trace_id(trace: Trace) -> str:
    return trace.id.hex


def observation_id(u: uuid.UUID) -> str:
    """A 16-hex-digit OpenTelemetry span id from a UUID (its low 64 bits; never the invalid all-zero id)."""
    return format(_span_id_int(u), "016x")


def score_id(score: Score) -> str:
    return f"{score.trace_id.hex}-{score.pk}"


def _span_id_int(u: uuid.UUID) -> int:
    return (u.int & 0xFFFF_FFFF_FFFF_FFFF) or (u.int >> 64) or 1


def _ns(dt: datetime) -> int:
    if timezone.is_naive(dt):
        dt = dt.replace(tzinfo=dt_timezone.utc)
    return (dt - _EPOCH) // timedelta(microseconds=1) * 1000


class _PresetIds(IdGenerator):
    """Gives the root span our trace id and each span the id set just before it is started."""

    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id
        self.next_span_id: int | None = None
        self._random = RandomIdGenerator()

    def generate_trace_id(self) -> int:
        return self.trace_id

    def generate_span_id(self) -> int:
        span_id, self.next_span_id = self.next_span_id, None
        return span_id or self._random.generate_span_id()


class _CountingExporter(SpanExporter):
    """Wraps the OTLP exporter to learn whether every batch was accepted (the batch processor only logs failures)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0
        self.failed_batches = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.exported = self.failed_batches = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed_batches += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _ErrorLog(logging.Handler):
    """Keeps the OTLP exporter's error messages (which carry the HTTP status) for ``export_error``."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # pragma: no cover - a broken record must not break the export
            pass


@contextmanager
def _captured(logger_name: str) -> Iterator[_ErrorLog]:
    handler = _ErrorLog()
    target = logging.getLogger(logger_name)
    target.addHandler(handler)
    try:
        yield handler
    finally:
        target.removeHandler(handler)


# ── the client ─────────────────────────────────────────────────────────────────────────────────────────────────


class _Exporter:
    """A Langfuse client for one configuration (host, keys, timeout), with its own tracer provider and OTLP
    exporter. Kept between exports (see :func:`_exporter`); exports run one at a time under ``_export_lock``."""

    def __init__(self, host: str, public_key: str, secret_key: str, timeout: int) -> None:
        self.key = (host, public_key, secret_key, timeout)
        self.host, self.public_key, self.timeout = host, public_key, timeout
        self.endpoint = host + OTLP_PATH
        self.ids = _PresetIds(0)
        self.provider = TracerProvider(id_generator=self.ids, resource=Resource.create({"service.name": "sdrbot"}),
                                       shutdown_on_exit=False)
        auth = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode("ascii")
        # the headers the SDK's own exporter sends (a custom exporter is wired by hand, as the SDK documents)
        self.counter = _CountingExporter(OTLPSpanExporter(
            endpoint=self.endpoint, timeout=timeout, compression=Compression.Gzip,
            headers={"Authorization": f"Basic {auth}", "x-langfuse-sdk-name": "python",
                     "x-langfuse-sdk-version": langfuse_version, "x-langfuse-public-key": public_key,
                     "x-langfuse-ingestion-version": "4"},
        ))
        # The SDK keeps one resource manager per public key in a process-wide registry and hands a registered one
        # to every new client with that key, whatever its host. Ours must neither pick up another's nor be handed
        # out (its tracer provider gives every root span our preset trace id), so it is taken out of the registry
        # at once and whatever was registered before is put back.
        with LangfuseResourceManager._lock:
            displaced = LangfuseResourceManager._instances.pop(public_key, None)
            try:
                self.client = Langfuse(
                    public_key=public_key, secret_key=secret_key, base_url=host, timeout=timeout,
                    tracer_provider=self.provider, span_exporter=self.counter, tracing_enabled=True,
                )
            finally:
                LangfuseResourceManager._instances.pop(public_key, None)
                if displaced is not None:
                    LangfuseResourceManager._instances[public_key] = displaced

    def close(self) -> None:
        try:
            self.client.shutdown()  # flushes (nothing is pending between exports) and stops the SDK's threads
            # the SDK's shutdown leaves its prompt-cache refresh thread running (langfuse 5.0.4)
            task_manager = getattr(getattr(self.client._resources, "prompt_cache", None), "_task_manager", None)
            if task_manager is not None:
                task_manager.shutdown()
        except Exception:  # pragma: no cover - teardown must not break the next export
            logger.exception("langfuse client shutdown failed")
        finally:
            self.provider.shutdown()

    # trace and spans

    def send_trace(self, trace: Trace, spans: Sequence[Span]) -> None:
        self.counter.reset()
        self.ids.trace_id = int(langfuse_trace_id(trace), 16)
        environment = trace.environment if _ENVIRONMENT_RE.match(trace.environment or "") else None
        ids = {"thread_id": trace.thread_id, "turn_id": trace.turn_id, "ticket_id": trace.ticket_id,
               "environment": trace.environment}
        trace_metadata = {**_short_values(trace.metadata), **{k: v for k, v in ids.items() if v is not None}}
        root_end = trace.ended_at or max([s.ended_at for s in spans] + [trace.started_at])
        tracer = self.client._otel_tracer

        # a clean context: the export must not become a child of whatever span the caller has open
        token = otel_context.attach(otel_context.Context())
        try:
            with propagate_attributes(trace_name=_ascii(trace.name, 200), session_id=_ascii(trace.thread_id, 200),
                                      environment=environment, metadata=trace_metadata):
                self.ids.next_span_id = _span_id_int(trace.id)
                root_otel = tracer.start_span(trace.name, start_time=_ns(trace.started_at))
                if not root_otel.is_recording():
                    root_otel.end()
                    raise ExportDisabled("Langfuse tracing is disabled in this process (LANGFUSE_TRACING_ENABLED=false "
                                         "or OTEL_SDK_DISABLED=true): the trace was not sent")
                root = LangfuseSpan(
                    otel_span=root_otel, langfuse_client=self.client, environment=environment,
                    input=trace.input, output=trace.output,
                    metadata={**(trace.metadata or {}), **ids, "status": trace.status, "duration_ms": trace.duration_ms,
                              "sdrbot_trace_id": str(trace.id)},
                    level="ERROR" if trace.status == Trace.Status.ERROR else None,
                    status_message="turn ended with status error" if trace.status == Trace.Status.ERROR else None,
                )
                opened: list[tuple[Any, int]] = []
                otel_by_id: dict[uuid.UUID, Any] = {}
                for span in _parents_first(spans):
                    parent_otel = otel_by_id.get(span.parent_id) if span.parent_id else None
                    ctx = otel_trace.set_span_in_context(parent_otel or root_otel)
                    self.ids.next_span_id = _span_id_int(span.id)
                    otel_span = tracer.start_span(span.name, context=ctx, start_time=_ns(span.started_at))
                    otel_by_id[span.id] = otel_span
                    opened.append((self._observation(span, otel_span, environment), _ns(span.ended_at)))
                for observation, end_ns in reversed(opened):  # children end before their parents, as they did
                    observation.end(end_time=end_ns)
                root.end(end_time=max(_ns(root_end), _ns(trace.started_at)))
        finally:
            otel_context.detach(token)

        expected = len(spans) + 1
        t0 = time.monotonic()
        with _captured(_OTLP_LOGGER) as log:
            self.provider.force_flush(self.timeout * 1000)
        if self.counter.failed_batches or self.counter.exported < expected:
            detail = "; ".join(log.messages[-2:]) or "no response"
            message = (f"Langfuse OTLP export to {self.endpoint} failed "
                       f"({self.counter.exported}/{expected} spans accepted): {detail}")
            # a first attempt that used up the whole deadline without an answer is a timeout
            silent = not any("Transient error" in m or "code:" in m for m in log.messages)
            raise (TimeoutError if silent and time.monotonic() - t0 >= 0.9 * self.timeout else ConnectionError)(message)

    def _observation(self, span: Span, otel_span: Any, environment: str | None) -> Any:
        metadata = {**(span.metadata or {}), "kind": span.kind, "attempt": span.attempt, "status": span.status,
                    "duration_ms": span.duration_ms, "sdrbot_span_id": str(span.id)}
        common = dict(otel_span=otel_span, langfuse_client=self.client, environment=environment, input=span.input,
                      output=span.output, metadata=metadata,
                      level="ERROR" if span.status == "error" else None,
                      status_message=(span.error or "error") if span.status == "error" else None)
        if span.kind == Span.Kind.LLM:
            meta = span.metadata or {}
            usage = {k: int(meta[m]) for k, m in (("input", "prompt_tokens"), ("output", "completion_tokens"))
                     if isinstance(meta.get(m), (int, float)) and not isinstance(meta.get(m), bool)}
            model = meta.get("model") if isinstance(meta.get("model"), str) else None
            return LangfuseGeneration(**common, model=model, usage_details=usage or None)
        return LangfuseSpan(**common)

    # scores

    def send_scores(self, trace: Trace, scores: Sequence[Score]) -> str:
        """POST the scores; returns Langfuse's rejection messages ("" when all were accepted)."""
        environment = trace.environment if _ENVIRONMENT_RE.match(trace.environment or "") else None
        batch = [r for r in (_score_request(trace, s, environment) for s in scores) if r is not None]
        if not batch:
            return ""
        try:
            response = self.client.api.scores.create(
                request=batch, request_options={"timeout_in_seconds": self.timeout, "max_retries": 0})
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"Langfuse scores request to {self.host} timed out after {self.timeout}s") from exc
        except httpx.TransportError as exc:
            raise ConnectionError(f"Langfuse scores request to {self.host} failed: {exc}") from exc
        except ApiError as exc:
            if exc.status_code is not None and 200 <= exc.status_code < 300:  # accepted, body not as documented
                return ""
            raise ConnectionError(f"Langfuse answered {exc.status_code} to POST /api/public/scores: "
                                  f"{str(exc.body)[:500]}") from exc
        if isinstance(response, CreateScoreBatchResults) and response.rejected:
            return "; ".join(e.message for e in response.errors) or f"{response.rejected} rejected"
        return ""


def _exporter() -> _Exporter:
    """The client for the current settings (call with ``_export_lock`` held)."""
    global _current
    timeout = max(1, int(getattr(settings, "LANGFUSE_EXPORT_TIMEOUT", DEFAULT_TIMEOUT_SECONDS)))
    key = (settings.LANGFUSE_HOST.rstrip("/"), settings.LANGFUSE_PUBLIC_KEY, settings.LANGFUSE_SECRET_KEY, timeout)
    if _current is None or _current.key != key:
        close_client()
        _current = _Exporter(*key)
    return _current


def close_client() -> None:
    """Shut the cached client down (it is rebuilt on the next export)."""
    global _current
    with _export_lock:
        if _current is not None:
            current, _current = _current, None
            current.close()


def _score_request(trace: Trace, score: Score, environment: str | None) -> CreateScoreRequest | None:
    if score.value is not None:
        value: float | str = float(score.value)
        data_type = ScoreDataType.NUMERIC
    elif score.string_value:
        value, data_type = score.string_value, ScoreDataType.CATEGORICAL
    else:
        logger.warning("score %s of trace %s has no value; not exported", score.pk, trace.id)
        return None
    metadata: dict[str, Any] = {"source": score.source}
    if score.author_id:
        metadata["author_id"] = score.author_id
    if score.value is not None and score.string_value:
        metadata["string_value"] = score.string_value
    return CreateScoreRequest(
        id=score_id(score), trace_id=langfuse_trace_id(trace), name=score.name, value=value, data_type=data_type,
        comment=score.comment or None, environment=environment, metadata=metadata, timestamp=score.created_at,
    )


def _parents_first(spans: Sequence[Span]) -> list[Span]:
    """Spans in start order, each parent before its children (a span whose parent is missing hangs off the root)."""
    known = {s.id for s in spans}
    children: dict[uuid.UUID | None, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_id if s.parent_id in known else None, []).append(s)
    ordered: list[Span] = []
    stack = list(reversed(sorted(children.get(None, []), key=lambda s: s.started_at)))
    seen: set[uuid.UUID] = set()
    while stack:
        s = stack.pop()
        if s.id in seen:
            continue
        seen.add(s.id)
        ordered.append(s)
        stack.extend(reversed(sorted(children.get(s.id, []), key=lambda c: c.started_at)))
    # a parent cycle (never written by TraceRecorder) would leave spans unreached: export them under the root
    ordered.extend(s for s in spans if s.id not in seen)
    return ordered


def _short_values(metadata: Any) -> dict[str, Any]:
    """The trace metadata entries Langfuse accepts as trace attributes (ASCII keys, short values)."""
    if not isinstance(metadata, dict):
        return {}
    out = {}
    for key, value in metadata.items():
        if value is None or not isinstance(key, str) or not key.isascii():
            continue
        try:
            encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            continue
        if len(encoded) <= _MAX_TRACE_METADATA_CHARS:
            out[key] = value
    return out


def _ascii(value: str | None, limit: int) -> str | None:
    if not value:
        return None
    value = value[:limit]
    return value if value.isascii() else None

"""Export of traces to Langfuse through the real Langfuse SDK, against a local server speaking Langfuse's HTTP API
(OTLP/HTTP protobuf for spans, JSON for scores); and the read-only trace admin."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time

import pytest
from django.urls import reverse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sdrbot import langfuse_export
from sdrbot.langfuse_export import export_trace
from sdrbot.models import Score, Trace
from sdrbot.tracing import TraceRecorder, score_record

OTLP_PATH = "/api/public/otel/v1/traces"
SCORES_PATH = "/api/public/scores"


@pytest.fixture(autouse=True)
def _fresh_client():
    yield
    langfuse_export.close_client()


def langfuse_like(method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
    """What Langfuse answers: an empty ExportTraceServiceResponse for OTLP, 202 Accepted for a score batch."""
    if path.startswith(OTLP_PATH):
        return 200, {"Content-Type": "application/x-protobuf"}, b""
    if path.startswith(SCORES_PATH):
        return 202, {"Content-Type": "application/json"}, b'{"message": "Accepted"}'
    return 200, {"Content-Type": "application/json"}, b"{}"


def failing(method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
    return 500, {"Content-Type": "application/json"}, b'{"message": "Internal Server Error"}'


def configure(settings, url: str, timeout: int = 2) -> None:
    settings.LANGFUSE_PUBLIC_KEY = "pk-lf-test"
    settings.LANGFUSE_SECRET_KEY = "sk-lf-test"
    settings.LANGFUSE_HOST = url
    settings.LANGFUSE_EXPORT_TIMEOUT = timeout


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record_turn() -> Trace:
    rec = TraceRecorder.start(name="draft", thread_id="t1", turn_id="3", ticket_id=1,
                              metadata={"channel": "email", "prompt_version": "v7"},
                              input={"message": "my email is jane@example.com"})
    with rec.span("retrieve", "retrieve", input={"query": "refund for jane@example.com"}) as s:
        s.output = {"hits": [11, 12]}
    with rec.span("generate", "generate", input={"hits": 2}) as gen:
        with rec.span("chat.completions", "llm", parent=gen, attempt=2,
                      input={"messages": [{"role": "user", "content": "my email is jane@example.com"}]}) as llm:
            llm.output = {"content": "Hello, we will refund you."}
            llm.metadata = {"model": "gpt-test", "prompt_tokens": 120, "completion_tokens": 30}
        gen.output = {"reply": "Hello, we will refund you."}
    with pytest.raises(ValueError):
        with rec.span("grounding_check", "check", input={"reply": "Hello"}):
            raise ValueError("citation 99 does not exist")
    return rec.finish(output={"reply": "Hello, we will refund you."})


def otlp_spans(server) -> list:
    """Every span of every OTLP request the server received, decoded from (gzipped) protobuf."""
    spans = []
    for r in server.requests:
        if r["path"].startswith(OTLP_PATH):
            body = gzip.decompress(r["body"]) if r["headers"].get("content-encoding") == "gzip" else r["body"]
            req = ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    spans.extend(ss.spans)
    return spans


def attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


def paths(server) -> list[str]:
    return [r["path"] for r in server.requests]


@pytest.mark.django_db
def test_export_sends_nested_observations_and_scores(settings, recording_server) -> None:
    server = recording_server(langfuse_like)
    configure(settings, server.url)
    trace = record_turn()
    score_record(trace=trace, name="edit_distance", value=0.25, comment="edited by jane@example.com")

    summary = export_trace(str(trace.id))

    assert "exported" in summary
    assert paths(server) == [OTLP_PATH, SCORES_PATH]
    otlp = server.requests[0]
    assert otlp["method"] == "POST"
    assert otlp["headers"]["content-type"] == "application/x-protobuf"
    assert otlp["headers"]["authorization"] == "Basic " + base64.b64encode(b"pk-lf-test:sk-lf-test").decode()
    assert otlp["headers"]["x-langfuse-public-key"] == "pk-lf-test"

    spans = {s.name: s for s in otlp_spans(server)}
    assert set(spans) == {"draft", "retrieve", "generate", "chat.completions", "grounding_check"}
    assert {s.trace_id.hex() for s in spans.values()} == {trace.id.hex}
    # nesting: the root is the trace, the llm call sits under "generate"
    root = spans["draft"]
    assert root.parent_span_id == b""
    assert root.span_id.hex() == langfuse_export.observation_id(trace.id)
    for name in ("retrieve", "generate", "grounding_check"):
        assert spans[name].parent_span_id == root.span_id
    assert spans["chat.completions"].parent_span_id == spans["generate"].span_id
    stored = {s.name: s for s in trace.spans.all()}
    for name, s in stored.items():
        assert spans[name].span_id.hex() == langfuse_export.observation_id(s.id)
        assert spans[name].start_time_unix_nano == langfuse_export._ns(s.started_at)  # the real times
        assert spans[name].end_time_unix_nano == langfuse_export._ns(s.ended_at)

    # trace attributes on every observation; the root carries the trace's input and output
    root_attrs = attrs(root)
    assert root_attrs["langfuse.trace.name"] == "draft"
    assert root_attrs["session.id"] == "t1"
    assert root_attrs["langfuse.environment"] == "test"
    assert json.loads(root_attrs["langfuse.trace.metadata.thread_id"]) == "t1"
    assert json.loads(root_attrs["langfuse.trace.metadata.turn_id"]) == "3"
    assert json.loads(root_attrs["langfuse.trace.metadata.ticket_id"]) == 1
    assert json.loads(root_attrs["langfuse.trace.metadata.channel"]) == "email"
    assert json.loads(root_attrs["langfuse.observation.input"]) == {"message": "my email is [email]"}
    assert json.loads(root_attrs["langfuse.observation.output"]) == {"reply": "Hello, we will refund you."}
    assert all(attrs(s)["session.id"] == "t1" for s in spans.values())

    llm = attrs(spans["chat.completions"])
    assert llm["langfuse.observation.type"] == "generation"
    assert llm["langfuse.observation.model.name"] == "gpt-test"
    assert json.loads(llm["langfuse.observation.usage_details"]) == {"input": 120, "output": 30}
    assert json.loads(llm["langfuse.observation.metadata.attempt"]) == 2
    assert json.loads(llm["langfuse.observation.metadata.status"]) == "ok"
    assert attrs(spans["retrieve"])["langfuse.observation.type"] == "span"
    assert json.loads(attrs(spans["retrieve"])["langfuse.observation.output"]) == {"hits": [11, 12]}

    err = attrs(spans["grounding_check"])
    assert err["langfuse.observation.level"] == "ERROR"
    assert "citation 99 does not exist" in err["langfuse.observation.status_message"]
    assert json.loads(err["langfuse.observation.metadata.status"]) == "error"
    assert spans["grounding_check"].status.code == 2  # STATUS_CODE_ERROR

    # PII stays redacted all the way out
    everything = b"".join(gzip.decompress(r["body"]) if r["headers"].get("content-encoding") == "gzip" else r["body"]
                          for r in server.requests)
    assert b"[email]" in everything
    assert b"jane@example.com" not in everything

    score_body = json.loads(server.requests[1]["body"])
    assert score_body == [{
        "id": f"{trace.id.hex}-{trace.scores.get().pk}", "traceId": trace.id.hex, "name": "edit_distance",
        "value": 0.25, "dataType": "NUMERIC", "comment": "edited by [email]", "environment": "test",
        "metadata": {"source": "auto"}, "timestamp": score_body[0]["timestamp"],
    }]

    trace.refresh_from_db()
    assert trace.exported_at is not None and trace.export_error == ""
    assert trace.scores.get().exported_at is not None

    # exporting again sends nothing: the spans went out after the trace ended, the score is marked
    assert "already exported" in export_trace(str(trace.id))
    assert paths(server) == [OTLP_PATH, SCORES_PATH]

    # a later score goes out alone, categorical
    score_record(trace=trace, name="thumbs", string_value="up", source="human")
    export_trace(str(trace.id))
    assert paths(server) == [OTLP_PATH, SCORES_PATH, SCORES_PATH]
    later = json.loads(server.requests[2]["body"])
    assert [(s["name"], s["value"], s["dataType"]) for s in later] == [("thumbs", "up", "CATEGORICAL")]
    assert Score.objects.filter(trace=trace, exported_at__isnull=True).count() == 0

    # a forced re-export reuses the same ids: Langfuse upserts, no duplicates
    export_trace(str(trace.id), force=True)
    assert paths(server)[-1] == OTLP_PATH
    again = otlp_spans(server)[-5:]
    assert {(s.name, s.span_id) for s in again} == {(s.name, s.span_id) for s in spans.values()}


def sdk_threads() -> list[str]:
    """Live threads other than the test servers' own."""
    return sorted(t.name for t in threading.enumerate()
                  if "serve_forever" not in t.name and "process_request_thread" not in t.name)


@pytest.mark.django_db
def test_client_follows_settings_and_stays_out_of_the_sdk_registry(settings, recording_server) -> None:
    """Same public key, different hosts: each export reaches the host configured at the time. A client registered
    by other code under the same key is neither used nor disturbed, and repeated exports start no new threads."""
    from langfuse import Langfuse
    from langfuse._client.resource_manager import LangfuseResourceManager
    from opentelemetry.sdk.trace import TracerProvider

    foreign_server = recording_server(langfuse_like)
    foreign = Langfuse(public_key="pk-lf-test", secret_key="other", base_url=foreign_server.url,
                       tracer_provider=TracerProvider(shutdown_on_exit=False))
    try:
        first, second = recording_server(langfuse_like), recording_server(langfuse_like)
        configure(settings, first.url)
        export_trace(str(record_turn().id))
        threads = sdk_threads()
        export_trace(str(record_turn().id))
        configure(settings, second.url)
        export_trace(str(record_turn().id))
        export_trace(str(record_turn().id))
        assert paths(first) == [OTLP_PATH, OTLP_PATH] and paths(second) == [OTLP_PATH, OTLP_PATH]
        assert LangfuseResourceManager._instances["pk-lf-test"] is foreign._resources
        foreign.flush()
        assert foreign_server.requests == []
        assert len(sdk_threads()) <= len(threads)
    finally:
        foreign.shutdown()
        LangfuseResourceManager._instances.pop("pk-lf-test", None)


@pytest.mark.django_db
def test_server_error_raises_retryable_error_and_records_it(settings, recording_server) -> None:
    server = recording_server(failing)
    configure(settings, server.url)
    trace = record_turn()
    score_record(trace=trace, name="edit_distance", value=0.5)

    t0 = time.monotonic()
    with pytest.raises((ConnectionError, TimeoutError)) as exc_info:
        export_trace(str(trace.id))
    assert time.monotonic() - t0 < 10
    assert "500" in str(exc_info.value)
    assert paths(server) == [OTLP_PATH]  # scores wait until the trace is through

    trace.refresh_from_db()
    assert trace.exported_at is None
    assert "500" in trace.export_error
    assert trace.scores.get().exported_at is None


@pytest.mark.django_db
def test_score_endpoint_error_keeps_scores_pending(settings, recording_server) -> None:
    def scores_down(method, path, headers, body):
        return failing(method, path, headers, body) if path.startswith(SCORES_PATH) else langfuse_like(
            method, path, headers, body)

    server = recording_server(scores_down)
    configure(settings, server.url)
    trace = record_turn()
    score_record(trace=trace, name="edit_distance", value=0.5)

    with pytest.raises(ConnectionError, match="500"):
        export_trace(str(trace.id))
    trace.refresh_from_db()
    assert trace.exported_at is not None  # the spans did go out
    assert "500" in trace.export_error
    assert trace.scores.get().exported_at is None

    # the retry sends only the pending score
    server.requests.clear()
    settings.LANGFUSE_HOST = recording_server(langfuse_like).url
    export_trace(str(trace.id))
    trace.refresh_from_db()
    assert trace.export_error == "" and trace.scores.get().exported_at is not None


@pytest.mark.django_db
def test_unreachable_langfuse_fails_fast(settings) -> None:
    configure(settings, f"http://127.0.0.1:{unused_port()}")
    trace = record_turn()

    t0 = time.monotonic()
    with pytest.raises((ConnectionError, TimeoutError)):
        export_trace(str(trace.id))
    assert time.monotonic() - t0 < 10
    trace.refresh_from_db()
    assert trace.exported_at is None and trace.export_error


@pytest.mark.django_db
def test_silent_langfuse_is_cut_off_by_the_timeout(settings) -> None:
    """A host that accepts connections but never answers: the export gives up after the configured timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the backlog; nothing ever reads or answers
        configure(settings, f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1)
        trace = record_turn()

        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            export_trace(str(trace.id))
        assert time.monotonic() - t0 < 5
    trace.refresh_from_db()
    assert trace.exported_at is None and trace.export_error


@pytest.mark.django_db
def test_not_configured_or_missing_trace_is_a_quiet_no_op(settings, recording_server) -> None:
    settings.LANGFUSE_PUBLIC_KEY = settings.LANGFUSE_SECRET_KEY = settings.LANGFUSE_HOST = ""
    trace = record_turn()
    assert "not configured" in export_trace(str(trace.id))

    server = recording_server(langfuse_like)
    configure(settings, server.url)
    assert "not found" in export_trace("00000000-0000-0000-0000-000000000000")
    assert "not found" in export_trace("not-a-uuid")
    assert server.requests == []


@pytest.mark.django_db
def test_finish_makes_no_network_call_and_queues_one_export(settings, recording_server, monkeypatch,
                                                            django_capture_on_commit_callbacks) -> None:
    def slow(method, path, headers, body):
        time.sleep(5)
        return langfuse_like(method, path, headers, body)

    server = recording_server(slow)
    configure(settings, server.url)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        trace = record_turn()
    assert server.requests == []
    assert len(callbacks) == 1

    from sdrbot import tasks

    queued = []
    monkeypatch.setattr(tasks.export_trace, "delay", lambda *args: queued.append(args))
    callbacks[0]()
    assert queued == [(str(trace.id),)]
    assert server.requests == []


# ── admin ──────────────────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.django_db
def test_trace_admin_is_read_only_and_escapes(client, admin_user) -> None:
    rec = TraceRecorder.start(name="draft", thread_id="t-admin", turn_id="1", ticket_id=42, input={"message": "hi"})
    with rec.span("retrieve", "retrieve", input={"query": "<script>alert(1)</script>"}) as s:
        s.output = {"hits": [1]}
    with rec.span("chat.completions", "llm") as s:
        s.output = {"content": "ok"}
    trace = rec.finish(output={"reply": "ok"})
    score_record(trace=trace, name="edit_distance", value=0.1)
    client.force_login(admin_user)

    changelist = client.get(reverse("admin:sdrbot_trace_changelist"))
    assert changelist.status_code == 200
    assert b"t-admin" in changelist.content
    assert reverse("admin:sdrbot_trace_add").encode() not in changelist.content
    for term in ("t-admin", "42", str(trace.id)):
        found = client.get(reverse("admin:sdrbot_trace_changelist"), {"q": term})
        assert found.status_code == 200 and b"t-admin" in found.content, term
    assert b"t-admin" not in client.get(reverse("admin:sdrbot_trace_changelist"), {"q": "nothing"}).content

    change = client.get(reverse("admin:sdrbot_trace_change", args=[trace.pk]))
    assert change.status_code == 200
    body = change.content.decode()
    assert "retrieve" in body and "chat.completions" in body and "edit_distance" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(1)</script>" not in body
    assert 'name="_save"' not in body  # nothing to save

    assert client.get(reverse("admin:sdrbot_trace_add")).status_code == 403
    assert client.get(reverse("admin:sdrbot_trace_delete", args=[trace.pk])).status_code == 403
    assert client.post(reverse("admin:sdrbot_trace_delete", args=[trace.pk]), {"post": "yes"}).status_code == 403
    assert client.post(reverse("admin:sdrbot_trace_change", args=[trace.pk]), {"name": "x"}).status_code == 403
    assert Trace.objects.filter(pk=trace.pk, name="draft").exists()

"""kb_ingest / source_sync: sync semantics (only changed documents re-embedded, removals, versions, staleness)
and bad input (each error names file and line; nothing is written unless --skip-invalid)."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from knowledge.models import Chunk, Document, DocumentVersion, IngestRun, KnowledgeSource
from knowledge.selectors import stale_documents
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.django_db

DOCS = {
    "refunds": "Refunds are processed within five business days after we receive the returned item.",
    "shipping": "We ship worldwide. Express delivery takes two days within the EU.",
    "password": "To reset your password open Settings, choose Security and click Reset password.",
    "invoices": "Invoices are issued monthly and can be downloaded as PDF from the billing page.",
}


def write_jsonl(path: Path, docs: dict[str, str], **extra) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for ext, text in docs.items():
            fh.write(json.dumps({"id": ext, "title": ext.title(), "text": text, **extra}) + "\n")
    return path


def ingest(path: Path, *args: str, source: str = "help") -> str:
    out = StringIO()
    call_command("kb_ingest", str(path), "--source", source, *args, stdout=out, stderr=StringIO(), verbosity=0)
    return out.getvalue()


def test_ingest_then_resync_only_reembeds_what_changed(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "kb.jsonl", DOCS)
    out = ingest(f)
    assert "4 added, 0 updated, 0 unchanged, 0 removed" in out
    assert Document.objects.count() == 4 and Chunk.objects.count() >= 4
    first_chunk_ids = set(Chunk.objects.filter(document__external_id="shipping").values_list("id", flat=True))

    out = ingest(f)
    assert "0 added, 0 updated, 4 unchanged, 0 removed" in out and "0 chunks embedded" in out

    changed = dict(DOCS)
    changed["refunds"] = "Refunds are processed within ten business days. Store credit is instant."
    del changed["invoices"]
    out = ingest(write_jsonl(tmp_path / "kb.jsonl", changed))
    assert "0 added, 1 updated, 2 unchanged, 1 removed" in out
    run = IngestRun.objects.first()
    assert run.chunks_embedded == Chunk.objects.filter(document__external_id="refunds").count()
    refunds = Document.objects.get(external_id="refunds")
    assert refunds.version == 2 and "ten business days" in refunds.text
    assert list(refunds.versions.values_list("version", "change")) == [(2, "updated"), (1, "created")]
    assert "five business days" in refunds.versions.get(version=1).text  # history kept
    assert set(Chunk.objects.filter(document__external_id="shipping").values_list("id", flat=True)) == first_chunk_ids
    invoices = Document.objects.get(external_id="invoices")
    assert invoices.removed_at is not None and invoices.chunks.count() == 0
    assert invoices.versions.first().change == "removed"

    out = ingest(write_jsonl(tmp_path / "kb.jsonl", DOCS))  # invoices back, refunds back to v1 text
    assert "0 added, 2 updated, 2 unchanged, 0 removed" in out
    invoices.refresh_from_db()
    assert invoices.removed_at is None and invoices.chunks.count() >= 1
    assert invoices.versions.first().change == "restored"
    assert IngestRun.objects.first().chunks_embedded == Chunk.objects.filter(
        document__external_id__in=["refunds", "invoices"]).count()


def test_identical_text_is_embedded_once_across_documents(tmp_path: Path) -> None:
    ingest(write_jsonl(tmp_path / "kb.jsonl", DOCS))
    out = ingest(write_jsonl(tmp_path / "more.jsonl", {"shipping-copy": DOCS["shipping"]}), "--keep-missing")
    assert "1 added" in out and "0 chunks embedded, 1 reused" in out
    a = Chunk.objects.get(document__external_id="shipping")
    b = Chunk.objects.get(document__external_id="shipping-copy")
    assert list(a.embedding) == list(b.embedding)


def test_keep_missing_does_not_remove(tmp_path: Path) -> None:
    ingest(write_jsonl(tmp_path / "a.jsonl", DOCS))
    out = ingest(write_jsonl(tmp_path / "b.jsonl", {"new": "A brand new article about gift cards."}), "--keep-missing")
    assert "1 added, 0 updated, 0 unchanged, 0 removed" in out
    assert Document.objects.live().count() == 5


def test_staleness_uses_the_source_refresh_interval(tmp_path: Path) -> None:
    ingest(write_jsonl(tmp_path / "kb.jsonl", DOCS), "--refresh-days", "7")
    source = KnowledgeSource.objects.get(name="help")
    assert source.refresh_interval == timedelta(days=7)
    Document.objects.filter(external_id="shipping").update(fetched_at=timezone.now() - timedelta(days=8))
    Document.objects.filter(external_id="refunds").update(fetched_at=timezone.now() - timedelta(days=6))
    assert [d.external_id for d in stale_documents("help")] == ["shipping"]
    assert Document.objects.get(external_id="shipping").is_stale
    ingest(write_jsonl(tmp_path / "kb.jsonl", DOCS))  # a sync re-fetches: nothing stale any more
    assert not stale_documents("help").exists()


def test_real_mtrag_passages_with_the_issue_field_mapping(tmp_path: Path) -> None:
    lines = (SHARED_DATA / "mtrag-ibmcloud" / "passages.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    f = tmp_path / "passages.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = ingest(f, "--format", "jsonl", "--id-field", "_id", "--title-field", "page_id", "--text-field", "text",
                 source="ibm-cloud-docs")
    assert "12 added" in out
    first = json.loads(lines[0])
    doc = Document.objects.get(external_id=first["_id"])
    assert doc.title == first["page_id"] and doc.chunks.count() >= 1
    chunk = doc.chunks.order_by("ordinal").first()
    assert chunk.embedding_model == "all-MiniLM-L6-v2-onnx-int8" and len(chunk.embedding) == 384
    assert 0 < chunk.token_count <= 256


def test_markdown_and_html_folder(tmp_path: Path) -> None:
    (tmp_path / "docs" / "guides").mkdir(parents=True)
    (tmp_path / "docs" / "guides" / "reset.md").write_text("# Reset password\n\nOpen Settings and click Reset.\n")
    (tmp_path / "docs" / "plans.html").write_text("<html><head><title>Plans</title></head><body><h1>Plans</h1>"
                                                   "<p>The Pro plan costs 20 dollars.</p></body></html>")
    (tmp_path / "docs" / "image.png").write_bytes(b"\x89PNG")
    out = ingest(tmp_path / "docs")
    assert "2 added" in out
    assert dict(Document.objects.values_list("external_id", "title")) == {"guides/reset.md": "Reset password",
                                                                          "plans.html": "Plans"}
    assert Chunk.objects.get(document__external_id="plans.html").heading == "Plans"


# ----------------------------------------------------------------------------------------------- bad input


def test_missing_path() -> None:
    with pytest.raises(CommandError, match="no such file or folder"):
        ingest(Path("/nonexistent/kb.jsonl"))


def test_malformed_line_names_file_and_line_and_ingests_nothing(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "kb.jsonl", DOCS)
    with f.open("a") as fh:
        fh.write('{"id": "broken", "text": "unterminated\n')
    with pytest.raises(CommandError) as err:
        ingest(f)
    assert f"{f}:5: malformed JSON" in str(err.value) and "nothing was ingested" in str(err.value)
    assert Document.objects.count() == 0 and KnowledgeSource.objects.count() == 0


def test_skip_invalid_ingests_the_rest_and_reports(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "kb.jsonl", DOCS)
    with f.open("a") as fh:
        fh.write("not json\n")
        fh.write(json.dumps({"id": "empty", "text": "   "}) + "\n")
    err = StringIO()
    call_command("kb_ingest", str(f), "--source", "help", "--skip-invalid", stdout=StringIO(), stderr=err, verbosity=0)
    assert f"skipped {f}:5: malformed JSON" in err.getvalue()
    assert f"skipped {f}:6: field 'text' (the text) is empty" in err.getvalue()
    run = IngestRun.objects.get()
    assert run.skipped == 2 and run.added == 4 and len(run.problems) == 2


@pytest.mark.parametrize(
    "line, message",
    [
        (json.dumps({"id": "x", "text": ""}), "field 'text' (the text) is empty"),
        (json.dumps({"id": "x"}), "field 'text' (the text) is missing or not a string"),
        (json.dumps({"text": "orphan"}), "field 'id' (the id) is missing or empty"),
        (json.dumps(["a", "list"]), "expected a JSON object, got list"),
        (json.dumps({"id": "refunds", "text": "again"}), "duplicate id 'refunds' (first at line 1)"),
    ],
)
def test_invalid_records(tmp_path: Path, line: str, message: str) -> None:
    f = write_jsonl(tmp_path / "kb.jsonl", DOCS)
    with f.open("a") as fh:
        fh.write(line + "\n")
    with pytest.raises(CommandError, match="nothing was ingested") as err:
        ingest(f)
    assert f"{f}:5: {message}" in str(err.value)
    assert Document.objects.count() == 0


def test_invalid_utf8(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "kb.jsonl", DOCS)
    with f.open("ab") as fh:
        fh.write(b'{"id": "bad", "text": "caf\xe9"}\n')
    with pytest.raises(CommandError, match=rf"{f}:5: invalid UTF-8 at byte 26"):
        ingest(f)
    assert Document.objects.count() == 0


def test_fifty_megabyte_document(tmp_path: Path) -> None:
    f = tmp_path / "huge.jsonl"
    with f.open("w") as fh:
        fh.write(json.dumps({"id": "ok", "text": "A normal document."}) + "\n")
        fh.write(json.dumps({"id": "huge", "text": "x" * (50 * 1024 * 1024)}) + "\n")
    with pytest.raises(CommandError, match=rf"{f}:2: document is 50.0 MB, over the 5.0 MB limit"):
        ingest(f)
    assert Document.objects.count() == 0


def test_empty_file_changes_nothing(tmp_path: Path) -> None:
    ingest(write_jsonl(tmp_path / "kb.jsonl", DOCS))
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(CommandError, match="no valid documents .* nothing changed"):
        ingest(tmp_path / "empty.jsonl")
    assert Document.objects.live().count() == 4  # an empty export must not wipe the source


def test_folder_given_as_jsonl_and_bad_source_name(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="is a folder; --format jsonl takes a file"):
        ingest(tmp_path, "--format", "jsonl")
    with pytest.raises(CommandError, match="must be a slug"):
        ingest(tmp_path, source="bad name!")


def test_failure_during_embedding_leaves_database_unchanged(tmp_path: Path, settings) -> None:
    ingest(write_jsonl(tmp_path / "kb.jsonl", DOCS))
    before = (Document.objects.count(), Chunk.objects.count(), DocumentVersion.objects.count())
    settings.EMBEDDING_PROVIDER = "openai"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:1/v1"  # nothing listens: the provider fails
    from sdrbot import embeddings

    embeddings.reset_embedder()
    try:
        changed = dict(DOCS, refunds="Completely new refund policy text.")
        with pytest.raises(CommandError, match="nothing was ingested"):
            ingest(write_jsonl(tmp_path / "kb.jsonl", changed))
    finally:
        embeddings.reset_embedder()
    assert (Document.objects.count(), Chunk.objects.count(), DocumentVersion.objects.count()) == before
    assert "five business days" in Document.objects.get(external_id="refunds").text

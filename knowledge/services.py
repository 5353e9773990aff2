"""Writes to the knowledge base. The one way in is :func:`source_sync`: it makes a source hold exactly the given
documents — adding new ones, re-chunking and re-embedding only those whose checksum changed, marking the missing
ones removed — and records an :class:`~knowledge.models.IngestRun`. It applies whole or not at all."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from knowledge.chunking import Block, ChunkSpec, chunk_blocks, parse_html, parse_markdown
from knowledge.models import Chunk, Document, DocumentVersion, IngestRun, KnowledgeSource
from sdrbot.embeddings import EmbeddingProvider, get_embedder

Progress = Callable[[int], None]  # called with the number of chunks just embedded


@dataclass
class DocumentInput:
    """One document as a source presents it. ``where`` says where it came from (``file:line``) for messages;
    ``fmt`` is how ``text`` is structured: ``markdown`` (also plain text), ``html`` or ``blocks`` (pre-parsed)."""

    external_id: str
    text: str
    title: str = ""
    url: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    where: str = ""
    fmt: str = "markdown"
    blocks: list[Block] | None = None

    @property
    def checksum(self) -> str:
        h = hashlib.sha256()
        for part in (self.title, self.url, self.text):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()


@dataclass(frozen=True)
class SyncResult:
    run: IngestRun
    added: int
    updated: int
    unchanged: int
    removed: int
    chunks_embedded: int
    chunks_reused: int


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embedding_input(chunk: ChunkSpec) -> str:
    """What is embedded for a chunk: its heading path, then its text (the heading disambiguates short chunks)."""
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text


def document_chunks(doc: DocumentInput, embedder: EmbeddingProvider) -> list[ChunkSpec]:
    """Split a document into chunks with the configured target size and overlap (tokens)."""
    if doc.blocks is not None:
        blocks = doc.blocks
    elif doc.fmt == "html":
        _, blocks = parse_html(doc.text)
    else:
        blocks = parse_markdown(doc.text)
    counter = getattr(embedder, "count_tokens_batch", None) or (lambda ts: [embedder.count_tokens(t) for t in ts])
    return chunk_blocks(
        blocks,
        target_tokens=settings.KB_CHUNK_TARGET_TOKENS,
        overlap_tokens=settings.KB_CHUNK_OVERLAP_TOKENS,
        count_tokens=counter,
    )


def source_get_or_create(*, name: str, kind: str | None = None, refresh_interval: timedelta | None = None) -> KnowledgeSource:
    source, created = KnowledgeSource.objects.get_or_create(
        name=name, defaults={"kind": kind or KnowledgeSource.Kind.DOCS, **({"refresh_interval": refresh_interval} if refresh_interval else {})}
    )
    changed = []
    if not created and kind and source.kind != kind:
        source.kind = kind
        changed.append("kind")
    if not created and refresh_interval and source.refresh_interval != refresh_interval:
        source.refresh_interval = refresh_interval
        changed.append("refresh_interval")
    if changed:
        source.save(update_fields=changed)
    return source


def _embed_missing(
    specs: dict[str, list[ChunkSpec]], embedder: EmbeddingProvider, progress: Progress | None,
    on_plan: Callable[[int], None] | None = None,
) -> tuple[dict[str, np.ndarray], int, int]:
    """Embeddings for every chunk input of ``specs``, keyed by text hash. Texts already stored with the same
    embedding model are reused, identical texts are embedded once. Returns (vectors, embedded, reused)."""
    wanted: dict[str, str] = {}
    for chunks in specs.values():
        for c in chunks:
            inp = embedding_input(c)
            wanted.setdefault(text_hash(inp), inp)
    vectors: dict[str, np.ndarray] = {}
    hashes = list(wanted)
    for start in range(0, len(hashes), 5000):
        rows = (
            Chunk.objects.filter(text_hash__in=hashes[start : start + 5000], embedding_model=embedder.name)
            .order_by()
            .distinct("text_hash")
            .values_list("text_hash", "embedding")
        )
        for h, emb in rows:
            vectors[h] = np.asarray(emb, dtype=np.float32)
    reused = len(vectors)
    todo = [h for h in hashes if h not in vectors]
    if on_plan:
        on_plan(len(todo))
    batch = max(1, getattr(embedder, "batch_size", 32)) * 8
    for start in range(0, len(todo), batch):
        part = todo[start : start + batch]
        embs = embedder.embed([wanted[h] for h in part])
        for h, e in zip(part, embs):
            vectors[h] = e
        if progress:
            progress(len(part))
    return vectors, len(todo), reused


def source_sync(
    *,
    source_name: str,
    documents: Sequence[DocumentInput],
    kind: str | None = None,
    refresh_interval: timedelta | None = None,
    remove_missing: bool = True,
    actor=None,
    origin: str = "",
    skipped: Sequence[str] = (),
    embedder: EmbeddingProvider | None = None,
    progress: Progress | None = None,
    on_plan: Callable[[int], None] | None = None,
) -> SyncResult:
    """Make source ``source_name`` hold exactly ``documents`` (or, with ``remove_missing=False``, at least them).

    - new external ids are added (version 1); a changed checksum bumps the version, snapshots it in
      DocumentVersion and replaces the chunks; an unchanged document is only marked fetched now;
    - documents of the source that are absent are marked removed (their chunks deleted, history kept);
      a removed document that comes back is restored as a new version;
    - embeddings are computed before the write transaction (reusing stored vectors of identical text), then
      everything is written in one transaction under a row lock on the source, so concurrent syncs of one
      source serialise and a failure leaves the database as it was.

    ``on_plan`` is told how many distinct chunk texts need embedding; ``progress`` how many were just embedded.
    Raises ``ValueError`` for duplicate external ids; ``sdrbot.embeddings.EmbeddingError`` from the provider.
    """
    seen: dict[str, str] = {}
    for d in documents:
        if d.external_id in seen:
            raise ValueError(f"duplicate id {d.external_id!r} at {d.where or '?'} (first at {seen[d.external_id] or '?'})")
        seen[d.external_id] = d.where
    embedder = embedder or get_embedder()
    source = source_get_or_create(name=source_name, kind=kind, refresh_interval=refresh_interval)

    def plan() -> tuple[dict[str, Document], list[DocumentInput]]:
        existing = {d.external_id: d for d in Document.objects.filter(source=source).defer("text")}
        changed = [
            d for d in documents
            if d.external_id not in existing
            or existing[d.external_id].checksum != d.checksum
            or existing[d.external_id].removed_at is not None
        ]
        return existing, changed

    _, changed = plan()
    specs = {d.external_id: document_chunks(d, embedder) for d in changed}
    vectors, embedded, reused = _embed_missing(specs, embedder, progress, on_plan)

    now = timezone.now()
    with transaction.atomic():
        KnowledgeSource.objects.select_for_update().get(pk=source.pk)
        existing, changed = plan()  # again, under the lock: another sync may have landed meanwhile
        late = {d.external_id: document_chunks(d, embedder) for d in changed if d.external_id not in specs}
        if late:
            specs.update(late)
            more, n_emb, n_reused = _embed_missing(late, embedder, None)
            vectors.update(more)
            embedded += n_emb
            reused += n_reused
        changed_ids = {d.external_id for d in changed}
        added = updated = 0
        new_versions: list[DocumentVersion] = []
        touched: list[Document] = []
        for d in changed:
            doc = existing.get(d.external_id)
            if doc is None:
                doc = Document.objects.create(
                    source=source, external_id=d.external_id, title=d.title[:500], url=d.url[:2000], text=d.text,
                    checksum=d.checksum, version=1, metadata=d.metadata, fetched_at=now, created_at=now,
                )
                change = "created"
                added += 1
            else:
                change = "restored" if doc.removed_at is not None else "updated"
                doc.title, doc.url, doc.text, doc.checksum = d.title[:500], d.url[:2000], d.text, d.checksum
                doc.metadata, doc.fetched_at, doc.removed_at = d.metadata, now, None
                doc.version += 1
                doc.save(update_fields=["title", "url", "text", "checksum", "metadata", "fetched_at", "removed_at", "version"])
                updated += 1
            touched.append(doc)
            new_versions.append(DocumentVersion(
                document=doc, version=doc.version, checksum=d.checksum, title=doc.title, url=doc.url, text=d.text,
                fetched_at=now, change=change,
            ))
        Chunk.objects.filter(document__in=[doc for doc in touched if doc.version > 1]).delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    document=doc, ordinal=c.ordinal, heading=c.heading, text=c.text, token_count=c.token_count,
                    text_hash=text_hash(embedding_input(c)), embedding=vectors[text_hash(embedding_input(c))],
                    embedding_model=embedder.name,
                )
                for doc in touched
                for c in specs[doc.external_id]
            ],
            batch_size=1000,
        )
        DocumentVersion.objects.bulk_create(new_versions, batch_size=1000)
        unchanged_ids = [existing[i].pk for i in seen if i in existing and i not in changed_ids]
        Document.objects.filter(pk__in=unchanged_ids).update(fetched_at=now)
        removed = 0
        if remove_missing:
            gone = [doc for ext, doc in existing.items() if ext not in seen and doc.removed_at is None]
            removed = len(gone)
            if gone:
                Chunk.objects.filter(document__in=gone).delete()
                Document.objects.filter(pk__in=[g.pk for g in gone]).update(removed_at=now, version=F("version") + 1)
                DocumentVersion.objects.bulk_create([
                    DocumentVersion(document=g, version=g.version + 1, checksum=g.checksum, title=g.title, url=g.url,
                                    text="", fetched_at=now, change="removed")
                    for g in gone
                ])
        source.last_synced_at = now
        source.save(update_fields=["last_synced_at"])
        run = IngestRun.objects.create(
            source=source, started_at=now, finished_at=timezone.now(), origin=origin[:1000], actor=actor,
            added=added, updated=updated, unchanged=len(unchanged_ids), removed=removed, skipped=len(skipped),
            chunks_embedded=embedded, chunks_reused=reused, problems=list(skipped)[:1000],
        )
    return SyncResult(run, added, updated, len(unchanged_ids), removed, embedded, reused)


class IngestInputError(ValueError):
    """Input that cannot be ingested as asked: the message lists each problem with its file:line."""

    def __init__(self, message: str, problems: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)



def source_ingest_path(
    *,
    source_name: str,
    path: str,
    fmt: str | None = None,
    id_field: str = "id",
    title_field: str | None = "title",
    text_field: str = "text",
    url_field: str | None = "url",
    kind: str | None = None,
    refresh_interval: timedelta | None = None,
    skip_invalid: bool = False,
    remove_missing: bool = True,
    actor=None,
    progress: Progress | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
) -> SyncResult:
    """Read ``path`` (a JSONL file or a folder of Markdown/HTML) and :func:`source_sync` it into the source; the
    way to re-read it is stored on the source for the periodic refresh.

    Raises :class:`IngestInputError` when the path cannot be read, when any document is invalid and
    ``skip_invalid`` is False (nothing is written), or when no valid document remains (the source keeps what it had).
    """
    from pathlib import Path

    from knowledge.loaders import LoadError, load_path, problems_message

    p = Path(path)
    try:
        docs, problems = load_path(
            p, fmt=fmt, max_bytes=settings.KB_MAX_DOCUMENT_BYTES, id_field=id_field, title_field=title_field,
            text_field=text_field, url_field=url_field,
        )
    except LoadError as exc:
        raise IngestInputError(str(exc)) from exc
    except OSError as exc:
        raise IngestInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if problems and not skip_invalid:
        raise IngestInputError(
            problems_message(problems, path=path, valid=len(docs), noun="document", verb="ingest"), problems)
    for pr in problems:
        if on_skip:
            on_skip(str(pr))
    if not docs:
        raise IngestInputError(f"no valid documents in {path}; nothing changed (the source keeps what it had)", problems)
    result = source_sync(
        source_name=source_name, documents=docs, kind=kind, refresh_interval=refresh_interval,
        remove_missing=remove_missing, actor=actor, origin=str(p.resolve()), skipped=[str(pr) for pr in problems],
        progress=progress, on_plan=on_plan,
    )
    KnowledgeSource.objects.filter(pk=result.run.source_id).update(sync_config={
        "path": str(p.resolve()), "format": fmt, "id_field": id_field, "title_field": title_field,
        "text_field": text_field, "url_field": url_field, "skip_invalid": skip_invalid,
        "remove_missing": remove_missing,
    })
    return result


def sources_refresh_due() -> list[str]:
    """Re-sync every source whose refresh interval has passed and that knows how to re-read itself
    (``sync_config``). Returns the names synced; a source whose input now fails is logged and left as it was."""
    import logging

    log = logging.getLogger(__name__)
    done = []
    for source in KnowledgeSource.objects.exclude(sync_config={}):
        if not source.is_due:
            continue
        cfg = source.sync_config
        try:
            source_ingest_path(
                source_name=source.name, path=cfg["path"], fmt=cfg.get("format"), id_field=cfg.get("id_field", "id"),
                title_field=cfg.get("title_field"), text_field=cfg.get("text_field", "text"),
                url_field=cfg.get("url_field"), skip_invalid=cfg.get("skip_invalid", False),
                remove_missing=cfg.get("remove_missing", True),
            )
            done.append(source.name)
        except (IngestInputError, KeyError) as exc:
            log.warning("refresh of knowledge source %s failed: %s", source.name, str(exc).splitlines()[0])
    return done

"""Knowledge base: sources, documents (with their version history) and chunks (full-text + embedding)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.utils import timezone
from pgvector.django import HnswIndex, VectorField


class KnowledgeSource(models.Model):
    """A named collection of documents that is synced as a whole (a docs export, a help-centre crawl, the
    resolved-tickets corpus). ``refresh_interval`` is how old a document may get before it counts as stale."""

    class Kind(models.TextChoices):
        DOCS = "docs", "Documentation"
        HELP_CENTER = "help_center", "Help centre"
        RESOLVED_TICKETS = "resolved_tickets", "Resolved tickets"
        OTHER = "other", "Other"

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.DOCS)
    refresh_interval = models.DurationField(default=timedelta(days=30))
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # How to re-read the source (path, format, field names) so the periodic refresh can sync it again.
    sync_config = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.name

    @property
    def is_due(self) -> bool:
        return self.last_synced_at is None or self.last_synced_at < timezone.now() - self.refresh_interval


class DocumentQuerySet(models.QuerySet["Document"]):
    def live(self) -> DocumentQuerySet:
        return self.filter(removed_at__isnull=True)

    def stale(self, now=None) -> DocumentQuerySet:
        """Live documents fetched longer ago than their source's refresh interval (computed in SQL)."""
        now = now or timezone.now()
        return self.live().filter(fetched_at__lt=now - models.F("source__refresh_interval"))


class Document(models.Model):
    """One document of a source, identified by ``external_id`` within it. ``checksum`` is the sha256 of
    title + URL + text; a sync that sees a new checksum bumps ``version`` (history in DocumentVersion) and
    re-chunks. A document that disappears from its source is marked ``removed_at`` and loses its chunks."""

    source = models.ForeignKey(KnowledgeSource, on_delete=models.CASCADE, related_name="documents")
    external_id = models.CharField(max_length=255)
    title = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=2000, blank=True)
    text = models.TextField()
    checksum = models.CharField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    metadata = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)

    objects = DocumentQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "external_id"], name="document_unique_external_id")]
        indexes = [models.Index(fields=["source", "removed_at"])]

    def __str__(self) -> str:
        return self.title or self.external_id

    @property
    def is_stale(self) -> bool:
        return self.removed_at is None and self.fetched_at < timezone.now() - self.source.refresh_interval


class DocumentVersion(models.Model):
    """An immutable snapshot of a document at one version (written on create and on every change)."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    checksum = models.CharField(max_length=64)
    title = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=2000, blank=True)
    text = models.TextField()
    fetched_at = models.DateTimeField()
    change = models.CharField(max_length=16, default="created")  # created | updated | removed | restored

    class Meta:
        constraints = [models.UniqueConstraint(fields=["document", "version"], name="document_version_unique")]
        ordering = ["document_id", "-version"]


class Chunk(models.Model):
    """A retrieval unit: a span of a document that respects its structure. ``search_vector`` is a generated
    ``tsvector`` (GIN index) of heading + text; ``embedding`` a unit vector (HNSW index, cosine)."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    heading = models.CharField(max_length=500, blank=True)
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    text_hash = models.CharField(max_length=64, db_index=True)
    search_vector = models.GeneratedField(
        expression=SearchVector("heading", "text", config=settings.KB_FTS_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSIONS)
    embedding_model = models.CharField(max_length=100)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal")]
        indexes = [
            GinIndex(fields=["search_vector"], name="chunk_search_vector_gin"),
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"


class IngestRun(models.Model):
    """One sync of a source: who ran it, from where, and what changed (an audit row)."""

    source = models.ForeignKey(KnowledgeSource, on_delete=models.CASCADE, related_name="runs")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    origin = models.CharField(max_length=1000, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    chunks_embedded = models.PositiveIntegerField(default=0)
    chunks_reused = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at"]

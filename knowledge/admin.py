from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.db.models import Count
from django.utils import timezone

from knowledge.models import Chunk, Document, DocumentVersion, IngestRun, KnowledgeSource

if TYPE_CHECKING:
    from typing import TypedDict

    from django_stubs_ext import WithAnnotations

    class _DocumentCount(TypedDict):  # what KnowledgeSourceAdmin.get_queryset annotates
        n_docs: int


@admin.register(KnowledgeSource)
class KnowledgeSourceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "refresh_interval", "last_synced_at", "document_count", "due")
    readonly_fields = ("last_synced_at", "created_at", "sync_config")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_docs=Count("documents"))

    @admin.display(description="documents", ordering="n_docs")
    def document_count(self, obj: WithAnnotations[KnowledgeSource, _DocumentCount]) -> int:
        return obj.n_docs

    @admin.display(boolean=True, description="refresh due")
    def due(self, obj: KnowledgeSource) -> bool:
        return obj.is_due


class StaleFilter(admin.SimpleListFilter):
    title = "freshness"
    parameter_name = "freshness"

    def lookups(self, request, model_admin):
        return [("stale", "Stale (older than the source's refresh interval)"), ("removed", "Removed from source")]

    def queryset(self, request, queryset):
        if self.value() == "stale":
            return queryset.stale(timezone.now())
        if self.value() == "removed":
            return queryset.filter(removed_at__isnull=False)
        return queryset


class DocumentVersionInline(admin.TabularInline):
    model = DocumentVersion
    fields = ("version", "change", "checksum", "fetched_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("external_id", "title", "source", "version", "fetched_at", "stale", "removed_at")
    list_filter = ("source", StaleFilter)
    search_fields = ("external_id", "title")
    readonly_fields = ("source", "external_id", "checksum", "version", "fetched_at", "created_at", "removed_at")
    list_select_related = ("source",)
    inlines = [DocumentVersionInline]

    @admin.display(boolean=True)
    def stale(self, obj: Document) -> bool:
        return obj.is_stale

    def has_add_permission(self, request) -> bool:
        return False  # documents enter through a sync (kb_ingest), which chunks and embeds them


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ("id", "document", "ordinal", "heading", "token_count", "embedding_model")
    list_select_related = ("document",)
    search_fields = ("document__external_id", "heading")
    exclude = ("embedding",)
    readonly_fields = ("document", "ordinal", "heading", "text", "token_count", "text_hash", "embedding_model")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(IngestRun)
class IngestRunAdmin(admin.ModelAdmin):
    list_display = ("id", "source", "started_at", "added", "updated", "unchanged", "removed", "skipped",
                    "chunks_embedded", "chunks_reused", "actor")
    list_filter = ("source",)
    readonly_fields = [f.name for f in IngestRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

"""Traces are browsable read-only in the admin: a trace with its spans (in start order, inputs and outputs as
pretty-printed JSON) and its scores. Nobody may add, change or delete them here, superusers included; viewing needs
the ``sdrbot.view_trace`` permission (superusers have it)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html

from sdrbot.models import Score, Span, Trace

_PRE_STYLE = ("white-space: pre-wrap; word-break: break-word; max-width: 48em; max-height: 24em; overflow: auto; "
              "margin: 0")


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON inside ``<pre>``, HTML-escaped ("-" when empty)."""
    if value is None or value == {} or value == []:
        return "-"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return format_html('<pre style="{}">{}</pre>', _PRE_STYLE, text)


class ReadOnlyMixin:
    """View permission only: no add, change or delete for anyone."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class SpanInline(ReadOnlyMixin, admin.TabularInline):
    model = Span
    fk_name = "trace"
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ("started_at",)
    fields = ("name", "kind", "status", "attempt", "duration_ms", "parent_name", "started_at", "error",
              "input_json", "output_json", "metadata_json")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("parent").order_by("started_at", "id")

    @admin.display(description="parent")
    def parent_name(self, obj: Span) -> str:
        return obj.parent.name if obj.parent_id and obj.parent else "-"

    @admin.display(description="input")
    def input_json(self, obj: Span) -> str:
        return pretty_json(obj.input)

    @admin.display(description="output")
    def output_json(self, obj: Span) -> str:
        return pretty_json(obj.output)

    @admin.display(description="metadata")
    def metadata_json(self, obj: Span) -> str:
        return pretty_json(obj.metadata)


class ScoreInline(ReadOnlyMixin, admin.TabularInline):
    model = Score
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ("created_at",)
    fields = ("name", "value", "string_value", "comment", "source", "author", "created_at", "exported_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("author")


@admin.register(Trace)
class TraceAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("name", "thread_id", "turn_id", "ticket_id", "status", "duration_ms", "started_at", "exported_at")
    list_filter = ("status", "name", "environment")
    search_fields = ("thread_id", "ticket_id")
    search_help_text = "Exact thread id, ticket id or trace id."
    date_hierarchy = "started_at"
    show_full_result_count = False
    fields = ("id", "name", "thread_id", "turn_id", "ticket_id", "environment", "status", "started_at", "ended_at",
              "duration_ms", "exported_at", "export_error", "metadata_json", "input_json", "output_json")
    readonly_fields = fields
    inlines = [SpanInline, ScoreInline]

    def get_search_results(self, request, queryset, search_term):
        """Exact matches only (indexed columns): the thread id, a ticket id, or a trace id."""
        term = search_term.strip()
        if not term:
            return queryset, False
        q = Q(thread_id=term)
        if term.isdigit() and len(term) <= 18:
            q |= Q(ticket_id=int(term))
        try:
            q |= Q(id=uuid.UUID(term))
        except ValueError:
            pass
        return queryset.filter(q), False

    @admin.display(description="metadata")
    def metadata_json(self, obj: Trace) -> str:
        return pretty_json(obj.metadata)

    @admin.display(description="input")
    def input_json(self, obj: Trace) -> str:
        return pretty_json(obj.input)

    @admin.display(description="output")
    def output_json(self, obj: Trace) -> str:
        return pretty_json(obj.output)

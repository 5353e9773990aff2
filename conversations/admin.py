"""Admin for conversations. Categories are configuration and editable here; customers, tickets and messages are
read-only (they change through conversations' services and ``manage.py tickets_import``), deletable by superusers."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from conversations.models import Category, Customer, Message, Ticket


class ReadOnlyAdmin(admin.ModelAdmin):
    """Every field shown, nothing added or changed from the admin."""

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "ticket_count", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Category]:
        return super().get_queryset(request).annotate(n_tickets=Count("tickets"))

    @admin.display(description="tickets", ordering="n_tickets")
    def ticket_count(self, obj: Category) -> int:
        return obj.n_tickets  # type: ignore[attr-defined]


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "email", "external_id", "created_at")
    search_fields = ("name", "email", "external_id")


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("turn_index", "role", "body", "author_user", "sent_at")
    readonly_fields = fields
    ordering = ("turn_index",)
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Ticket)
class TicketAdmin(ReadOnlyAdmin):
    list_display = ("subject", "category", "status", "channel", "split", "created_at")
    list_filter = ("status", "channel", "category", "split")
    search_fields = ("subject", "external_id")
    list_select_related = ("category",)
    date_hierarchy = "created_at"
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "ticket", "turn_index", "role", "excerpt", "sent_at")
    list_filter = ("role",)
    search_fields = ("body", "ticket__external_id")
    list_select_related = ("ticket",)
    raw_id_fields = ("ticket", "author_user")

    @admin.display(description="body")
    def excerpt(self, obj: Message) -> str:
        return obj.body if len(obj.body) <= 80 else obj.body[:79] + "…"

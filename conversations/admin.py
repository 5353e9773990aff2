"""Admin for conversations. Categories are configuration and editable here; customers, tickets and messages are
read-only (they change through conversations' services and ``manage.py tickets_import``), deletable by superusers."""

from __future__ import annotations

from django import forms
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


class CategoryForm(forms.ModelForm):
    class Meta:
        model = Category
        fields = "__all__"

    def clean_gate_overrides(self):
        from drafts.rollout import DEFAULTS

        value = self.cleaned_data["gate_overrides"] or {}
        if not isinstance(value, dict):
            raise forms.ValidationError("a JSON object: criterion name → threshold")
        unknown = sorted(set(value) - set(DEFAULTS))
        if unknown:
            raise forms.ValidationError(f"unknown criteria {unknown}; known: {sorted(DEFAULTS)}")
        for k, v in value.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise forms.ValidationError(f"{k}: a non-negative number, not {v!r}")
        return value

    def clean_business_hours(self):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        value = self.cleaned_data["business_hours"] or {}
        if not isinstance(value, dict):
            raise forms.ValidationError('a JSON object like {"tz": "Europe/Paris", "days": [0,1,2,3,4], "start": "09:00", "end": "18:00"}')
        try:
            ZoneInfo(value.get("tz", "UTC"))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise forms.ValidationError(f"tz: unknown time zone {value.get('tz')!r}") from exc
        if not all(isinstance(d, int) and 0 <= d <= 6 for d in value.get("days", [])):
            raise forms.ValidationError("days: whole numbers 0 (Monday) to 6 (Sunday)")
        for key in ("start", "end"):
            hhmm = value.get(key, "00:00")
            if not (isinstance(hhmm, str) and len(hhmm) == 5 and hhmm[2] == ":" and hhmm.replace(":", "").isdigit()):
                raise forms.ValidationError(f"{key}: a 24-hour time HH:MM")
        return value

    def clean_auto_send_min_confidence(self):
        value = self.cleaned_data["auto_send_min_confidence"]
        if not 0 <= value <= 1:
            raise forms.ValidationError("between 0 and 1")
        return value


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    """Categories, and their rollout settings. The phase is read-only here: it changes through the rollout
    dashboard, where every change is audited and promotions are gated."""

    form = CategoryForm
    list_display = ("name", "slug", "phase", "auto_send", "auto_send_min_confidence", "ticket_count", "created_at")
    list_filter = ("phase", "auto_send")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "phase")

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


from conversations.models import SiteKey, WidgetConversation  # noqa: E402


@admin.register(SiteKey)
class SiteKeyAdmin(admin.ModelAdmin):
    """Site keys of the widget. The public key and the identity-signing secret are generated on creation; give the
    secret to the company's backend only (it signs identity tokens, README)."""

    list_display = ["name", "key", "active", "default_category", "created_at"]
    fields = ["name", "key", "secret", "allowed_origins", "default_category", "active", "created_at"]
    readonly_fields = ["key", "secret", "created_at"]

    def save_model(self, request, obj, form, change) -> None:
        import secrets

        from conversations.services import widget_origins_forget

        if not obj.key:
            obj.key = "pk_" + secrets.token_urlsafe(18)
            obj.secret = secrets.token_urlsafe(32)
        super().save_model(request, obj, form, change)
        widget_origins_forget()


@admin.register(WidgetConversation)
class WidgetConversationAdmin(ReadOnlyAdmin):
    list_display = ["pk", "site_key", "ticket", "subject", "handoff_requested_at", "created_at"]
    list_select_related = ["site_key", "ticket"]

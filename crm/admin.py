"""Read-only CRM tables in the Django admin (changes go through the console and crm.services / crm.outbox)."""

from django.contrib import admin

from crm.models import Activity, Checkpoint, Company, Contact, Lead, OutboxAttempt, OutboxWrite, SlotValue


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Lead)
class LeadAdmin(ReadOnly):
    list_display = ["id", "status", "score", "tier", "next_action", "sub_intent", "updated_at"]
    list_filter = ["status", "next_action", "tier"]


@admin.register(OutboxWrite)
class OutboxWriteAdmin(ReadOnly):
    list_display = ["idempotency_key", "action", "adapter", "status", "attempts", "updated_at"]
    list_filter = ["status", "adapter", "action"]
    search_fields = ["idempotency_key"]


for model in (Company, Contact, SlotValue, Checkpoint, Activity, OutboxAttempt):
    admin.site.register(model, ReadOnly)

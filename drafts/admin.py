from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Max

from drafts.models import ClassifierModel, Draft, PromptVersion


@admin.register(Draft)
class DraftAdmin(admin.ModelAdmin):
    list_display = ("id", "ticket", "status", "generator", "strategy", "confidence", "grounding_score", "needs_human",
                    "created_at")
    list_filter = ("status", "generator", "strategy", "needs_human")
    list_select_related = ("ticket",)
    search_fields = ("ticket__subject", "body")
    readonly_fields = [f.name for f in Draft._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PromptVersion)
class PromptVersionAdmin(admin.ModelAdmin):
    """Prompt rows are immutable once saved: editing one saves a new version instead, and "activate" switches the
    active version of its category (one active per category)."""

    list_display = ("name", "version", "category", "is_active", "created_at", "created_by")
    list_filter = ("is_active", "category")
    fields = ("name", "category", "system_prompt", "version", "is_active", "created_by", "created_at")
    readonly_fields = ("version", "is_active", "created_by", "created_at")
    actions = ["activate"]

    def save_model(self, request, obj: PromptVersion, form, change: bool) -> None:
        with transaction.atomic():
            latest = (PromptVersion.objects.filter(name=obj.name, category=obj.category)
                      .aggregate(v=Max("version"))["v"] or 0)
            obj.pk = None  # always a new row: the old version stays as it was for the drafts that used it
            obj.version = latest + 1
            obj.is_active = False
            obj.created_by = request.user
            obj.save()
        messages.info(request, f"Saved as version {obj.version} (inactive). Use “Activate” to put it into use.")

    @admin.action(description="Activate the selected version (one per category)")
    def activate(self, request, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", level=messages.ERROR)
            return
        prompt = queryset.get()
        with transaction.atomic():
            PromptVersion.objects.filter(category=prompt.category, name=prompt.name, is_active=True).update(is_active=False)
            PromptVersion.objects.filter(pk=prompt.pk).update(is_active=True)
        self.message_user(request, f"{prompt.label} is now active.")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ClassifierModel)
class ClassifierModelAdmin(admin.ModelAdmin):
    list_display = ("id", "target", "embedding_model", "trained_on", "temperature", "is_active", "created_at")
    exclude = ("coef", "intercept")
    readonly_fields = ("target", "embedding_model", "labels", "temperature", "metrics", "trained_on", "is_active",
                       "created_at")

    def has_add_permission(self, request) -> bool:
        return False

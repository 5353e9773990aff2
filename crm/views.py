"""The sales console (staff only): leads list, lead page, dead CRM writes and the sales settings (admins).
Views parse input and render; writes go through crm.services and crm.outbox."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from crm import outbox, scoring, selectors, services
from crm.models import CrmSettings, Lead
from drafts.views import admin_required
from sdrbot.access import AgentRequest, is_admin, staff_required


@staff_required
@require_GET
def leads(request: AgentRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in Lead.Status.values:
        status = ""
    return render(request, "crm/leads.html", {
        "leads": selectors.leads_list(status=status), "status": status, "statuses": Lead.Status.choices,
        "counts": selectors.status_counts()})


@staff_required
@require_GET
@vary_on_headers("HX-Request")
def lead_detail(request: AgentRequest, lead_id: int) -> HttpResponse:
    """The lead page; an HTMX request with ``fragment=writes`` gets only the CRM delivery table (it refreshes every
    5 s while a write is pending)."""
    lead = selectors.lead_for_console(lead_id=lead_id, user=request.user)
    ctx = {**selectors.lead_page(lead), "is_admin": is_admin(request.user)}
    ctx["pending"] = any(w.status == "pending" for w in ctx["writes"])
    if request.htmx and request.GET.get("fragment") == "writes":
        return render(request, "crm/_writes.html", ctx)
    return render(request, "crm/lead.html", ctx)


@admin_required
@require_GET
def dead_writes(request: AgentRequest) -> HttpResponse:
    return render(request, "crm/outbox.html", {"writes": selectors.dead_writes()})


@admin_required
@require_POST
def redeliver(request: AgentRequest, write_id: int) -> HttpResponse:
    from crm.models import OutboxWrite

    row = OutboxWrite.objects.filter(pk=write_id).first()
    if row is None:
        messages.error(request, "That CRM write does not exist.")
        return redirect("leads:outbox")
    try:
        outbox.outbox_redeliver(write_id=write_id, actor=request.user)
        messages.success(request, f"Re-delivery of {row.idempotency_key} queued.")
    except ValueError as exc:
        messages.error(request, str(exc))
    nxt = request.POST.get("next", "")
    return redirect(nxt if nxt.startswith("/console/") else "leads:outbox")


@admin_required
@require_http_methods(["GET", "POST"])
def sales_settings(request: AgentRequest) -> HttpResponse:
    config = outbox.crm_settings()
    form = {"booking_link": config.booking_link, "self_serve_link": config.self_serve_link, "adapter": config.adapter,
            "endpoint_url": config.endpoint_url,
            "scoring_rules": json.dumps(config.scoring_rules or scoring.DEFAULT_RULES, indent=2)}
    error, status = "", 200
    if request.method == "POST":
        form = {k: request.POST.get(k, "").strip() for k in form}
        try:
            rules = json.loads(form["scoring_rules"]) if form["scoring_rules"] else None
        except json.JSONDecodeError as exc:
            error = f"Scoring rules: not valid JSON ({exc.msg}, line {exc.lineno})"
        else:
            if rules == scoring.DEFAULT_RULES:
                rules = None
            from django.core.exceptions import ValidationError
            from django.core.validators import URLValidator

            try:
                for key in ("booking_link", "self_serve_link", "endpoint_url"):
                    if form[key]:
                        try:
                            URLValidator(schemes=["http", "https"])(form[key])
                        except ValidationError as exc:
                            raise ValueError(f"{key.replace('_', ' ')}: not a valid http(s) URL") from exc
                services.crm_settings_update(actor=request.user, booking_link=form["booking_link"],
                                             self_serve_link=form["self_serve_link"], adapter=form["adapter"],
                                             endpoint_url=form["endpoint_url"], scoring_rules=rules)
            except ValueError as exc:
                error = str(exc)
            else:
                messages.success(request, "Sales settings saved.")
                return redirect("leads:settings")
        status = 400
    return render(request, "crm/settings.html", {
        "form": form, "error": error, "adapters": CrmSettings.Adapter.choices, "config": config,
        "secrets": {"CRM_WEBHOOK_SECRET": bool(settings.CRM_WEBHOOK_SECRET),
                    "CRM_HUBSPOT_TOKEN": bool(settings.CRM_HUBSPOT_TOKEN)}}, status=status)

"""The agent console (staff only): inbox, ticket page with the draft editor, actions, diff view, datasets.

Pages are server-rendered; an HTMX request to the same URL gets only the fragment that changes. Views parse input
and render; every write goes through a service (conversations.services, drafts.services)."""

from __future__ import annotations

import uuid
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from conversations import services as conv
from conversations.models import Category
from drafts import selectors, services
from drafts.models import Draft, Feedback
from sdrbot.access import AgentRequest, is_admin, staff_required


class ConsoleLoginView(LoginView):
    """Django's login with the admin's form, which refuses non-staff accounts: a customer can never log in here."""

    template_name = "console/login.html"
    authentication_form = AdminAuthenticationForm
    redirect_authenticated_user = True


# ----------------------------------------------------------------------------------------------------------- inbox


def _query_without(request: HttpRequest, *names: str) -> str:
    params = request.GET.copy()
    for name in names:
        params.pop(name, None)
    return params.urlencode()


@staff_required
@require_GET
@vary_on_headers("HX-Request")
def inbox(request: AgentRequest) -> HttpResponse:
    filters = selectors.InboxFilters.from_query(request.GET)
    rows_only = bool(request.htmx) and request.GET.get("fragment") == "rows"  # the 10 s poll: no counts, no facets
    page = selectors.inbox_page(filters, request.user, cursor=request.GET.get("cursor", ""), with_counts=not rows_only)
    context = {"filters": filters, "page": page, "query_string": _query_without(request, "cursor", "fragment")}
    if rows_only:
        return render(request, "console/_inbox_rows.html", context)
    context.update(categories=selectors.categories(), channels=conv.Ticket.Channel.choices,
                   statuses=[("open", "Open"), ("all", "All")] + [(s.value, s.label) for s in conv.Ticket.Status])
    return render(request, "console/inbox.html", context)


# ---------------------------------------------------------------------------------------------------------- ticket


def _ticket_context(request: AgentRequest, ticket, **extra):
    ctx = selectors.ticket_page(ticket, request.user)
    ctx.update(send_token=uuid.uuid4().hex, is_admin=is_admin(request.user), **extra)
    return ctx


@staff_required
@require_GET
@vary_on_headers("HX-Request")
def ticket_detail(request: AgentRequest, ticket_id: int) -> HttpResponse:
    ticket = selectors.ticket_for_console(ticket_id=ticket_id, user=request.user)
    ctx = _ticket_context(request, ticket)
    if request.htmx and request.GET.get("fragment") == "draft":
        return render(request, "console/_draft_panel.html", ctx)
    return render(request, "console/ticket.html", ctx)


def _panel(request: AgentRequest, ticket, status: int = 200, **extra) -> HttpResponse:
    """A refused action: HTMX gets the draft panel (retargeted onto itself) with the message and the agent's text;
    a plain form post gets the whole page."""
    ticket.refresh_from_db()
    ctx = _ticket_context(request, ticket, **extra)
    if not request.htmx:
        return render(request, "console/ticket.html", ctx, status=status)
    response = render(request, "console/_draft_panel.html", ctx, status=status)
    response["HX-Retarget"] = "#draft-panel"
    response["HX-Reswap"] = "outerHTML"
    return response


def _after_write(request: AgentRequest, ticket, **extra) -> HttpResponse:
    """HTMX: re-render the whole ticket body (thread + panel); otherwise redirect (POST/redirect/GET)."""
    if request.htmx:
        ticket.refresh_from_db()
        return render(request, "console/_ticket_body.html", _ticket_context(request, ticket, **extra))
    return redirect("console:ticket", ticket_id=ticket.pk)


def _version(request: HttpRequest) -> int | None:
    try:
        return int(request.POST["version"])
    except (KeyError, ValueError):
        return None


@staff_required
@require_POST
def ticket_send(request: AgentRequest, ticket_id: int) -> HttpResponse:
    """Send the reply in the editor: from the draft when there is one (edit metrics recorded), else as a reply
    written without a draft. A stale version (another agent answered) is refused with 409 and what was sent; the
    agent's text stays in the editor."""
    ticket = selectors.ticket_for_console(ticket_id=ticket_id, user=request.user)
    body = request.POST.get("body", "")
    token = request.POST.get("send_token", "")[:64]
    draft_id = request.POST.get("draft_id", "")
    try:
        if draft_id.isdigit() and Draft.objects.filter(pk=int(draft_id), ticket=ticket).exists():
            services.draft_send(draft_id=int(draft_id), actor=request.user, body=body,
                                expected_version=_version(request), send_token=token)
        else:
            conv.reply_send(ticket_id=ticket.pk, actor=request.user, body=body, expected_version=_version(request),
                            send_token=token)
    except conv.StaleTicket as stale:
        return _panel(request, ticket, status=409, conflict=stale.last_reply, kept_body=body)
    except (conv.MessageRejected, services.DraftNotSendable) as exc:
        return _panel(request, ticket, status=400, error=str(exc), kept_body=body)
    return _after_write(request, ticket, notice="Reply sent.")


@staff_required
@require_POST
def draft_action(request: AgentRequest, ticket_id: int, action: str) -> HttpResponse:
    ticket = selectors.ticket_for_console(ticket_id=ticket_id, user=request.user)
    draft = Draft.objects.filter(pk=request.POST.get("draft_id") or 0, ticket=ticket).first()
    if draft is None:
        raise Http404
    try:
        if action == "regenerate":
            services.draft_regenerate(draft_id=draft.pk, actor=request.user)
        elif action == "discard":
            services.draft_discard(draft_id=draft.pk, actor=request.user)
        else:
            raise Http404
    except services.DraftNotSendable as exc:
        return _panel(request, ticket, status=400, error=str(exc))
    return _after_write(request, ticket)


@staff_required
@require_POST
def ticket_feedback(request: AgentRequest, ticket_id: int) -> HttpResponse:
    ticket = selectors.ticket_for_console(ticket_id=ticket_id, user=request.user)
    draft = Draft.objects.filter(pk=request.POST.get("draft_id") or 0, ticket=ticket).first()
    rating = request.POST.get("rating")
    if draft is None or rating not in {"up", "down"}:
        return HttpResponseBadRequest("rating: must be 'up' or 'down' for a draft of this ticket")
    try:
        services.feedback_record(draft_id=draft.pk, actor=request.user, thumbs_up=rating == "up",
                                 reasons=request.POST.getlist("reasons"), comment=request.POST.get("comment", ""))
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))
    if request.htmx:
        fb = Feedback.objects.get(draft=draft, user=request.user)
        return render(request, "console/_feedback.html", {"draft": draft, "feedback": fb, "ticket": ticket,
                                                          "reasons": Feedback.Reason.choices, "saved": True})
    return redirect("console:ticket", ticket_id=ticket.pk)


@staff_required
@require_POST
def ticket_action(request: AgentRequest, ticket_id: int, action: str) -> HttpResponse:
    ticket = selectors.ticket_for_console(ticket_id=ticket_id, user=request.user)
    try:
        if action == "assign":
            raw = request.POST.get("assignee", "")
            assignee = None
            if raw:
                assignee = get_user_model().objects.filter(pk=int(raw) if raw.isdigit() else 0, is_staff=True).first()
                if assignee is None:
                    return HttpResponseBadRequest("assignee: no such staff user")
            conv.ticket_assign(ticket_id=ticket.pk, actor=request.user, assignee=assignee)
        elif action == "resolve":
            conv.ticket_resolve(ticket_id=ticket.pk, actor=request.user)
        elif action == "note":
            conv.note_add(ticket_id=ticket.pk, actor=request.user, body=request.POST.get("body", ""))
        elif action == "dataset":
            item = services.dataset_item_add(ticket_id=ticket.pk, actor=request.user)
            return _after_write(request, ticket, notice=f"Added to dataset “{item.dataset.name}”.")
        else:
            raise Http404
    except conv.MessageRejected as exc:
        return HttpResponseBadRequest(str(exc))
    except ValueError as exc:
        return _after_write(request, ticket, error=str(exc))
    return _after_write(request, ticket)


# ------------------------------------------------------------------------------------------------ diff, datasets


@staff_required
@require_GET
def reply_diff(request: AgentRequest, message_id: int) -> HttpResponse:
    message = selectors.sent_reply_for_console(message_id=message_id, user=request.user)
    draft = getattr(message, "from_draft", None)
    return render(request, "console/diff.html", {"message": message, "draft": draft, "ticket": message.ticket})


@staff_required
@require_GET
def datasets(request: AgentRequest) -> HttpResponse:
    return render(request, "console/datasets.html", {"datasets": selectors.datasets_by_category()})


@staff_required
@require_GET
def dataset_detail(request: AgentRequest, dataset_id: int) -> HttpResponse:
    from drafts.models import Dataset

    try:
        dataset = Dataset.objects.select_related("category").get(pk=dataset_id)
    except Dataset.DoesNotExist as exc:
        raise Http404 from exc
    items = dataset.items.select_related("ticket", "created_by").order_by("-created_at")[:500]
    return render(request, "console/dataset.html", {"dataset": dataset, "items": items})


# --------------------------------------------------------------------------------------------------------- rollout


def admin_required(view):
    """Admins only (agents get 403; anonymous users the login)."""
    from functools import wraps

    from django.core.exceptions import PermissionDenied

    @wraps(view)
    @staff_required
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not is_admin(request.user):
            raise PermissionDenied("rollout settings are for admins")
        return view(request, *args, **kwargs)

    return wrapper


@admin_required
@require_GET
def rollout_dashboard(request: AgentRequest) -> HttpResponse:
    from drafts import rollout

    return render(request, "console/rollout.html", {
        "rows": selectors.rollout_dashboard(), "fallbacks": rollout.recent_fallbacks(), "defaults": rollout.DEFAULTS})


@admin_required
@require_POST
def rollout_phase(request: AgentRequest, category_id: int) -> HttpResponse:
    """Promote or demote one category (drafts.rollout.category_phase_set); a closed gate answers 409 with why."""
    from django.contrib import messages

    from drafts import rollout

    try:
        change = rollout.category_phase_set(category_id=category_id, actor=request.user,
                                            to_phase=request.POST.get("to_phase", ""),
                                            reason=request.POST.get("reason", ""),
                                            override=request.POST.get("override") == "on")
    except rollout.GateClosed as exc:
        messages.error(request, f"Not promoted: {exc}. Tick “override” and write why to promote anyway.")
        return redirect("console:rollout")
    except (ValueError, PermissionError) as exc:
        messages.error(request, f"Not changed: {exc}")
        return redirect("console:rollout")
    except Category.DoesNotExist as exc:
        raise Http404 from exc
    messages.success(request, f"{change.category.name}: {change.from_phase} → {change.to_phase}.")
    return redirect("console:rollout")


@admin_required
@require_GET
def rollout_history(request: AgentRequest, category_id: int) -> HttpResponse:
    from drafts.models import PhaseChange

    category = Category.objects.filter(pk=category_id).first()
    if category is None:
        raise Http404
    changes = PhaseChange.objects.filter(category=category).select_related("actor")[:200]
    return render(request, "console/rollout_history.html", {"category": category, "changes": changes})


@staff_required
@require_GET
def flagged(request: AgentRequest) -> HttpResponse:
    return render(request, "console/flagged.html", {"drafts": selectors.flagged_drafts()})

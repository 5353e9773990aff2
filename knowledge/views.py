"""Console pages of the knowledge base (staff only)."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from knowledge import selectors
from sdrbot.access import AgentRequest, staff_required


@staff_required
@require_GET
@vary_on_headers("HX-Request")
def search_page(request: AgentRequest) -> HttpResponse:
    """Try retrieval as the pipeline sees it: a query, a mode and k; every hit with its scores and ranks.
    An HTMX request gets only the results fragment."""
    q = request.GET.get("q", "").strip()[:1000]
    mode = request.GET.get("mode", "hybrid")
    if mode not in selectors.MODES:
        mode = "hybrid"
    try:
        k = min(max(int(request.GET.get("k", "5")), 1), 50)
    except ValueError:
        k = 5
    result = selectors.search(q, k=k, mode=mode) if q else None
    context = {
        "q": q, "mode": mode, "k": k, "modes": selectors.MODES, "result": result,
        "stats": selectors.knowledge_stats(),
    }
    template = "knowledge/_results.html" if request.htmx else "knowledge/search.html"
    return render(request, template, context)

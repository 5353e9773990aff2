"""The /demo/ page: a made-up company's website with the chat widget embedded, as a customer would see it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from conversations.models import SiteKey

DEMO_SITE_KEY_NAME = "demo"


def demo_page(request: HttpRequest) -> HttpResponse:
    site_key = SiteKey.objects.filter(name=DEMO_SITE_KEY_NAME, active=True).order_by("-pk").first()
    return render(request, "demo.html", {"site_key": site_key})

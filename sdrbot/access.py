"""Who may use the staff pages. Two roles: every active staff user is an **agent** (works tickets); superusers and
members of the "admin" group are also **admins** (configure). Customers (non-staff accounts) never get in."""

from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING

from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import reverse

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django_htmx.middleware import HtmxDetails

ADMIN_GROUP = "admin"


class HtmxHttpRequest(HttpRequest):
    """The type of a request as django-htmx's middleware leaves it, with ``request.htmx`` (the typing django-htmx
    documents); for annotations only."""

    htmx: HtmxDetails


class AgentRequest(HtmxHttpRequest):
    """The type of a request in a view behind :func:`staff_required`: ``user`` is a logged-in, active staff
    ``User``, never ``AnonymousUser``; for annotations only."""

    user: User


def is_agent(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def is_admin(user) -> bool:
    return is_agent(user) and (user.is_superuser or user.groups.filter(name=ADMIN_GROUP).exists())


def staff_required(view):
    """Login required and staff only; anyone else is sent to the console login with ``next``."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not is_agent(request.user):
            return redirect(f"{reverse('console:login')}?next={request.get_full_path()}")
        return view(request, *args, **kwargs)

    return wrapper

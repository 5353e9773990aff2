"""Template context shared by the staff pages."""

from __future__ import annotations

from sdrbot.access import is_admin


def staff(request) -> dict:
    """For admins: the automatic fallbacks of the last 7 days, shown as a banner on every page (one query)."""
    user = getattr(request, "user", None)
    if user is None or not is_admin(user):
        return {}
    from drafts.rollout import recent_fallbacks

    return {"is_admin_user": True, "fallback_banner": recent_fallbacks()}

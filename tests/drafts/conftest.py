from __future__ import annotations

import pytest

from conversations.models import Category
from knowledge.services import DocumentInput, source_sync

DOCS = {
    "storage": ("Storage limits", "You can add or delete storage space from the Resources page of your plan. "
                "Freed storage space can take up to an hour to become available. Upgrading the plan raises the "
                "storage allotment."),
    "password": ("Reset password", "To reset your password open Settings, choose Security and click Reset password. "
                 "A reset link is emailed to the address on the account and expires after one hour."),
}
RESOLVED = [
    ("order", "I want to cancel my order 1234567", "I've cancelled order {{Order Number}} for you. The refund reaches "
     "your card within five business days."),
    ("order", "where is my package, it has not arrived", "Sorry for the wait! Your package is on its way; you can "
     "follow it with the tracking link in your confirmation email."),
    ("account", "how do I delete my account", "You can delete your account under Settings > Account > Delete. "
     "This cannot be undone."),
]


@pytest.fixture
def kb(db):
    source_sync(source_name="docs", kind="docs",
                documents=[DocumentInput(external_id=k, title=t, text=x) for k, (t, x) in DOCS.items()])
    for slug in {c for c, _, _ in RESOLVED}:
        Category.objects.get_or_create(slug=slug, defaults={"name": slug.title()})
    source_sync(source_name="resolved-tickets", kind="resolved_tickets", documents=[
        DocumentInput(external_id=f"ticket-{i}", text=q, title=q[:40], metadata={"category": c, "reply": r, "ticket_id": i})
        for i, (c, q, r) in enumerate(RESOLVED)
    ])

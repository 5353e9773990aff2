"""Drafts and their traces in the admin, opened in real Chromium: a customer message drafted by the pipeline,
then the draft and its trace with every span, with customer text escaped."""

from __future__ import annotations

import pytest

from conversations.services import message_receive
from drafts.models import Draft
from knowledge.services import DocumentInput, source_sync
from tests.browser.conftest import login, screenshot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_draft_and_trace_in_admin(page, admin_user, celery_worker_process) -> None:
    source_sync(source_name="docs", kind="docs", documents=[DocumentInput(
        external_id="password", title="Reset password",
        text="To reset your password open Settings, choose Security and click Reset password.")])
    m = message_receive(body="How do I reset my password? <img src=x onerror=alert('xss')> my email is a@b.co",
                        channel="api", customer_email="a@b.co")
    # The real worker drafts it, queued on commit by message_receive (the worker is session-wide, so it is this
    # test's only drafter: calling draft_generate here as well raced it for the claim).
    draft = wait_for(lambda: Draft.objects.filter(message=m, status=Draft.Status.READY).first())
    page.goto(f"/admin/sdrbot/trace/{draft.trace_id}/change/")
    login(page, "admin-t", "pw-admin-123")
    page.wait_for_url(f"**/admin/sdrbot/trace/{draft.trace_id}/change/")
    body = page.locator("body").inner_text()
    for step in ("classify", "retrieve", "generate", "check", "store"):
        assert step in body
    assert "<img src=x onerror=alert('xss')>" in body and page.dialogs == []
    assert "a@b.co" not in body and "[email]" in body  # redacted before it was stored
    screenshot(page, "admin-trace")
    page.goto(f"/admin/drafts/draft/{draft.pk}/change/")
    assert "Reset password" in page.locator("body").inner_text()
    screenshot(page, "admin-draft")

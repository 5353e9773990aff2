"""The rollout dashboard in real Chromium."""

from __future__ import annotations

import pytest

from conversations.models import Category
from drafts.models import PhaseChange, ReplayRun
from tests.browser.conftest import login, screenshot
from tests.drafts.test_rollout import sent_drafts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_rollout_dashboard(page, admin_user) -> None:
    offline = Category.objects.create(slug="invoice", name="Invoice")
    ReplayRun.objects.create(category=offline, n=53, edit_similarity=0.43, grounding=1.0, abstain_rate=0.02)
    internal = Category.objects.create(slug="orders", name="Orders", phase="internal")
    sent_drafts(internal, [0.0] * 30 + [0.1] * 15 + [0.4] * 10)
    cf = Category.objects.create(slug="account", name="Account", phase="customer_facing", auto_send=True)
    PhaseChange.objects.create(category=cf, from_phase="internal", to_phase="customer_facing", actor=admin_user,
                               reason="gate open")
    page.goto("/console/rollout/")
    login(page, "admin-t", "pw-admin-123")
    page.wait_for_url("**/console/rollout/")
    row = page.locator("tr", has_text="Orders")
    assert "internal_to_customer_facing: open" in row.inner_text() or "closed" in row.inner_text()
    assert "Wilson lower bound" in row.inner_text()
    screenshot(page, "rollout-dashboard")
    page.locator("tr", has_text="Invoice").locator("summary").click()
    page.locator("tr", has_text="Invoice").get_by_label("New phase").select_option("internal")
    page.locator("tr", has_text="Invoice").get_by_role("button", name="Change phase").click()
    page.get_by_text("Invoice: offline → internal").wait_for()
    assert Category.objects.get(pk=offline.pk).phase == "internal"

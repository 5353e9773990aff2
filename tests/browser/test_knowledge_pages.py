"""The pages of the foundation, opened in real Chromium: login, knowledge search (HTMX), admin, health."""

from __future__ import annotations

import json

import pytest

from knowledge.services import DocumentInput, source_sync
from tests.browser.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def kb():
    source_sync(source_name="ibm-cloud-docs", kind="docs", documents=[
        DocumentInput(external_id="storage", title="Storage limits",
                      text="How can I address storage space limits? Depending on your subscription plan, you can add "
                           "or delete storage from the Resources page."),
        DocumentInput(external_id="query-editor", title="Query editor",
                      text="With the query editor, you can run SQL queries on a specific host and database."),
        DocumentInput(external_id="xss", title="<img src=x onerror=alert('title')>",
                      text="Storage notes <script>alert('kb')</script> and <b>bold</b> markup stay text."),
    ])


def test_login_then_search_with_htmx(page, agent_user, kb) -> None:
    page.goto("/knowledge/search/")
    assert "/console/login/" in page.url  # not reachable without login
    login(page, "agent-t", "pw-agent-123")
    page.wait_for_url("**/knowledge/search/")
    assert page.get_by_role("heading", name="Knowledge base").is_visible()
    page.get_by_label("Query").fill("add or delete storage space")
    page.get_by_label("Query").press("Enter")
    first = page.locator("ol.hits li.hit").first
    first.wait_for()
    assert "Storage limits" in first.inner_text()
    assert "keyword #" in first.inner_text() and "vector #" in first.inner_text()
    assert "q=add%20or%20delete%20storage%20space" in page.url  # hx-push-url keeps a shareable address
    xss = page.locator("li.hit", has_text="Storage notes")
    assert "<script>alert('kb')</script>" in xss.inner_text()  # shown as text, never run
    assert page.dialogs == []
    assert page.locator("li.hit img").count() == 0
    screenshot(page, "knowledge-search")


def test_admin_lists_documents_with_freshness(page, admin_user, kb) -> None:
    page.goto("/admin/knowledge/document/")
    login(page, "admin-t", "pw-admin-123")
    page.wait_for_url("**/admin/knowledge/document/")
    assert page.get_by_role("link", name="storage", exact=True).is_visible()
    assert page.get_by_text("By freshness").is_visible()
    screenshot(page, "admin-documents")


def test_healthz_in_the_browser(page, celery_worker_process) -> None:
    resp = page.goto("/healthz")
    body = json.loads(page.locator("body").inner_text())
    assert resp.status == 200 and body["status"] == "ok"
    screenshot(page, "healthz")

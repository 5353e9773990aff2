"""The staff knowledge-search page: who may see it, full page vs HTMX fragment, and escaping."""

from __future__ import annotations

import pytest

from knowledge.services import DocumentInput, source_sync

pytestmark = pytest.mark.django_db
URL = "/knowledge/search/"


@pytest.fixture
def kb():
    source_sync(source_name="help", documents=[
        DocumentInput(external_id="xss", title="<img src=x onerror=alert(1)>", text="Refund <script>alert('kb')</script> policy."),
    ])


def test_anonymous_and_non_staff_are_sent_to_login(client, outsider_user) -> None:
    resp = client.get(URL)
    assert resp.status_code == 302 and resp["Location"].startswith("/console/login/")
    client.force_login(outsider_user)
    resp = client.get(URL)
    assert resp.status_code == 302 and resp["Location"].startswith("/console/login/")


def test_staff_sees_hits_with_scores_escaped(client, agent_user, kb, django_assert_max_num_queries) -> None:
    client.force_login(agent_user)
    with django_assert_max_num_queries(13):  # 12 + the fallback banner check
        resp = client.get(URL, {"q": "refund policy", "mode": "hybrid", "k": "3"})
    html = resp.content.decode()
    assert resp.status_code == 200 and "<html" in html
    assert "&lt;script&gt;alert(&#x27;kb&#x27;)&lt;/script&gt;" in html and "<script>alert('kb')" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "keyword #1" in html and "vector #1" in html


def test_htmx_request_gets_the_fragment_only(client, agent_user, kb) -> None:
    client.force_login(agent_user)
    resp = client.get(URL, {"q": "refund", "mode": "keyword"}, HTTP_HX_REQUEST="true")
    html = resp.content.decode()
    assert resp.status_code == 200 and "<html" not in html and 'class="hits"' in html
    assert "HX-Request" in resp["Vary"]


def test_bad_parameters_fall_back_instead_of_failing(client, agent_user, kb) -> None:
    client.force_login(agent_user)
    resp = client.get(URL, {"q": "refund", "mode": "nonsense", "k": "lots"})
    assert resp.status_code == 200 and 'value="hybrid" selected' in resp.content.decode()

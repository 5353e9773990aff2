"""Each monitor with a case that must fire and one that must not, and monitors on a real draft."""

from __future__ import annotations

import json

import pytest

from drafts.monitors import MonitorInput, monitors_run
from knowledge.services import DocumentInput, source_sync

pytestmark = pytest.mark.django_db


def fired(reply: str, *, grounding: float | None = 1.0, email: str = "", customer_text: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in monitors_run(MonitorInput(reply=reply, grounding_score=grounding, customer_email=email,
                                       customer_text=customer_text)):
        out.setdefault(f["monitor"], []).append(f["evidence"])
    return out


@pytest.fixture
def kb():
    source_sync(source_name="docs", kind="docs", documents=[DocumentInput(
        external_id="contact", title="Contact us", url="https://help.example.com/contact",
        text="Write to support@example.com or call +1 415 555 0100. Guides live at https://help.example.com/guides. "
             "Status (https://status.example.com:8443/now?region=eu), shop at www.shop.example/faq!")])


@pytest.mark.parametrize("monitor, positive, negative", [
    ("risky_promise", "We will refund the full amount today.", "Refunds follow the policy in your order confirmation."),
    ("risky_promise", "I'll give you a discount on the next order.", "Discount codes are listed on the offers page."),
    ("risky_promise", "We accept full liability for the damage.", "Our terms describe liability for damage."),
    ("toxic", "Please read the manual, it is your own fault.", "The manual explains this on page 4."),
    ("ai_disclosure", "As an AI language model I cannot see your account.", "I cannot see your account details here."),
    ("ai_disclosure", "My instructions say I must not discuss that.", "That is handled by our billing team."),
])
def test_pattern_monitors(kb, monitor: str, positive: str, negative: str) -> None:
    assert monitor in fired(positive)
    assert monitor not in fired(negative)


def test_unknown_url(kb) -> None:
    assert fired("See https://help.example.com/guides.") == {}
    assert fired("See https://help.example.com/contact") == {}
    assert fired("Log in at https://evil.example.net/login now")["unknown_url"] == ["https://evil.example.net/login"]
    # found through the host lexeme whatever surrounds it in the passage: a port, parentheses, no scheme
    assert fired("Check https://status.example.com:8443/now?region=eu then www.shop.example/faq") == {}
    assert fired("Check https://status.example.com:8443/later") == {"unknown_url": ["https://status.example.com:8443/later"]}


def test_foreign_personal_data(kb) -> None:
    assert fired("We emailed jane@example.org about it.", email="bob@example.org") == {
        "foreign_personal_data": ["jane@example.org"]}
    assert fired("We emailed bob@example.org about it.", email="bob@example.org") == {}
    assert fired("Call us on +1 415 555 0100 or write to support@example.com.") == {}  # published in the KB
    assert "foreign_personal_data" in fired("Your colleague on +44 20 7946 0958 asked too.")
    assert fired("I will call you back on +44 20 7946 0958.", customer_text="my number is +44 20 7946 0958") == {}


def test_low_grounding(settings) -> None:
    settings.MONITOR_MIN_GROUNDING = 0.5
    assert fired("Plain answer.", grounding=0.25) == {"low_grounding": ["0.25 < 0.50"]}
    assert fired("Plain answer.", grounding=0.5) == {}
    assert fired("Plain answer.", grounding=None) == {}


def test_monitors_on_a_model_draft(kb, settings, recording_server) -> None:
    reply = {"reply": "We will refund you in full. Log in at https://evil.example.net/x to confirm.",
             "cited_chunk_ids": [], "confidence": 0.9, "needs_human": False}
    server = recording_server(lambda m, p, h, b: (200, {"Content-Type": "application/json"}, json.dumps({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(reply)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()))
    settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "k", server.url + "/v1"
    from conversations.services import message_receive
    from drafts.services import draft_generate

    m = message_receive(body="Can I get my money back?", channel="api", customer_email="c@example.com")
    d = draft_generate(draft_id=m.drafts.get().pk)
    monitors = {f["monitor"] for f in d.monitor_flags}
    assert {"risky_promise", "unknown_url", "low_grounding"} <= monitors
    assert all(f["blocking"] for f in d.monitor_flags)
    check = d.trace.spans.get(name="check")
    assert {f["monitor"] for f in check.output["monitors"]} == monitors

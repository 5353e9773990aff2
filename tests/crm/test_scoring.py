"""Scoring and routing rules (crm.scoring.route is pure: slots and conversation text in, routing out)."""

from __future__ import annotations

import copy

import pytest

from crm import scoring, slots


def current(text: str) -> dict[str, dict]:
    return {e.slot: {"value": e.value, "normalized": e.normalized, "quote": e.quote, "turn": 0}
            for e in slots.extract(text).slots}


def route(text: str, rules=None, **kw) -> scoring.Routing:
    ex = slots.extract(text)
    return scoring.route(current=current(text), rules=rules, conversation_text=text,
                         angry=any(f["flag"] == "angry" for f in ex.flags), intent=kw.pop("intent", "sales"), **kw)


@pytest.mark.parametrize("text, reason", [
    ("We're 2,500 people and want a demo", "large deal: team of 2500"),
    ("Our budget is $250k for this", "large deal: budget USD 250,000"),
    ("This is ridiculous, your sales team never called me back!", "angry customer"),
    ("Our lawyer needs to review the contract terms first", "legal: lawyer, contract terms"),
    ("Can you fill in our security questionnaire?", "security review: security questionnaire"),
])
def test_hard_rules_hand_off_whatever_the_score(text, reason) -> None:
    r = route(text)
    assert r.next_action == "human_handoff" and reason in r.handoff_reasons


def test_bands_count_once_per_group_and_score_is_clamped() -> None:
    r = route("I'm the CTO at Acme, we have 300 agents, budget $60k, we need it ASAP. We need to cut response times.")
    assert [f["rule"] for f in r.fired] == ["team_200", "decision_maker", "company_known", "timeline_30", "budget_50k",
                                           "need_stated"]
    assert r.score == 25 + 15 + 5 + 20 + 25 + 5 == 95 and r.tier == "A" and r.next_action == "book_meeting"
    rules = copy.deepcopy(scoring.DEFAULT_RULES)
    rules["rules"][0]["points"] = 100
    assert route("we have 300 agents", rules).score == 100  # clamped


def test_admin_rules_change_the_routing() -> None:
    text = "we have 12 agents and want it next month"
    assert route(text).next_action == "self_serve"  # 8 + 12 = 20 → tier C
    rules = copy.deepcopy(scoring.DEFAULT_RULES)
    rules["tiers"] = [{"tier": "hot", "min_score": 15, "action": "book_meeting"},
                      {"tier": "cold", "min_score": 0, "action": "self_serve"}]
    r = route(text, scoring.validate_rules(rules))
    assert r.tier == "hot" and r.next_action == "book_meeting"


def test_support_conversation_routes_to_support_ticket() -> None:
    assert route("my invoice is wrong", intent="support", support_turns=2).next_action == "support_ticket"
    assert route("my invoice is wrong", intent="support", support_turns=1).next_action != "support_ticket"


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["rules"][0].update(slot="shoe_size"), "unknown slot"),
    (lambda r: r["rules"][1].update(id="team_200"), "duplicate id"),
    (lambda r: r["rules"][0].pop("value"), "needs a value"),
    (lambda r: r["tiers"][0].update(action="call_mum"), "action must be one of"),
    (lambda r: r.update(tiers=[{"tier": "A", "min_score": 10, "action": "book_meeting"}]), "min_score 0"),
    (lambda r: r["rules"][0].update(points=500), "between -100 and 100"),
])
def test_invalid_rules_are_refused_with_the_reason(mutate, message) -> None:
    rules = copy.deepcopy(scoring.DEFAULT_RULES)
    mutate(rules)
    with pytest.raises(ValueError, match=message):
        scoring.validate_rules(rules)

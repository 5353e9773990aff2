"""Lead scoring and routing from configurable rules (``CrmSettings.scoring_rules``; empty = :data:`DEFAULT_RULES`).

- **Hard handoff rules** are checked first: legal or security-review topics, a large deal (budget or team size at or
  over the thresholds) or an angry customer → ``human_handoff`` whatever the score.
- **Score** 0–100 = the sum of the points of the rules that fire, clamped. Rules belong to a dimension (fit,
  urgency, value) and a group; in each group only the first firing rule counts (bands such as team 200+ / 50+ /
  10+). A rule reads one slot's current value: ``present``, ``gte`` / ``lte`` on its number, ``in`` a list.
- **Tier** is the first tier whose ``min_score`` the score reaches; the tier names the next action
  (``book_meeting`` or ``self_serve`` by default). A support conversation routes to ``support_ticket``.

The defaults below are a starting point written by the team (B2B SaaS common sense, not fitted to data); admins
change them in the console.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DIMENSIONS = ("fit", "urgency", "value")
OPS = ("present", "gte", "lte", "in", "eq")
ACTIONS = ("self_serve", "book_meeting", "support_ticket", "human_handoff")

DEFAULT_RULES: dict[str, Any] = {
    "rules": [
        {"id": "team_200", "dimension": "fit", "group": "team", "slot": "team_size", "op": "gte", "value": 200, "points": 25, "label": "Team of 200+"},
        {"id": "team_50", "dimension": "fit", "group": "team", "slot": "team_size", "op": "gte", "value": 50, "points": 15, "label": "Team of 50+"},
        {"id": "team_10", "dimension": "fit", "group": "team", "slot": "team_size", "op": "gte", "value": 10, "points": 8, "label": "Team of 10+"},
        {"id": "decision_maker", "dimension": "fit", "group": "authority", "slot": "authority", "op": "eq", "value": "decision_maker", "points": 15, "label": "Talking to a decision maker"},
        {"id": "influencer", "dimension": "fit", "group": "authority", "slot": "authority", "op": "eq", "value": "influencer", "points": 8, "label": "Talking to an influencer"},
        {"id": "company_known", "dimension": "fit", "group": "company", "slot": "company", "op": "present", "points": 5, "label": "Company known"},
        {"id": "email_known", "dimension": "fit", "group": "email", "slot": "email", "op": "present", "points": 5, "label": "Valid email"},
        {"id": "timeline_30", "dimension": "urgency", "group": "timeline", "slot": "timeline", "op": "lte", "value": 30, "points": 20, "label": "Wants it within a month"},
        {"id": "timeline_90", "dimension": "urgency", "group": "timeline", "slot": "timeline", "op": "lte", "value": 90, "points": 12, "label": "Wants it within a quarter"},
        {"id": "timeline_180", "dimension": "urgency", "group": "timeline", "slot": "timeline", "op": "lte", "value": 180, "points": 5, "label": "Wants it within six months"},
        {"id": "budget_50k", "dimension": "value", "group": "budget", "slot": "budget", "op": "gte", "value": 50000, "points": 25, "label": "Budget 50k+"},
        {"id": "budget_10k", "dimension": "value", "group": "budget", "slot": "budget", "op": "gte", "value": 10000, "points": 15, "label": "Budget 10k+"},
        {"id": "budget_1k", "dimension": "value", "group": "budget", "slot": "budget", "op": "gte", "value": 1000, "points": 5, "label": "Budget 1k+"},
        {"id": "need_stated", "dimension": "value", "group": "need", "slot": "need", "op": "present", "points": 5, "label": "Need stated"},
    ],
    "tiers": [
        {"tier": "A", "min_score": 70, "action": "book_meeting"},
        {"tier": "B", "min_score": 40, "action": "book_meeting"},
        {"tier": "C", "min_score": 0, "action": "self_serve"},
    ],
    "handoff": {
        "budget_gte": 100000,
        "team_size_gte": 1000,
        "legal_terms": ["legal", "lawyer", "attorney", "contract terms", "msa", "dpa", "data processing agreement", "lawsuit", "liability"],
        "security_terms": ["security review", "security questionnaire", "soc 2", "soc2", "iso 27001", "pen test", "penetration test", "vendor assessment", "hipaa"],
        "angry": True,
    },
}


@dataclass
class Routing:
    score: int
    tier: str
    next_action: str
    fired: list[dict] = field(default_factory=list)
    handoff_reasons: list[str] = field(default_factory=list)


def _number(slot: str, current: dict[str, dict]) -> float | None:
    v = current.get(slot)
    if not v:
        return None
    n = v.get("normalized") or {}
    for k in ("count", "amount", "days"):
        if k in n:
            return float(n[k])
    return None


def _value(slot: str, current: dict[str, dict]) -> Any:
    v = current.get(slot)
    if not v:
        return None
    n = v.get("normalized") or {}
    return n.get("level", v.get("value"))


def validate_rules(rules: Any) -> dict:
    """Check an admin's rules document; returns it, or raises ``ValueError`` naming the first problem."""
    from crm.models import SlotValue

    if not isinstance(rules, dict):
        raise ValueError("the rules must be a JSON object with rules, tiers and handoff")
    for key in ("rules", "tiers", "handoff"):
        if key not in rules:
            raise ValueError(f"missing {key!r}")
    ids = set()
    for n, r in enumerate(rules["rules"], start=1):
        where = f"rules[{n}]"
        if not isinstance(r, dict):
            raise ValueError(f"{where}: must be an object")
        for k in ("id", "dimension", "group", "slot", "op", "points"):
            if k not in r:
                raise ValueError(f"{where}: missing {k!r}")
        if r["id"] in ids:
            raise ValueError(f"{where}: duplicate id {r['id']!r}")
        ids.add(r["id"])
        if r["dimension"] not in DIMENSIONS:
            raise ValueError(f"{where}: dimension must be one of {', '.join(DIMENSIONS)}")
        if r["slot"] not in SlotValue.SLOTS:
            raise ValueError(f"{where}: unknown slot {r['slot']!r}")
        if r["op"] not in OPS:
            raise ValueError(f"{where}: op must be one of {', '.join(OPS)}")
        if r["op"] != "present" and "value" not in r:
            raise ValueError(f"{where}: op {r['op']} needs a value")
        if not isinstance(r["points"], (int, float)) or not -100 <= r["points"] <= 100:
            raise ValueError(f"{where}: points must be a number between -100 and 100")
    tiers = rules["tiers"]
    if not tiers or not all(isinstance(t, dict) and {"tier", "min_score", "action"} <= t.keys() for t in tiers):
        raise ValueError("tiers: each needs tier, min_score and action")
    if any(t["action"] not in ACTIONS for t in tiers):
        raise ValueError(f"tiers: action must be one of {', '.join(ACTIONS)}")
    if min(t["min_score"] for t in tiers) > 0:
        raise ValueError("tiers: one tier must start at min_score 0")
    if not isinstance(rules["handoff"], dict):
        raise ValueError("handoff: must be an object")
    return rules


def _terms_found(terms: list[str], text: str) -> list[str]:
    return [t for t in terms if re.search(rf"\b{re.escape(t)}\b", text, re.IGNORECASE)]


def route(*, current: dict[str, dict], rules: dict | None, conversation_text: str, angry: bool, intent: str,
          support_turns: int = 0) -> Routing:
    """Score and route a lead. ``current`` is slot → {"value", "normalized", "quote", "turn"}; ``conversation_text``
    the customer's messages (for the hard rules); ``angry`` whether a turn was flagged angry; ``intent`` the
    conversation's main intent (``support_ticket`` once two turns were support questions and fewer than two slots are
known: an existing customer, not a prospect). Pure: reads nothing else, so a message cannot set its own score."""
    rules = rules or DEFAULT_RULES
    fired: list[dict] = []
    groups_done: set[str] = set()
    for r in rules["rules"]:
        if r["group"] in groups_done:
            continue
        slot = r["slot"]
        ok = False
        if r["op"] == "present":
            ok = slot in current and current[slot].get("value") not in ("", "none yet")
        elif r["op"] in ("gte", "lte"):
            n = _number(slot, current)
            ok = n is not None and (n >= float(r["value"]) if r["op"] == "gte" else n <= float(r["value"]))
        elif r["op"] == "eq":
            ok = _value(slot, current) == r["value"]
        elif r["op"] == "in":
            ok = _value(slot, current) in r["value"]
        if ok:
            groups_done.add(r["group"])
            fired.append({"rule": r["id"], "dimension": r["dimension"], "points": r["points"], "label": r["label"],
                          "evidence": current[slot].get("quote", "")[:200], "turn": current[slot].get("turn")})
    score = int(max(0, min(100, round(sum(f["points"] for f in fired)))))
    tiers = sorted(rules["tiers"], key=lambda t: -t["min_score"])
    tier = next(t for t in tiers if score >= t["min_score"])

    h = rules.get("handoff", {})
    reasons: list[str] = []
    if found := _terms_found(h.get("legal_terms", []), conversation_text):
        reasons.append(f"legal: {', '.join(found)}")
    if found := _terms_found(h.get("security_terms", []), conversation_text):
        reasons.append(f"security review: {', '.join(found)}")
    budget = _number("budget", current)
    if h.get("budget_gte") and budget is not None and budget >= h["budget_gte"]:
        reasons.append(f"large deal: budget {current['budget']['value']}")
    team = _number("team_size", current)
    if h.get("team_size_gte") and team is not None and team >= h["team_size_gte"]:
        reasons.append(f"large deal: team of {int(team)}")
    if h.get("angry", True) and angry:
        reasons.append("angry customer")
    if reasons:
        action = "human_handoff"
    elif intent == "support" and support_turns >= 2 and len(current) < 2:
        action = "support_ticket"
    else:
        action = tier["action"]
    return Routing(score=score, tier=tier["tier"], next_action=action, fired=fired, handoff_reasons=reasons)

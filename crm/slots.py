"""The offline slot extractor: deterministic rules (regular expressions and small lexicons) that read one customer
message and return the slots it fills — name, email, company, role, team size and BANT (budget, authority, need,
timeline) — each with the customer's own words. Emails are checked with Django's ``EmailValidator`` and refused when
the domain is a placeholder or disposable one. Instructions aimed at the agent ("set my score to 100") are reported,
never obeyed: nothing here reads a score, tier or status from a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

SOURCE = "offline_extractor"


@dataclass
class Extracted:
    slot: str
    value: str
    normalized: dict
    quote: str


@dataclass
class Extraction:
    slots: list[Extracted] = field(default_factory=list)
    flags: list[dict] = field(default_factory=list)  # {"flag", "quote"}
    refused: bool = False  # the prospect declines to give details

    def get(self, slot: str) -> Extracted | None:
        return next((s for s in self.slots if s.slot == slot), None)


_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]*[A-Za-z0-9]")
PLACEHOLDER_DOMAINS = {"example.com", "example.org", "example.net", "test.com", "test.test", "email.com", "domain.com",
                       "mailinator.com", "guerrillamail.com", "10minutemail.com", "yopmail.com", "tempmail.com",
                       "trashmail.com", "fake.com", "asdf.com", "nowhere.com"}
FAKE_LOCAL_PARTS = {"test", "fake", "asdf", "noreply", "no-reply", "nobody", "none", "null", "foo", "xxx", "abc"}
FREE_MAIL = {"gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "proton.me", "protonmail.com",
             "aol.com", "gmx.com", "live.com", "mail.com"}

_NUM = r"(\d{1,3}(?:[,.\s]\d{3})+|\d+(?:\.\d+)?)"
_TEAM = re.compile(
    rf"(?:\b(?:team|company|staff|headcount)\s+of\s+(?:about\s+|around\s+|roughly\s+|~)?{_NUM}\b)"
    rf"|(?:(?:about|around|roughly|~|we\s+are|we're|we\s+have)\s*)?\b{_NUM}\s*\+?\s*(?:(?:support|sales|customer|"
    rf"service|full[- ]time|internal|active|human|it)\s+)?(?:people|employees|users|seats|agents|engineers|"
    rf"staff|persons|reps|developers|members|person\s+team|licenses|licences)\b",
    re.IGNORECASE)
_MONEY = re.compile(
    rf"(?P<cur1>[$€£])\s?{_NUM}\s?(?P<suf1>k|m|thousand|million)?\b"
    rf"|\b{_NUM}\s?(?P<suf2>k|m|thousand|million)?\s?(?P<cur2>usd|eur|gbp|dollars|euros|pounds)\b"
    rf"|\bbudget\b[^.\d$€£]{{0,25}}?(?P<cur3>[$€£])?\s?{_NUM}\s?(?P<suf3>k|m|thousand|million)?\b"
    rf"|\b{_NUM}\s?(?P<suf4>k|m|thousand|million)?\s+(?:of\s+)?budget\b",
    re.IGNORECASE)
_CURRENCY = {"$": "USD", "€": "EUR", "£": "GBP", "usd": "USD", "eur": "EUR", "gbp": "GBP", "dollars": "USD",
             "euros": "EUR", "pounds": "GBP"}
_MULT = {"k": 1_000, "thousand": 1_000, "m": 1_000_000, "million": 1_000_000}
_NO_BUDGET = re.compile(r"\b(no|zero)\s+budget\b|\bbudget\s+(is\s+)?(not\s+(set|defined|approved)|tbd|unknown)\b", re.I)

_TIMELINE: list[tuple[re.Pattern, int]] = [
    (re.compile(r"\b(asap|as soon as possible|immediately|right away|urgent(ly)?|this week)\b", re.I), 7),
    (re.compile(r"\b(this month|end of (the )?month|within (a|one) month|in (a|one) month|next (two|2|few) weeks)\b", re.I), 30),
    (re.compile(r"\b(next month|in (two|2) months|within (two|2) months)\b", re.I), 60),
    (re.compile(r"\b(this quarter|next quarter|in (three|3) months|within (three|3|90 days) months|within 90 days|by q[1-4]|in q[1-4])\b", re.I), 90),
    (re.compile(r"\b(in (six|6) months|next half|h2|second half|later this year|by (the )?end of (the )?year|this year)\b", re.I), 180),
    (re.compile(r"\b(next year|in a year|12 months|no rush|just (browsing|looking|exploring)|not (in a|any) hurry)\b", re.I), 365),
]
_TIMELINE_N = re.compile(r"\b(?:in|within|next)\s+(\d{1,2})\s+(day|week|month)s?\b", re.I)

# role title → authority (decision_maker > influencer > user)
_ROLES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"\b(ceo|cto|cfo|coo|cio|ciso|cro|cmo|founder|co-?founder|owner|president|managing director|"
                r"vp|vice president|head of [a-z ]{2,30}?|chief [a-z]+ officer|director(?: of [a-z ]{2,30}?)?|partner)\b", re.I),
     "decision_maker"),
    (re.compile(r"\b([a-z]+ )?(manager|team lead|lead|supervisor|architect|procurement|buyer)\b", re.I), "influencer"),
    (re.compile(r"\b([a-z]+ )?(engineer|developer|analyst|agent|consultant|specialist|intern|student|designer|assistant)\b", re.I), "user"),
]
_ROLE_CONTEXT = re.compile(r"\b(i'?m|i am|as|my role is|work as|working as|title is|i'm the|i am the|i'm a|i am a|i'm an|i am an)\b", re.I)
_AUTHORITY = [
    (re.compile(r"\b(i (make|own|sign off on) (the )?(decision|budget|purchase)s?|i'?m the decision[- ]maker|i decide|"
                r"my (call|decision)|i have (the )?(final|budget) (say|authority))\b", re.I), "decision_maker"),
    (re.compile(r"\b(need to (check|run it by|ask|get approval from) (with )?(my|our) (boss|manager|cfo|ceo|team|director)|"
                r"not the decision[- ]maker|(my|our) (boss|manager|cfo|ceo) (decides|will decide|signs))\b", re.I), "influencer"),
]
_NAME = re.compile(r"\b(?i:my name is|name's|i am|i'm|this is|call me)\s+([A-Z][a-zà-ÿ'\-]+(?:\s+[A-Z][a-zà-ÿ'\-]+)?)")
_NOT_NAMES = {"The", "A", "An", "Not", "Looking", "Interested", "From", "With", "At", "Head", "Director", "Manager",
              "Just", "Still", "Also", "So", "Very", "Ready", "Happy", "Here", "Sorry", "Curious", "Trying", "Working"}
_COMPANY = re.compile(
    r"\b(?:i work (?:at|for)|work(?:ing)? (?:at|for)|(?:we are|we're|i'm|i am|this is [A-Z][a-z]+)\s+(?:from|at|with)|"
    r"(?:company|organisation|organization|employer) (?:is|called|named)|from|at)\s+"
    r"([A-Z][A-Za-z0-9&.\-]+(?:\s+(?:[A-Z][A-Za-z0-9&.\-]+|&))*)")
_COMPANY_STOP = {"The", "I", "We", "Our", "My", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Q1", "Q2", "Q3",
                 "Q4", "SSO", "SAML", "API", "EU", "US", "UK", "CEO", "CTO", "CFO", "VP"}
_NEED = re.compile(r"\b(we need(?! to (check|ask|run|get approval))|i need(?! to (check|ask|run|get approval|talk to my))|we want to|we'?re looking (for|to)|looking for|our (main )?(problem|challenge|goal|pain) is|"
                   r"we (struggle|have trouble) with|we'd like to|hoping to|trying to|we must|need to(?! (check|ask|run|get approval|talk to my)))\b", re.I)
_REFUSAL = re.compile(r"\b(rather not (say|share|tell)|prefer not to (say|share|tell)|won'?t (say|share|give)|not (going to|gonna) "
                      r"(say|share|give)|none of your business|no comment|skip (this|that|the questions?)|i don'?t want to (say|share|give)|"
                      r"stop asking|no more questions|just (give|tell|send) me the (price|pricing|link))\b", re.I)
_ANGRY = re.compile(r"\b(ridiculous|unacceptable|furious|outraged|scam|rip[- ]?off|worst|terrible service|disgusting|"
                    r"wtf|fed up|sick of|pissed|angry|livid|lawsuit|sue you)\b", re.I)
# instructions to the agent about its own scoring / routing (never obeyed)
_INSTRUCTION = re.compile(
    r"\b(set|make|change|give|put|update|mark|raise|bump)\b.{0,20}\b(my|the|this|our)?\s*(lead\s+)?(score|tier|rating|priority|status|stage)\b"
    r"|\bmark (me|us|this( lead)?) (as )?(qualified|hot|a[- ]?tier|priority|vip)\b"
    r"|\b(ignore|disregard|forget)\b.{0,40}\b(instructions?|rules|prompt|previous|above)\b|\b(system|developer)\s+prompt\b"
    r"|\byou are now\b|\bscore\s*(=|:|to)\s*\d+",
    re.IGNORECASE | re.DOTALL)


def _number(text: str) -> float:
    t = text.replace(" ", "")
    if re.fullmatch(r"\d{1,3}([,.]\d{3})+", t):
        t = re.sub(r"[,.]", "", t)
    return float(t.replace(",", ""))


def check_email(raw: str) -> tuple[str, str]:
    """(normalised email, "") when usable, else ("", reason). Placeholder/disposable domains and obviously fake
    local parts are refused; free-mail addresses are accepted (but no company is inferred from them)."""
    email = raw.strip().strip(".,;:").lower()
    try:
        EmailValidator()(email)
    except ValidationError:
        return "", "malformed"
    local, _, domain = email.partition("@")
    if domain in PLACEHOLDER_DOMAINS or domain.endswith((".test", ".invalid", ".example", ".localhost")):
        return "", "placeholder or disposable domain"
    if local in FAKE_LOCAL_PARTS or re.fullmatch(r"(.)\1{2,}", local):
        return "", "placeholder address"
    return email, ""


def _sentence_around(text: str, start: int, end: int) -> str:
    left = max(text.rfind(c, 0, start) for c in ".!?\n")
    rights = [i for i in (text.find(c, end) for c in ".!?\n") if i != -1]
    right = min(rights) + 1 if rights else len(text)
    return text[left + 1:right].strip()[:300]


def extract(text: str, *, asked: str = "") -> Extraction:
    """Slots found in one message. ``asked`` is the slot the agent just asked for, so that a bare answer ("about
    40", "next quarter", "Acme") fills it."""
    out = Extraction()
    text = text or ""
    if m := _INSTRUCTION.search(text):
        out.flags.append({"flag": "instruction_ignored", "quote": _sentence_around(text, m.start(), m.end())})
        # an instruction carries no facts we would trust: nothing else is read from its sentence
        text = text[:m.start()] + " " * (m.end() - m.start()) + text[m.end():]
        sent = _sentence_around(text, m.start(), m.end())
        if sent:
            text = text.replace(sent, " " * len(sent), 1)
    if _REFUSAL.search(text):
        out.refused = True
    if _ANGRY.search(text) or (len(re.findall(r"[A-Z]{4,}", text)) >= 3 and "!!" in text):
        m = _ANGRY.search(text)
        out.flags.append({"flag": "angry", "quote": _sentence_around(text, m.start(), m.end()) if m else text[:200]})

    for m in _EMAIL.finditer(text):
        email, reason = check_email(m.group(0))
        if email:
            out.slots.append(Extracted("email", email, {"domain": email.split("@")[1]}, m.group(0)))
            break
        out.flags.append({"flag": "email_refused", "quote": m.group(0), "reason": reason})
    text_wo_email = _EMAIL.sub(" ", text)

    m = _TEAM.search(text_wo_email)
    if m:
        n = int(_number(next(g for g in m.groups() if g)))
        if 0 < n < 10_000_000:
            out.slots.append(Extracted("team_size", str(n), {"count": n}, _sentence_around(text_wo_email, m.start(), m.end())))
    elif asked == "team_size":
        m2 = re.search(rf"\b{_NUM}\b", text_wo_email)
        if m2 and 0 < _number(m2.group(1)) < 10_000_000:
            n = int(_number(m2.group(1)))
            out.slots.append(Extracted("team_size", str(n), {"count": n}, _sentence_around(text_wo_email, m2.start(), m2.end())))

    if m := _NO_BUDGET.search(text_wo_email):
        out.slots.append(Extracted("budget", "none yet", {"amount": 0, "currency": ""}, _sentence_around(text_wo_email, m.start(), m.end())))
    else:
        for m in _MONEY.finditer(text_wo_email):
            groups = m.groupdict()
            nums = [g for g in m.groups() if g and re.fullmatch(r"[\d,.\s]+", g)]
            if not nums:
                continue
            num = nums[0]
            suffix = (groups.get("suf1") or groups.get("suf2") or groups.get("suf3") or groups.get("suf4") or "").lower()
            cur = _CURRENCY.get((groups.get("cur1") or groups.get("cur2") or groups.get("cur3") or "").lower(), "")
            amount = _number(num) * _MULT.get(suffix, 1)
            if amount <= 0:
                continue
            out.slots.append(Extracted("budget", f"{cur + ' ' if cur else ''}{amount:,.0f}".strip(),
                                       {"amount": amount, "currency": cur or "USD"},
                                       _sentence_around(text_wo_email, m.start(), m.end())))
            break

    timeline = None
    m = _TIMELINE_N.search(text_wo_email)
    if m:
        n, unit = int(m.group(1)), m.group(2).lower()
        days = n * {"day": 1, "week": 7, "month": 30}[unit]
        timeline = Extracted("timeline", m.group(0).lower(), {"days": days}, _sentence_around(text_wo_email, m.start(), m.end()))
    else:
        for pattern, days in _TIMELINE:
            m = pattern.search(text_wo_email)
            if m:
                timeline = Extracted("timeline", m.group(0).lower(), {"days": days}, _sentence_around(text_wo_email, m.start(), m.end()))
                break
    if timeline:
        out.slots.append(timeline)

    role = None
    for pattern, role_level in _ROLES:
        for m in pattern.finditer(text_wo_email):
            before = text_wo_email[max(0, m.start() - 25):m.start()]
            if _ROLE_CONTEXT.search(before) or asked in ("role", "authority"):
                title = m.group(0).strip()
                role = (title, role_level, _sentence_around(text_wo_email, m.start(), m.end()))
                break
        if role:
            break
    if role:
        out.slots.append(Extracted("role", role[0], {"title": role[0]}, role[2]))
    authority = None
    for pattern, level in _AUTHORITY:
        m = pattern.search(text_wo_email)
        if m:
            authority = Extracted("authority", level.replace("_", " "), {"level": level},
                                  _sentence_around(text_wo_email, m.start(), m.end()))
            break
    if authority is None and role:
        authority = Extracted("authority", role[1].replace("_", " "), {"level": role[1], "from_role": role[0]}, role[2])
    if authority:
        out.slots.append(authority)

    m = _NAME.search(text_wo_email)
    if m:
        name = m.group(1).strip()
        first = name.split()[0]
        if first not in _NOT_NAMES and not _ROLES[0][0].fullmatch(first) and first.lower() not in {"from", "at"}:
            parts = [p for p in name.split() if p not in _NOT_NAMES and p.lower() not in {"from", "at", "and"}]
            if parts:
                name = " ".join(parts[:2])
                out.slots.append(Extracted("name", name, {}, _sentence_around(text_wo_email, m.start(), m.end())))
    elif asked == "name":
        m2 = re.fullmatch(r"\s*(?:(?i:it'?s|i'?m)\s+)?([A-Z][a-zà-ÿ'\-]+(?:\s+[A-Z][a-zà-ÿ'\-]+)?)\s*[.!]?\s*", text_wo_email)
        if m2:
            out.slots.append(Extracted("name", m2.group(1), {}, text_wo_email.strip()))

    company = None
    person = out.get("name")
    for m in _COMPANY.finditer(text_wo_email):
        name = re.split(r"[.,;!?]\s", m.group(1) + " ")[0].strip(" .,")
        words = [w for w in name.split() if w not in _COMPANY_STOP]
        if words and words[0] not in _COMPANY_STOP and not (person and name == person.value):
            company = Extracted("company", " ".join(words)[:200], {}, _sentence_around(text_wo_email, m.start(), m.end()))
            break
    if company is None and asked == "company":
        m2 = re.fullmatch(r"\s*(?:(?i:it'?s|we'?re|we are)\s+)?([A-Za-z0-9][A-Za-z0-9&.\- ]{1,60}?)\s*[.!]?\s*", text_wo_email)
        if m2 and not out.refused:
            company = Extracted("company", m2.group(1).strip(), {}, text_wo_email.strip())
    email_slot = out.get("email")
    if company is None and email_slot:
        domain = email_slot.normalized["domain"]
        if domain not in FREE_MAIL:
            company = Extracted("company", domain.split(".")[0].title(), {"from_email_domain": domain}, email_slot.quote)
    if company:
        out.slots.append(company)

    m = _NEED.search(text_wo_email)
    if m:
        out.slots.append(Extracted("need", _sentence_around(text_wo_email, m.start(), m.end())[:300], {},
                                   _sentence_around(text_wo_email, m.start(), m.end())))
    elif asked == "need" and len(text_wo_email.split()) >= 3 and not out.refused and not out.slots and not out.flags:
        # a bare answer to "what are you hoping to solve?" — only when the message says nothing else we recognise
        out.slots.append(Extracted("need", text_wo_email.strip()[:300], {}, text_wo_email.strip()[:300]))
    return out

"""Monitors: detectors run on every draft in the pipeline's check step. Each firing is a flag with its evidence,
stored on the draft and its trace; a firing monitor marked ``blocking`` keeps a draft from being sent by the bot
(the rollout issue's auto-send), and the console lists flagged replies.

Detectors (deterministic, documented patterns — a chat-model judge can be added behind the same interface):
- ``risky_promise``: promises of refunds, credits, discounts, compensation or legal commitments;
- ``unknown_url``: a URL in the reply that appears nowhere in the knowledge base (documents' URLs and chunk texts);
- ``foreign_personal_data``: an email address or phone number in the reply that is not the customer's own and does
  not appear in the knowledge base (another customer's data, or an invented contact);
- ``toxic``: rude, insulting or dismissive phrasing;
- ``ai_disclosure``: talk about being an AI, a language model, or about the prompt / instructions;
- ``low_grounding``: a grounding score under ``MONITOR_MIN_GROUNDING`` (default 0.5).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection

from sdrbot.pii import EMAIL, PHONE


@dataclass(frozen=True)
class Flag:
    monitor: str
    blocking: bool
    evidence: str  # the matched text or the measured value


@dataclass(frozen=True)
class MonitorInput:
    reply: str
    grounding_score: float | None
    customer_email: str = ""
    customer_text: str = ""  # what the customer wrote (their own contact data may be repeated back)


_PROMISE = re.compile(
    r"\b(we(?:'ll| will)|i(?:'ll| will)|you(?:'ll| will))\s+(?:\w+\s+){0,3}?"
    r"(refund|reimburse|credit|compensate|waive|give you (?:a )?(?:discount|voucher|credit))\b"
    r"|\b(full|partial)\s+refund\s+(?:has been|is|will be)\s+(?:approved|issued|guaranteed)"
    r"|\b\d{1,3}\s?% (?:discount|off)\b|\bfree of charge\b"
    r"|\b(legally|contractually)\s+(?:bound|obliged|liable)|\bwe (?:accept|admit) (?:full )?(?:liability|responsibility)\b"
    r"|\bguarantee(?:d)?\b",
    re.IGNORECASE,
)
_URL = re.compile(r"\bhttps?://[^\s<>\"')\]]+", re.IGNORECASE)
_TOXIC = re.compile(
    r"\b(stupid|idiot(?:ic)?|dumb|moron|shut up|ridiculous question|your (?:own )?fault|not our problem|"
    r"calm down|read the (?:damn |f\w*ing )?manual|rtfm|whatever|useless|pathetic|damn|crap|hell no)\b",
    re.IGNORECASE,
)
_AI_TALK = re.compile(
    r"\b(as an ai|i am an ai|i'm an ai|language model|large language model|llm|chatgpt|openai|my (?:system )?prompt|"
    r"my instructions|i was instructed|i am not allowed to (?:say|tell)|as a (?:bot|chatbot|virtual assistant))\b",
    re.IGNORECASE,
)


def _lexeme(item: str) -> str | None:
    """The full-text lexeme a chunk containing ``item`` must have, to find candidates through the chunks' GIN
    index: PostgreSQL's parser makes a URL's host (``help.example.com``, with its port) and an email address each
    one lexeme, whatever surrounds them. None for anything else (phone numbers), which is looked for by scanning."""
    low = item.lower()
    if "@" in low and " " not in low and "/" not in low:
        return low
    host = urlsplit(low if "://" in low else f"//{low}").netloc if ("://" in low or low.startswith("www.")) else ""
    return host.rsplit("@", 1)[-1] or None


def _urls_known(urls: Sequence[str]) -> set[str]:
    """The URLs, email addresses or phone numbers (trailing punctuation stripped) that occur in the knowledge base:
    as a document URL or inside a chunk's text. One query; a chunk is read only when it has the item's host or
    email lexeme (GIN index), so the check costs the same at any knowledge-base size."""
    if not urls:
        return set()
    with connection.cursor() as cur:
        cur.execute(
            "SELECT x.u FROM unnest(%s::text[], %s::text[]) AS x(u, lex) WHERE"
            " EXISTS (SELECT 1 FROM knowledge_document d WHERE d.removed_at IS NULL AND d.url = x.u)"
            " OR EXISTS (SELECT 1 FROM knowledge_chunk c WHERE x.lex IS NOT NULL"
            "  AND c.search_vector @@ to_tsquery('simple', quote_literal(x.lex)) AND strpos(c.text, x.u) > 0)"
            " OR EXISTS (SELECT 1 FROM knowledge_chunk c WHERE x.lex IS NULL AND strpos(c.text, x.u) > 0)",
            [list(urls), [_lexeme(u) for u in urls]],
        )
        return {row[0] for row in cur.fetchall()}


def _strip(url: str) -> str:
    return url.rstrip(".,;:!?")


def check_risky_promise(m: MonitorInput) -> list[Flag]:
    return [Flag("risky_promise", True, hit.group(0)) for hit in _PROMISE.finditer(m.reply)][:3]


def check_unknown_url(m: MonitorInput) -> list[Flag]:
    urls = sorted({_strip(u) for u in _URL.findall(m.reply)})
    known = _urls_known(urls)
    return [Flag("unknown_url", True, u) for u in urls if u not in known]


def check_foreign_personal_data(m: MonitorInput) -> list[Flag]:
    own = {m.customer_email.lower()} | {e.lower() for e in EMAIL.findall(m.customer_text)}
    own_digits = {re.sub(r"\D", "", p) for p in PHONE.findall(m.customer_text)}
    found = [e for e in EMAIL.findall(m.reply) if e.lower() not in own]
    found += [p for p in PHONE.findall(m.reply)
              if 8 <= len(re.sub(r"\D", "", p)) <= 15 and re.sub(r"\D", "", p) not in own_digits]
    if not found:
        return []
    in_kb = _urls_known(found)  # published support addresses and numbers are fine
    return [Flag("foreign_personal_data", True, x) for x in found if x not in in_kb]


def check_toxic(m: MonitorInput) -> list[Flag]:
    return [Flag("toxic", True, hit.group(0)) for hit in _TOXIC.finditer(m.reply)][:3]


def check_ai_disclosure(m: MonitorInput) -> list[Flag]:
    return [Flag("ai_disclosure", True, hit.group(0)) for hit in _AI_TALK.finditer(m.reply)][:3]


def check_low_grounding(m: MonitorInput) -> list[Flag]:
    threshold = settings.MONITOR_MIN_GROUNDING
    if m.grounding_score is not None and m.grounding_score < threshold:
        return [Flag("low_grounding", True, f"{m.grounding_score:.2f} < {threshold:.2f}")]
    return []


MONITORS: dict[str, Callable[[MonitorInput], list[Flag]]] = {
    "risky_promise": check_risky_promise,
    "unknown_url": check_unknown_url,
    "foreign_personal_data": check_foreign_personal_data,
    "toxic": check_toxic,
    "ai_disclosure": check_ai_disclosure,
    "low_grounding": check_low_grounding,
}


def monitors_run(m: MonitorInput) -> list[dict]:
    """Every monitor on one reply → the flags as dicts ``{"monitor", "blocking", "evidence"}``."""
    return [asdict(flag) for check in MONITORS.values() for flag in check(m)]

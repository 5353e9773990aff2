"""The grounding check: the share of a reply's sentences that the retrieved text supports.

A sentence is *supported* when at least ``GROUNDING_SUPPORT_THRESHOLD`` (default 0.5) of its content terms appear
in one retrieved passage (token-overlap support, the lexical variant of the "supported sentences" metrics of
RAGAS-style faithfulness, Es et al. 2023). Sentences with fewer than ``MIN_TERMS`` content terms (greetings,
sign-offs such as "Thanks for reaching out.") and a trailing "Sources:" list are not counted: they claim nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

from drafts.text import content_terms, sentences, strip_citations

MIN_TERMS = 3
_SOURCES = re.compile(r"\n\s*Sources:\s*\n.*\Z", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Grounding:
    score: float | None  # supported / counted sentences, 0–1; None when no sentence carries content
    supported: int
    counted: int
    unsupported: list[str]


def grounding_check(reply: str, passages: Sequence[str], *, threshold: float | None = None) -> Grounding:
    threshold = settings.GROUNDING_SUPPORT_THRESHOLD if threshold is None else threshold
    bags = [set(content_terms(p)) for p in passages if p]
    supported = counted = 0
    unsupported: list[str] = []
    for sent in sentences(strip_citations(_SOURCES.sub("", reply))):
        terms = set(content_terms(sent))
        if len(terms) < MIN_TERMS:
            continue
        counted += 1
        best = max((len(terms & bag) / len(terms) for bag in bags), default=0.0)
        if best >= threshold:
            supported += 1
        else:
            unsupported.append(sent[:300])
    return Grounding(round(supported / counted, 4) if counted else None, supported, counted, unsupported)

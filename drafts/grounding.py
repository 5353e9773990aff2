"""The grounding check: the share of a reply's sentences that the retrieved text supports.

A sentence is *supported* when at least ``GROUNDING_SUPPORT_THRESHOLD`` (default 0.5) of its content terms appear
in one retrieved passage (token-overlap support, the lexical variant of the "supported sentences" metrics of
RAGAS-style faithfulness, Es et al. 2023). Sentences without content terms (greetings, sign-offs) are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

from drafts.text import content_terms, sentences, strip_citations


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
    for sent in sentences(strip_citations(reply)):
        terms = set(content_terms(sent))
        if not terms:
            continue
        counted += 1
        best = max((len(terms & bag) / len(terms) for bag in bags), default=0.0)
        if best >= threshold:
            supported += 1
        else:
            unsupported.append(sent[:300])
    return Grounding(round(supported / counted, 4) if counted else None, supported, counted, unsupported)

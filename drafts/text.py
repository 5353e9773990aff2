"""Small text utilities shared by the responder, the grounding check and the replay metrics."""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9{])|\n{2,}|\n(?=[-*•] |\d+[.)] )")
_CITATION = re.compile(r"\s*\[\d+\]")


@lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | {"hi", "hello", "thanks", "thank", "please", "let", "know", "help"}


def stem(word: str) -> str:
    """A light suffix stripper (plural, -ing, -ed), enough to match 'refunds'/'refund', 'shipping'/'ship'."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "ls":
        word = word[:-1]  # shipp → ship
    return word


def content_terms(text: str) -> list[str]:
    """Lower-cased, stemmed words that carry meaning (no stop words, no 1-letter tokens)."""
    sw = stop_words()
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in sw and len(w) > 1]


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT.split(text) if s and s.strip()]


def strip_citations(text: str) -> str:
    return _CITATION.sub("", text)


def normalise_ws(text: str) -> str:
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 (Rajpurkar et al. 2016) over lower-cased words."""
    from collections import Counter

    p, r = _WORD.findall(prediction.lower()), _WORD.findall(reference.lower())
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)

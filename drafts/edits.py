"""How much an agent changed a draft before sending it.

- ``edit_distance``: normalised Levenshtein distance (rapidfuzz) between the whitespace-normalised draft and sent
  text, 0 (identical) – 1 (nothing in common);
- ``chars_inserted`` / ``chars_deleted``: the insertions and deletions of the shortest insert/delete script (Indel)
  that turns the draft into the sent text;
- ``diff``: word-level opcodes ``[op, draft words, sent words]`` with op ``equal | insert | delete | replace``;
- ``bucket``: ``unchanged`` (distance 0), ``light`` (≤ 0.15 — the median-distance bar of the customer-facing gate,
  so a light edit is one the gate counts as acceptable), ``heavy`` (≤ 0.5, up to half the text changed),
  ``rewritten`` (> 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

from rapidfuzz.distance import Indel, Levenshtein

LIGHT_MAX = 0.15
HEAVY_MAX = 0.5
BUCKETS = ("unchanged", "light", "heavy", "rewritten")


@dataclass(frozen=True)
class EditMetrics:
    distance: float
    chars_inserted: int
    chars_deleted: int
    bucket: str
    diff: list[list]


def normalise(text: str) -> str:
    return " ".join(text.split())


def bucket_of(distance: float) -> str:
    if distance == 0:
        return "unchanged"
    if distance <= LIGHT_MAX:
        return "light"
    if distance <= HEAVY_MAX:
        return "heavy"
    return "rewritten"


def word_diff(draft: str, sent: str) -> list[list]:
    """Word-level opcodes by difflib's matcher (Ratcliff/Obershelp longest matching blocks), which groups changes
    the way a reader expects."""
    a, b = draft.split(), sent.split()
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    return [[tag, " ".join(a[i1:i2]), " ".join(b[j1:j2])] for tag, i1, i2, j1, j2 in matcher.get_opcodes()]


def edit_metrics(draft: str, sent: str) -> EditMetrics:
    a, b = normalise(draft), normalise(sent)
    distance = round(float(Levenshtein.normalized_distance(a, b)), 4)
    ops = Indel.editops(a, b)
    inserted = sum(1 for op in ops if op.tag == "insert")
    deleted = sum(1 for op in ops if op.tag == "delete")
    return EditMetrics(distance, inserted, deleted, bucket_of(distance), word_diff(a, b))

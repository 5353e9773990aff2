"""Redaction of personal data in free text: emails, phone numbers, payment card numbers (Luhn-checked) and
social handles. Used before spans are stored or exported, on import of real conversations, and in logs."""

from __future__ import annotations

import re
from typing import Any

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# 13–19 digits, optionally grouped by spaces or dashes (ISO/IEC 7812 lengths)
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# international or national numbers with at least 8 digits, optional separators and parentheses
PHONE = re.compile(r"(?<![\w@])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){2,4}(?![\w@])")
HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{1,15}\b")


def luhn_ok(digits: str) -> bool:
    """Luhn checksum (ISO/IEC 7812-1), which every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else m.group(0)


def _phone(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[phone]" if 8 <= len(digits) <= 15 else m.group(0)


_DROP_DIGITS = str.maketrans("", "", "0123456789")


def redact_text(text: str) -> str:
    """Replace emails, card numbers and phone numbers with ``[email]``, ``[card]``, ``[phone]``. The patterns run
    only where they can match (an ``@``; at least 8 digits in the text, the fewest a phone or card number has), so
    the long retrieved passages of a trace are redacted at the cost of two C-level scans."""
    if not text:
        return text
    if "@" in text:
        text = EMAIL.sub("[email]", text)
    if len(text) - len(text.translate(_DROP_DIGITS)) >= 8:
        text = CARD.sub(_card, text)
        text = PHONE.sub(_phone, text)
    return text


def redact(value: Any) -> Any:
    """:func:`redact_text` applied to every string inside dicts, lists and tuples (keys are left alone)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def mask_handles(text: str, keep: set[str] | frozenset[str] = frozenset()) -> str:
    """Replace social handles (``@name``) with ``@user``, except those in ``keep`` (e.g. the brand's own)."""
    return HANDLE.sub(lambda m: m.group(0) if m.group(0)[1:].lower() in keep else "@user", text)

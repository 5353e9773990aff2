"""Redaction of personal data before spans are stored or exported."""

from __future__ import annotations

from sdrbot.pii import redact, redact_text


def test_emails_cards_and_phones_are_redacted_and_the_rest_is_kept() -> None:
    text = ("Mail jane.doe+x@example.co.uk or call +44 20 7946 0958 / 0612345678; card 4111 1111 1111 1111, "
            "order 12345, version 2.4.1, not a card 4111 1111 1111 1112.")
    out = redact_text(text)
    assert "jane.doe" not in out and "[email]" in out
    assert "7946" not in out and "0612345678" not in out and out.count("[phone]") == 2
    assert "[card]" in out and "4111 1111 1111 1111" not in out
    assert "order 12345, version 2.4.1" in out  # too few digits to be a phone or a card
    assert "not a card 4111 1111 1111 1112." in out  # fails the Luhn check: kept


def test_the_shortest_phone_and_text_with_few_digits() -> None:
    assert redact_text("call 1234 5678 now") == "call [phone] now"  # 8 digits: the fewest a phone has
    assert redact_text("call 123 4567 now") == "call 123 4567 now"  # 7 digits: kept
    assert redact_text("write to a@b.io") == "write to [email]"
    assert redact({"k": ["x@y.com", {"n": "+1 415 555 0100"}], "n": 3}) == {"k": ["[email]", {"n": "[phone]"}], "n": 3}

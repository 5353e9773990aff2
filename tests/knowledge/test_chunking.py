"""Structure-aware chunking, with the real embedding tokenizer as the counter."""

from __future__ import annotations

import pytest

from knowledge.chunking import Block, chunk_blocks, parse_html, parse_markdown, split_sentences
from sdrbot.embeddings import LocalOnnxEmbedder


@pytest.fixture(scope="module")
def count():
    return LocalOnnxEmbedder().count_tokens_batch


DOC = """# Billing

Invoices are issued on the first day of each month. You can download them from the billing page.

- Visa and Mastercard are accepted.
- Bank transfer is available for annual plans.

## Refunds

Refunds are processed within 5 business days. Contact support with your order number.

# Shipping

We ship worldwide from two warehouses.
"""


def test_markdown_blocks_keep_structure() -> None:
    blocks = parse_markdown(DOC)
    kinds = [(b.kind, b.level) for b in blocks]
    assert kinds == [("heading", 1), ("paragraph", 0), ("list", 0), ("heading", 2), ("paragraph", 0),
                     ("heading", 1), ("paragraph", 0)]
    assert blocks[2].text.splitlines() == ["- Visa and Mastercard are accepted.",
                                          "- Bank transfer is available for annual plans."]


def test_chunks_never_span_two_sections_and_carry_heading_path(count) -> None:
    chunks = chunk_blocks(parse_markdown(DOC), target_tokens=200, overlap_tokens=10, count_tokens=count)
    assert [c.heading for c in chunks] == ["Billing", "Billing › Refunds", "Shipping"]
    assert "warehouses" in chunks[2].text and "Refunds" not in chunks[0].text
    assert [c.ordinal for c in chunks] == [0, 1, 2]


def test_target_size_and_overlap_in_tokens(count) -> None:
    sentences = [f"Sentence {i} explains step {i} of the installation in some detail." for i in range(60)]
    blocks = [Block("paragraph", " ".join(sentences))]
    chunks = chunk_blocks(blocks, target_tokens=60, overlap_tokens=15, count_tokens=count)
    assert len(chunks) > 5
    assert all(c.token_count <= 60 for c in chunks)
    assert all(c.token_count == count([c.text])[0] for c in chunks)
    for a, b in zip(chunks, chunks[1:]):
        last_sentence = split_sentences(a.text)[-1]
        assert b.text.startswith(last_sentence)  # the overlap repeats the tail of the previous chunk
    # every sentence is somewhere
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)


def test_oversized_sentence_is_split_into_word_windows(count) -> None:
    blocks = [Block("paragraph", "word " * 500)]
    chunks = chunk_blocks(blocks, target_tokens=100, overlap_tokens=0, count_tokens=count)
    assert len(chunks) >= 5 and all(c.token_count <= 110 for c in chunks)
    assert sum(c.text.count("word") for c in chunks) == 500


def test_plain_text_heading_lines(count) -> None:
    text = "\n\n  Time series library \n\nA time series is a sequence of values.\n\n  Next step \n\nRead the guide."
    blocks = parse_markdown(text)
    assert [(b.kind, b.text) for b in blocks] == [("heading", "Time series library"),
                                                 ("paragraph", "A time series is a sequence of values."),
                                                 ("heading", "Next step"), ("paragraph", "Read the guide.")]


def test_html_drops_scripts_and_keeps_structure() -> None:
    html = """<html><head><title>Reset password</title><script>alert(1)</script></head><body>
      <nav>Home | Docs</nav><h1>Reset</h1><p>Open <b>Settings</b>.</p><ul><li>Click reset</li><li>Check mail</li></ul>
      <pre>curl -X POST /reset</pre></body></html>"""
    title, blocks = parse_html(html)
    assert title == "Reset password"
    assert [(b.kind, b.text) for b in blocks] == [
        ("heading", "Reset"), ("paragraph", "Open Settings ."), ("list", "- Click reset\n- Check mail"),
        ("code", "curl -X POST /reset")]


def test_bad_sizes_raise() -> None:
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_blocks([], target_tokens=10, overlap_tokens=10, count_tokens=lambda t: [1] * len(t))


def test_a_one_line_document_is_content_not_a_heading(count) -> None:
    blocks = parse_markdown("I want to cancel my order 1234567")
    assert blocks == [Block("paragraph", "I want to cancel my order 1234567")]
    chunks = chunk_blocks(blocks, target_tokens=50, overlap_tokens=5, count_tokens=count)
    assert [c.text for c in chunks] == ["I want to cancel my order 1234567"]

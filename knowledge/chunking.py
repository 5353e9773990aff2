"""Structure-aware chunking: documents → blocks (headings, paragraphs, list items, code) → chunks of a target size
in tokens with an overlap in tokens.

Rules (the usual recursive-splitting scheme of LangChain/LlamaIndex, applied to parsed structure, not raw characters):
- a chunk never spans two sections: a heading starts a new chunk once the current one holds more than the overlap;
  the heading path ("Install › Linux") is kept with every chunk of its section;
- blocks are packed whole while they fit ``target_tokens``; a block larger than the target is split into sentences
  (list blocks into items), and a sentence larger than the target into word windows;
- consecutive chunks of one section share up to ``overlap_tokens`` of trailing sentences, so an answer that straddles
  a boundary is whole in at least one chunk.

Token counts are the embedding tokenizer's word pieces (see ``sdrbot.embeddings``), passed in as ``count_tokens``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CountTokens = Callable[[Sequence[str]], list[int]]

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_FENCE = re.compile(r"^\s*(```|~~~)")
# Sentence boundary: terminal punctuation, space, then something that can start a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclass(frozen=True)
class Block:
    kind: str  # heading | paragraph | list | code
    text: str
    level: int = 0  # heading level 1–6


@dataclass(frozen=True)
class ChunkSpec:
    ordinal: int
    heading: str
    text: str
    token_count: int


def _is_plain_heading(lines: list[str]) -> bool:
    """A plain-text paragraph that is one short line without terminal punctuation reads as a heading
    (e.g. '  Next step ' in exported docs)."""
    if len(lines) != 1:
        return False
    line = lines[0].strip()
    return 0 < len(line) <= 80 and not line.endswith((".", ":", "?", "!", ",", ";")) and not _LIST_ITEM.match(line)


def parse_markdown(text: str, *, plain_headings: bool = True) -> list[Block]:
    """Markdown (or plain text) → blocks. ATX headings (``#``), fenced code, list runs and blank-line separated
    paragraphs. With ``plain_headings``, a lone short line without terminal punctuation is taken as a heading."""
    blocks: list[Block] = []
    para: list[str] = []
    items: list[str] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    def flush_para() -> None:
        if para:
            if plain_headings and _is_plain_heading(para):
                blocks.append(Block("heading", para[0].strip(), 3))
            else:
                blocks.append(Block("paragraph", " ".join(p.strip() for p in para)))
            para.clear()

    def flush_items() -> None:
        if items:
            blocks.append(Block("list", "\n".join(items)))
            items.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if fm := _FENCE.match(line):
            flush_para()
            flush_items()
            fence = fm.group(1)
            code = [line]
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                code.append(lines[i])
                i += 1
            if i < len(lines):
                code.append(lines[i])
            blocks.append(Block("code", "\n".join(code)))
        elif m := _MD_HEADING.match(line):
            flush_para()
            flush_items()
            if m.group(2):
                blocks.append(Block("heading", m.group(2), len(m.group(1))))
        elif _LIST_ITEM.match(line):
            flush_para()
            items.append(re.sub(r"\s+", " ", line.strip()))
        elif not line.strip():
            flush_para()
            flush_items()
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + line.strip()  # continuation of a list item
        else:
            flush_items()
            para.append(line)
        i += 1
    flush_para()
    flush_items()
    blocks = [b for b in blocks if b.text.strip()]
    if blocks and all(b.kind == "heading" for b in blocks):
        # a text that is only short lines (a one-line question, a title) is content, not structure
        blocks = [Block("paragraph", b.text) for b in blocks]
    return blocks


_HTML_BLOCK_TAGS = {"p", "li", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "dt", "dd", "blockquote"}


def parse_html(html: str) -> tuple[str, list[Block]]:
    """HTML → (title, blocks). Scripts, styles and navigation are dropped; headings, paragraphs, list items and
    preformatted text become blocks."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "nav", "footer", "header", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    blocks: list[Block] = []
    body = soup.body or soup
    list_run: list[str] = []
    for el in body.find_all(_HTML_BLOCK_TAGS):
        if el.find_parent(_HTML_BLOCK_TAGS - {"td", "th"}) is not None and el.name != "li":
            continue  # its text is already in the enclosing block
        name = el.name
        text = el.get_text("\n" if name == "pre" else " ", strip=True)
        if not text:
            continue
        if name == "li":
            list_run.append("- " + re.sub(r"\s+", " ", text))
            continue
        if list_run:
            blocks.append(Block("list", "\n".join(list_run)))
            list_run = []
        if name in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            blocks.append(Block("heading", re.sub(r"\s+", " ", text), int(name[1])))
        elif name == "pre":
            blocks.append(Block("code", text))
        else:
            blocks.append(Block("paragraph", re.sub(r"\s+", " ", text)))
    if list_run:
        blocks.append(Block("list", "\n".join(list_run)))
    if not title:
        title = next((b.text for b in blocks if b.kind == "heading"), "")
    return title, blocks


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    return [p for p in parts if p]


@dataclass
class _Unit:
    text: str
    tokens: int
    sep: str  # what joins it to the previous unit of the same chunk


def _units(block: Block, target: int, count: CountTokens) -> list[_Unit]:
    """A block as packable units: whole if it fits, else sentences / list items / word windows."""
    whole = count([block.text])[0]
    if whole <= target:
        return [_Unit(block.text, whole, "\n\n")]
    pieces = block.text.split("\n") if block.kind in {"list", "code"} else split_sentences(block.text)
    inner_sep = "\n" if block.kind in {"list", "code"} else " "
    sizes = count(pieces)
    out: list[_Unit] = []
    for n, (piece, size) in enumerate(zip(pieces, sizes)):
        sep = "\n\n" if n == 0 else inner_sep
        if size <= target:
            out.append(_Unit(piece, size, sep))
            continue
        words = piece.split()
        # words ≈ 0.75 tokens each in English; window by words, then trust the counter on the result
        step = max(1, int(len(words) * target / size))
        for w in range(0, len(words), step):
            window = " ".join(words[w : w + step])
            out.append(_Unit(window, count([window])[0], sep if w == 0 else " "))
    return out


def chunk_blocks(
    blocks: Sequence[Block], *, target_tokens: int, overlap_tokens: int, count_tokens: CountTokens
) -> list[ChunkSpec]:
    """Pack blocks into chunks. ``target_tokens`` > 0 is the size a chunk grows to (a single unit is never cut
    below a sentence unless it alone exceeds the target); ``0 <= overlap_tokens < target_tokens``.
    Raises ``ValueError`` for sizes outside those ranges."""
    if target_tokens <= 0 or not 0 <= overlap_tokens < target_tokens:
        raise ValueError(f"need target_tokens > 0 and 0 <= overlap_tokens < target; got {target_tokens}, {overlap_tokens}")
    chunks: list[tuple[str, list[_Unit]]] = []
    path: list[tuple[int, str]] = []
    current: list[_Unit] = []
    size = 0

    def heading() -> str:
        return " › ".join(t for _, t in path)

    def emit(carry_overlap: bool) -> None:
        nonlocal current, size
        if not current:
            return
        chunks.append((heading(), current))
        if not carry_overlap or overlap_tokens == 0:
            current, size = [], 0
            return
        keep: list[_Unit] = []
        kept = 0
        for unit in reversed(current):
            if kept + unit.tokens > overlap_tokens:
                break
            keep.insert(0, unit)
            kept += unit.tokens
        if len(keep) == len(current):  # never repeat a whole chunk
            keep, kept = [], 0
        current, size = keep, kept

    for block in blocks:
        if block.kind == "heading":
            # a preamble no bigger than the overlap joins the next section rather than standing alone
            if size > overlap_tokens:
                emit(carry_overlap=False)
            while path and path[-1][0] >= block.level:
                path.pop()
            path.append((block.level, block.text.strip()))
            continue
        for unit in _units(block, target_tokens, count_tokens):
            if current and size + unit.tokens > target_tokens:
                emit(carry_overlap=True)
            current.append(unit)
            size += unit.tokens
    emit(carry_overlap=False)

    joined = [(head[:500], (units[0].text + "".join(u.sep + u.text for u in units[1:])).strip()) for head, units in chunks]
    joined = [(h, t) for h, t in joined if t]
    counts = count_tokens([t for _, t in joined]) if joined else []
    return [ChunkSpec(i, h, t, c) for i, ((h, t), c) in enumerate(zip(joined, counts))]

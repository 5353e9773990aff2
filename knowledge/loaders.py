"""Reading documents from files for ingestion, with errors that say what is wrong and where (file:line, field).

Loaders never write: they return the valid documents and a list of :class:`Problem`; the caller decides whether
problems abort the import (the default: nothing is ingested) or are skipped (``--skip-invalid``)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from knowledge.chunking import parse_html
from knowledge.services import DocumentInput

MARKDOWN_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}
HTML_SUFFIXES = {".html", ".htm"}


@dataclass(frozen=True)
class Problem:
    where: str  # "file:line" or "file"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class LoadError(ValueError):
    """The input cannot be read at all (missing path, wrong kind of path, unknown format)."""


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def _decode(raw: bytes, where: str) -> str | Problem:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Problem(where, f"invalid UTF-8 at byte {exc.start} ({exc.reason})")


def json_object_lines(path: Path, problems: list[Problem], *, max_bytes: int | None = None
                      ) -> Iterator[tuple[str, dict]]:
    """The JSON objects of a JSONL file as (``file:line``, object). Blank lines are skipped; a line over
    ``max_bytes``, with invalid UTF-8, malformed JSON or a non-object is recorded in ``problems`` and skipped."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            if not raw.strip():
                continue
            if max_bytes is not None and len(raw) > max_bytes:
                problems.append(Problem(where, f"document is {_mb(len(raw))}, over the {_mb(max_bytes)} limit (KB_MAX_DOCUMENT_BYTES)"))
                continue
            text = _decode(raw, where)
            if isinstance(text, Problem):
                problems.append(text)
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append(Problem(where, f"malformed JSON: {exc.msg} (column {exc.colno})"))
                continue
            if not isinstance(obj, dict):
                problems.append(Problem(where, f"expected a JSON object, got {type(obj).__name__}"))
                continue
            yield where, obj


MAX_PROBLEMS_SHOWN = 20


def problems_message(problems: Sequence[Problem | str], *, path: object, valid: int, noun: str, verb: str) -> str:
    """"3 invalid document(s) in F; nothing was ingested (pass --skip-invalid to ingest the 5 valid ones):" and
    the first ``MAX_PROBLEMS_SHOWN`` problems, one per line."""
    shown = "\n".join(f"  {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
    more = f"\n  … and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
    return (f"{len(problems)} invalid {noun}(s) in {path}; nothing was {verb}ed "
            f"(pass --skip-invalid to {verb} the {valid} valid ones):\n{shown}{more}")


def load_jsonl(
    path: Path, *, id_field: str = "id", title_field: str | None = "title", text_field: str = "text",
    url_field: str | None = "url", max_bytes: int, metadata_fields: tuple[str, ...] = (),
) -> tuple[list[DocumentInput], list[Problem]]:
    """One document per line of a JSONL file. Blank lines are ignored. Each line must be a JSON object with a
    non-empty string id and text; title and URL are optional. Oversized lines, invalid UTF-8, malformed JSON,
    missing/empty fields and duplicate ids are reported as problems with their line number."""
    docs: list[DocumentInput] = []
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    for where, obj in json_object_lines(path, problems, max_bytes=max_bytes):
        ext = obj.get(id_field)
        if ext is None or (isinstance(ext, str) and not ext.strip()):
            problems.append(Problem(where, f"field {id_field!r} (the id) is missing or empty"))
            continue
        if not isinstance(ext, (str, int)):
            problems.append(Problem(where, f"field {id_field!r} must be a string or number, got {type(ext).__name__}"))
            continue
        ext = str(ext).strip()
        body = obj.get(text_field)
        if not isinstance(body, str):
            problems.append(Problem(where, f"field {text_field!r} (the text) is missing or not a string"))
            continue
        if not body.strip():
            problems.append(Problem(where, f"field {text_field!r} (the text) is empty"))
            continue
        if len(ext) > 255:
            problems.append(Problem(where, f"field {id_field!r} is {len(ext)} characters, over 255"))
            continue
        if ext in first_seen:
            problems.append(Problem(where, f"duplicate id {ext!r} (first at line {first_seen[ext].rsplit(':', 1)[1]})"))
            continue
        first_seen[ext] = where
        title = obj.get(title_field) if title_field else None
        url = obj.get(url_field) if url_field else None
        docs.append(DocumentInput(
            external_id=ext, text=body, title=str(title) if title is not None else "",
            url=str(url) if isinstance(url, str) else "", where=where,
            metadata={f: obj[f] for f in metadata_fields if f in obj},
        ))
    return docs, problems


def _iter_files(root: Path, suffixes: set[str]) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in suffixes and not any(part.startswith(".") for part in p.relative_to(root).parts):
            yield p


def _markdown_title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def load_folder(root: Path, *, fmt: str, max_bytes: int) -> tuple[list[DocumentInput], list[Problem]]:
    """Every Markdown (``.md .markdown .txt .rst``) or HTML (``.html .htm``) file below ``root``, one document
    each, id = the path relative to ``root``. ``fmt`` is ``markdown``, ``html`` or ``auto`` (by suffix)."""
    suffixes = {"markdown": MARKDOWN_SUFFIXES, "html": HTML_SUFFIXES, "auto": MARKDOWN_SUFFIXES | HTML_SUFFIXES}[fmt]
    docs: list[DocumentInput] = []
    problems: list[Problem] = []
    for path in _iter_files(root, suffixes):
        where = str(path)
        size = path.stat().st_size
        if size > max_bytes:
            problems.append(Problem(where, f"document is {_mb(size)}, over the {_mb(max_bytes)} limit (KB_MAX_DOCUMENT_BYTES)"))
            continue
        text = _decode(path.read_bytes(), where)
        if isinstance(text, Problem):
            problems.append(text)
            continue
        rel = str(path.relative_to(root))
        is_html = path.suffix.lower() in HTML_SUFFIXES
        if is_html:
            title, blocks = parse_html(text)
            if not blocks:
                problems.append(Problem(where, "no text in the HTML body"))
                continue
            docs.append(DocumentInput(external_id=rel, text=text, title=title or path.stem, where=where, fmt="html"))
        else:
            if not text.strip():
                problems.append(Problem(where, "file is empty"))
                continue
            docs.append(DocumentInput(external_id=rel, text=text, title=_markdown_title(text, path.stem), where=where))
    return docs, problems


def load_path(path: Path, *, fmt: str | None, max_bytes: int, **jsonl_fields) -> tuple[list[DocumentInput], list[Problem]]:
    """Dispatch on the path and format. Raises :class:`LoadError` when the path is missing or does not fit the
    format (a folder given as jsonl, a file given as markdown folder, …)."""
    if not path.exists():
        raise LoadError(f"{path}: no such file or folder")
    if path.is_dir():
        if fmt == "jsonl":
            raise LoadError(f"{path}: is a folder; --format jsonl takes a file")
        return load_folder(path, fmt=fmt or "auto", max_bytes=max_bytes)
    if fmt in (None, "jsonl") and path.suffix.lower() in {".jsonl", ".ndjson"} or fmt == "jsonl":
        return load_jsonl(path, max_bytes=max_bytes, **jsonl_fields)
    if fmt in ("markdown", "html", None):
        suffixes = HTML_SUFFIXES if fmt == "html" else MARKDOWN_SUFFIXES if fmt == "markdown" else MARKDOWN_SUFFIXES | HTML_SUFFIXES
        if path.suffix.lower() not in suffixes:
            raise LoadError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; pass --format")
        docs, problems = load_folder(path.parent, fmt=fmt or "auto", max_bytes=max_bytes)
        keep = str(path.relative_to(path.parent))
        return [d for d in docs if d.external_id == keep], [p for p in problems if p.where == str(path)]
    raise LoadError(f"{path}: unknown format {fmt!r}")

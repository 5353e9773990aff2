"""Importing historical tickets (a customer's message(s) and the agent's reply) from files.

Readers turn one file format into :class:`HistoricalTicket` records and collect a :class:`Problem` (``file:line``
and what is wrong) for every record they cannot use. They never write. :func:`tickets_import` writes the records
as tickets in one transaction and, for resolved imports, feeds the train tickets to the resolved-tickets
knowledge source; :func:`tickets_import_path` is read + check + import, as ``manage.py tickets_import`` runs it.

Formats (``FORMATS``):

- ``bitext``: the Bitext customer-support CSV (``instruction`` = customer message, ``response`` = reference reply,
  ``category``, ``intent``). It has no id column: the id is ``bitext-<n>`` for the n-th data row (1-based). The
  category ``SHIPPING_ADDRESS`` becomes the name ``Shipping address`` (slug ``shipping-address``). The text is
  synthetic and left as it is: PII masking would turn its 469 order numbers into ``[phone]``.
- ``twitter-cdp``: the IBM Twitter customer-care JSON array (dev.json/test.json of the CDP paper). id =
  ``dialogHeader.sessionID`` (``twitter-<n>``, 1-based position, if missing); category = ``dialogHeader.company``;
  the thread is the ``dialogContent`` turns (``client*`` → customer, ``agent`` → agent) followed by the real agent
  reply ``agentURL.url_utterance``. Every tweet loses its leading run of ``@mentions`` (Twitter's reply addressing),
  then emails, phone and card numbers and every remaining handle except the brand's own are masked.
- ``jsonl``: one ticket per line, ``{"id", "category", "messages": [{"role": "customer"|"agent", "body"}],
  "subject"?, "intent"?}`` (the last message is the agent's reply) or ``{"id", "category", "question", "reply",
  "subject"?, "intent"?}``.
- ``csv``: a header with at least ``id,category,question,reply`` and optionally ``intent,subject``.

``jsonl`` and ``csv`` hold real conversations, so they are masked like the Twitter set (no leading-mention rule).
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from conversations.models import Category, Customer, Message, Ticket
from knowledge.chunking import Block
from knowledge.loaders import Problem, json_object_lines, problems_message
from knowledge.services import DocumentInput, source_sync
from sdrbot.pii import EMAIL, mask_handles, redact_text

FORMATS = ("bitext", "twitter-cdp", "jsonl", "csv")
RESOLVED_SOURCE = "resolved-tickets"
SUBJECT_CHARS = 80  # default subject: the first 80 characters of the first customer message
SPLIT_BUCKETS = 10_000  # split_test is applied with a resolution of 1/10,000

Progress = Callable[[int], None]


class ImportInputError(ValueError):
    """Input that cannot be imported as asked. The message names each problem by ``file:line``; ``problems``
    holds them as :class:`~knowledge.loaders.Problem`."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class Turn:
    """One message of a thread. ``role`` is ``customer`` or ``agent``; ``sent_at`` is None when the source has no
    time."""

    role: str
    body: str
    sent_at: datetime | None = None


@dataclass
class HistoricalTicket:
    """One past conversation as a reader yields it. ``turns`` is the thread in order; the last turn is the agent's
    reply and at least one customer turn precedes it. ``category`` is the category *name* as the source spells it
    (its slug is ``slugify(category)``). ``where`` is ``file:line`` of the record. ``metadata`` is copied to
    ``Ticket.metadata`` (never real identities: no handles, tweet ids or emails)."""

    external_id: str
    category: str
    turns: list[Turn]
    intent: str = ""
    subject: str = ""
    where: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def customer_messages(self) -> list[str]:
        return [t.body for t in self.turns if t.role == Message.Role.CUSTOMER]

    @property
    def reply(self) -> str:
        """The agent's reply (the last turn)."""
        return self.turns[-1].body if self.turns else ""


# ---------------------------------------------------------------------------------------------------------------
# Masking


# "@brand @friend text": the run of handles that opens a tweet, each followed by a space (or ":"/"," then a space)
_LEADING_MENTIONS = re.compile(r"^(?:\s*@[A-Za-z0-9_]+[:,]?(?=\s|$))+\s*")


# Links are kept as they are (web.archive.org timestamps, video and order ids are digit runs that the phone and
# card patterns would take), except for emails in them and messaging links whose path is a phone number.
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
_PHONE_LINK = re.compile(r"^(?:https?://)?(?:wa\.me|api\.whatsapp\.com|t\.me)/", re.IGNORECASE)


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def mask_text(text: str, *, keep: set[str] | frozenset[str] = frozenset(), names: Sequence[str] = ()) -> str:
    """Text as stored from a real conversation: emails, card and phone numbers → ``[email]`` ``[card]`` ``[phone]``
    (``sdrbot.pii.redact_text``, not applied inside links but for emails); ``@handles`` → ``@user`` except those in
    ``keep`` (lower case, without ``@``); bare occurrences of ``names`` (the participants' own handles, at least
    4 characters, e.g. a gamer tag or a site named like the customer) → ``user``. Line endings become ``\\n``."""
    parts: list[str] = []
    last = 0
    for m in _URL.finditer(text):
        url = m.group(0)
        parts.append(redact_text(text[last : m.start()]))
        parts.append(redact_text(url) if _PHONE_LINK.match(url) else EMAIL.sub("[email]", url))
        last = m.end()
    parts.append(redact_text(text[last:]))
    out = mask_handles("".join(parts), keep=keep)
    for name in names:
        if len(name) >= 4 and name.lower() not in keep:
            out = re.sub(rf"(?<![A-Za-z0-9_@]){re.escape(name)}(?![A-Za-z0-9_])", "user", out, flags=re.IGNORECASE)
    return _lines(out)


def mask_tweet(text: str, *, keep: set[str] | frozenset[str] = frozenset(), names: Sequence[str] = ()) -> str:
    """A tweet as stored: HTML entities decoded (the Twitter API sends ``&amp;``), the leading run of ``@mentions``
    dropped (it only addresses the reply and names the customer), then :func:`mask_text`."""
    return mask_text(_LEADING_MENTIONS.sub("", html.unescape(text)), keep=keep, names=names)


# ---------------------------------------------------------------------------------------------------------------
# Readers: (path, problems) → records. Problems are appended; fatal input errors raise ImportInputError.

Reader = Callable[[Path, list[Problem]], Iterator[HistoricalTicket]]

_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by errors="surrogateescape"


def _bad_utf8(*values: Any) -> bool:
    for v in values:
        if isinstance(v, str) and _SURROGATE.search(v):
            return True
        if isinstance(v, dict) and _bad_utf8(*v.values()):
            return True
        if isinstance(v, list) and _bad_utf8(*v):
            return True
    return False


def _csv_rows(path: Path, problems: list[Problem], required: Sequence[str]) -> Iterator[tuple[str, int, dict[str, str]]]:
    """Data rows of a CSV file with a header as (where, row number, {column: value}). Fields may span lines
    (quoted newlines); ``where`` is the line the row starts on. Raises ImportInputError when a required column is
    missing (the file is not in this format)."""
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportInputError(f"{path}:1: the file is empty (expected a CSV header)") from None
        except csv.Error as exc:
            raise ImportInputError(f"{path}:1: malformed CSV header: {exc}") from exc
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise ImportInputError(
                f"{path}:1: the CSV header lacks column(s) {', '.join(missing)} "
                f"(found: {', '.join(h[:40] for h in header[:12]) or 'nothing'})"
            )
        dupes = sorted({h for h in header if h and header.count(h) > 1})
        if dupes:
            raise ImportInputError(f"{path}:1: the CSV header repeats column(s) {', '.join(dupes)}")
        start = reader.line_num + 1
        row_no = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                row_no += 1
                problems.append(Problem(f"{path}:{start}", f"malformed CSV: {exc}"))
                start = reader.line_num + 1
                continue
            where, start = f"{path}:{start}", reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            row_no += 1
            if len(row) != len(header):
                problems.append(Problem(where, f"expected {len(header)} fields as in the header, got {len(row)}"))
                continue
            if _bad_utf8(*row):
                problems.append(Problem(where, "invalid UTF-8 in this row"))
                continue
            yield where, row_no, dict(zip(header, row))


def _required(values: dict[str, Any], names: Sequence[str]) -> str | None:
    """A problem message for the first field of ``names`` that is missing, not a string or blank."""
    for name in names:
        v = values.get(name)
        if v is None:
            return f"field {name!r} is missing"
        if not isinstance(v, str):
            return f"field {name!r} must be a string, got {type(v).__name__}"
        if not v.strip():
            return f"field {name!r} is empty"
    return None


def _optional_str(values: dict[str, Any], name: str) -> str | None:
    """``values[name]`` stripped, "" when absent/null; None when it is there but not a string."""
    v = values.get(name)
    if v is None:
        return ""
    return v.strip() if isinstance(v, str) else None


def read_bitext(path: Path, problems: list[Problem]) -> Iterator[HistoricalTicket]:
    """Bitext customer-support CSV (see the module docstring)."""
    for where, row_no, row in _csv_rows(path, problems, ("instruction", "response", "category", "intent")):
        err = _required(row, ("instruction", "response", "category"))
        if err:
            problems.append(Problem(where, err))
            continue
        category = row["category"].strip().replace("_", " ").capitalize()  # ORDER → Order
        yield HistoricalTicket(
            external_id=f"bitext-{row_no}", category=category, intent=row["intent"].strip(),
            turns=[Turn(Message.Role.CUSTOMER, _lines(row["instruction"])), Turn(Message.Role.AGENT, _lines(row["response"]))],
            where=where, metadata={"source": "bitext", "tags": row.get("tags", "")},
        )


def read_csv(path: Path, problems: list[Problem]) -> Iterator[HistoricalTicket]:
    """Generic CSV: ``id,category,question,reply`` (+ ``intent``, ``subject``). Text is masked."""
    for where, _, row in _csv_rows(path, problems, ("id", "category", "question", "reply")):
        err = _required(row, ("id", "category", "question", "reply"))
        if err:
            problems.append(Problem(where, err))
            continue
        yield HistoricalTicket(
            external_id=row["id"].strip(), category=row["category"].strip(), intent=(row.get("intent") or "").strip(),
            subject=mask_text((row.get("subject") or "").strip()),
            turns=[Turn(Message.Role.CUSTOMER, mask_text(row["question"])), Turn(Message.Role.AGENT, mask_text(row["reply"]))],
            where=where, metadata={"source": "csv"},
        )


def _jsonl_turns(obj: dict[str, Any]) -> list[Turn] | str:
    """The thread of a jsonl ticket, or a problem message."""
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs:
            return "field 'messages' must be a non-empty list"
        turns = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                return f"messages[{i}] must be an object with 'role' and 'body'"
            if m.get("role") not in (Message.Role.CUSTOMER, Message.Role.AGENT):
                return f"messages[{i}].role must be 'customer' or 'agent', got {m.get('role')!r}"
            err = _required(m, ("body",))
            if err:
                return f"messages[{i}]: {err}"
            turns.append(Turn(m["role"], mask_text(m["body"])))
        if turns[-1].role != Message.Role.AGENT:
            return "the last message must be the agent's reply (role 'agent')"
        if not any(t.role == Message.Role.CUSTOMER for t in turns):
            return "no customer message before the agent's reply"
        return turns
    err = _required(obj, ("question", "reply"))
    if err:
        return f"{err} (give 'messages', or 'question' and 'reply')"
    return [Turn(Message.Role.CUSTOMER, mask_text(obj["question"])), Turn(Message.Role.AGENT, mask_text(obj["reply"]))]


def read_jsonl(path: Path, problems: list[Problem]) -> Iterator[HistoricalTicket]:
    """One ticket per line (see the module docstring). Blank lines are ignored. Text is masked."""
    for where, obj in json_object_lines(path, problems):
        ext = obj.get("id")
        if isinstance(ext, int) and not isinstance(ext, bool):
            ext = str(ext)
        err = _required({**obj, "id": ext}, ("id", "category"))
        if err:
            problems.append(Problem(where, err))
            continue
        assert isinstance(ext, str)  # _required has checked it
        subject, intent = _optional_str(obj, "subject"), _optional_str(obj, "intent")
        if subject is None or intent is None:
            problems.append(Problem(where, f"field {'subject' if subject is None else 'intent'!r} must be a string"))
            continue
        turns = _jsonl_turns(obj)
        if isinstance(turns, str):
            problems.append(Problem(where, turns))
            continue
        yield HistoricalTicket(
            external_id=ext.strip(), category=obj["category"].strip(), intent=intent, subject=mask_text(subject),
            turns=turns, where=where, metadata={"source": "jsonl"},
        )


def _parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``2020-04-01T17:31:32.000Z``), None if absent or unparsable."""
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=dt_timezone.utc)


def _parse_duration(value: Any) -> timedelta | None:
    """``HH:MM:SS.f`` → timedelta; None for absent, unparsable or negative values (22 of dev.json are negative)."""
    m = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d*)?)", value.strip()) if isinstance(value, str) else None
    return timedelta(hours=int(m[1]), minutes=int(m[2]), seconds=float(m[3])) if m else None


def _twitter_ticket(conv: Any, where: str, index: int) -> HistoricalTicket | str:
    """One CDP conversation → a record, or a problem message."""
    if not isinstance(conv, dict):
        return f"expected a conversation object, got {type(conv).__name__}"
    header, content, reply = conv.get("dialogHeader"), conv.get("dialogContent"), conv.get("agentURL")
    if not isinstance(header, dict):
        return "field 'dialogHeader' is missing or not an object"
    err = _required(header, ("company",))
    if err:
        return f"dialogHeader: {err}"
    if not isinstance(content, list) or not content:
        return "field 'dialogContent' is missing or empty"
    if not isinstance(reply, dict):
        return "field 'agentURL' (the agent's reply) is missing or not an object"
    err = _required(reply, ("url_utterance",))
    if err:
        return f"agentURL: {err}"
    if _bad_utf8(conv):
        return "invalid UTF-8 in this conversation"
    company = header["company"].strip()
    keep = {company.lower()}
    roles: list[str] = []
    clients: set[str] = set()
    for i, turn in enumerate(content):
        if not isinstance(turn, dict) or not isinstance(turn.get("message"), str):
            return f"dialogContent[{i}] must be an object with a 'message' string"
        if isinstance(turn.get("agent"), str):
            roles.append(Message.Role.AGENT)
            keep.add(turn["agent"].lower())  # the brand's own support handle
        elif any(k.startswith("client") for k in turn):
            roles.append(Message.Role.CUSTOMER)
            clients.update(v for k, v in turn.items() if k.startswith("client") and isinstance(v, str) and v)
        else:
            return f"dialogContent[{i}] has neither a 'client' nor an 'agent' handle"
    names = sorted(clients, key=len, reverse=True)
    turns = []
    for role, turn in zip(roles, content):
        body = mask_tweet(turn["message"], keep=keep, names=names)
        if body:  # a tweet that only addressed someone has nothing left
            turns.append(Turn(role, body, _parse_time(turn.get("datetime"))))
    if not any(t.role == Message.Role.CUSTOMER for t in turns):
        return "no customer message left once the leading @mentions are removed"
    answer = mask_tweet(reply["url_utterance"], keep=keep, names=names)
    if not answer:
        return "agentURL.url_utterance has no text once the leading @mentions are removed"
    started, duration = _parse_time(header.get("conversationDateTime")), _parse_duration(header.get("duration"))
    times = [t.sent_at for t in turns if t.sent_at]
    answered_at = started + duration if started and duration is not None else None
    if times and (answered_at is None or answered_at < max(times)):
        answered_at = max(times)
    turns.append(Turn(Message.Role.AGENT, answer, answered_at))
    session = header.get("sessionID")
    ext = session.strip() if isinstance(session, str) and session.strip() else f"twitter-{index}"
    return HistoricalTicket(
        external_id=ext, category=company, turns=turns, where=where,
        metadata={"source": "twitter-cdp", "company": company, "doc_id": str(reply.get("doc_id") or ""),
                  "url": str(reply.get("url") or "")},
    )


def read_twitter_cdp(path: Path, problems: list[Problem]) -> Iterator[HistoricalTicket]:
    """The CDP JSON array, one record per conversation; ``where`` is the line the conversation starts on. A file
    that is not a JSON array, or whose JSON breaks, raises ImportInputError at the line of the break (what follows
    cannot be read reliably)."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    line, counted = 1, 0

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    def broken(pos: int, what: str) -> ImportInputError:
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return ImportInputError(f"{path}:{text.count(chr(10), 0, pos) + 1}: malformed JSON: {what} (column {col}); "
                                "nothing was imported")

    pos = ws.match(text, 0).end()  # type: ignore[union-attr]
    if pos >= len(text) or text[pos] != "[":
        raise ImportInputError(f"{path}:{text.count(chr(10), 0, pos) + 1}: expected a JSON array of conversations "
                               "(the CDP dev.json/test.json format)")
    pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        return
    index = 0
    while True:
        try:
            conv, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ImportInputError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno}); "
                                   "nothing was imported") from exc
        index += 1
        where = f"{path}:{line_at(pos)}"
        record = _twitter_ticket(conv, where, index)
        if isinstance(record, str):
            problems.append(Problem(where, record))
        else:
            yield record
        pos = ws.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith(",", pos):
            pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
        elif text.startswith("]", pos):
            if text[pos + 1 :].strip():
                raise broken(pos + 1, "extra data after the array")
            return
        else:
            raise broken(pos, "expected ',' or ']' after a conversation")


READERS: dict[str, Reader] = {
    "bitext": read_bitext,
    "twitter-cdp": read_twitter_cdp,
    "jsonl": read_jsonl,
    "csv": read_csv,
}


def record_problem(record: HistoricalTicket) -> str | None:
    """What makes a record unusable for :func:`tickets_import` (the column limits of the models), or None."""
    if not record.external_id.strip():
        return "the id is empty"
    if len(record.external_id) > 255:
        return f"the id is {len(record.external_id)} characters, over 255"
    name = record.category.strip()
    if not name:
        return "the category is empty"
    if len(name) > 200:
        return f"the category name is {len(name)} characters, over 200"
    slug = slugify(name)
    if not slug:
        return f"the category {name!r} has no letters or digits to make a slug from"
    if len(slug) > 100:
        return f"the category slug {slug!r} is over 100 characters"
    if len(record.intent) > 100:
        return f"the intent is {len(record.intent)} characters, over 100"
    if not record.turns or record.turns[-1].role != Message.Role.AGENT or not record.reply.strip():
        return "the agent's reply is missing or empty"
    if not any(t.role == Message.Role.CUSTOMER and t.body.strip() for t in record.turns[:-1]):
        return "no customer message before the agent's reply"
    return None


def read_records(path: Path, *, fmt: str, limit: int | None = None) -> tuple[list[HistoricalTicket], list[Problem]]:
    """Read ``path`` in format ``fmt`` → (valid records, problems). Duplicate ids are problems at the later line.
    With ``limit`` reading stops at the ``limit``-th valid record (later lines are not read).

    Raises ImportInputError for an unknown format, a missing/unreadable path, or a file not in the format."""
    if fmt not in READERS:
        raise ImportInputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not path.exists():
        raise ImportInputError(f"{path}: no such file")
    if not path.is_file():
        raise ImportInputError(f"{path}: not a file")
    records: list[HistoricalTicket] = []
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    if limit is not None and limit <= 0:
        return records, problems
    try:
        for record in READERS[fmt](path, problems):
            err = record_problem(record)
            if err:
                problems.append(Problem(record.where, err))
                continue
            if record.external_id in first_seen:
                problems.append(Problem(record.where, f"duplicate id {record.external_id!r} "
                                                      f"(first at {first_seen[record.external_id]})"))
                continue
            first_seen[record.external_id] = record.where
            records.append(record)
            if limit is not None and len(records) >= limit:
                break
    except OSError as exc:
        raise ImportInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return records, problems


# ---------------------------------------------------------------------------------------------------------------
# Writing


def split_of(external_id: str, *, seed: int, split_test: float) -> str:
    """``test`` when ``int(sha256(f"{seed}:{external_id}"), 16) % 10,000 < split_test × 10,000``, else ``train``:
    deterministic per (seed, id), independent of file order and of what else is imported."""
    bucket = int(hashlib.sha256(f"{seed}:{external_id}".encode()).hexdigest(), 16) % SPLIT_BUCKETS
    return Ticket.Split.TEST.value if bucket < split_test * SPLIT_BUCKETS else Ticket.Split.TRAIN.value


@dataclass(frozen=True)
class CategoryCount:
    name: str
    train: int = 0
    test: int = 0
    created: bool = False

    @property
    def total(self) -> int:
        return self.train + self.test


@dataclass(frozen=True)
class ImportResult:
    """What an import did. ``categories`` counts the *imported* tickets per category slug; ``documents_added`` is
    how many documents the resolved-tickets source gained (0 when not ``resolved``)."""

    imported: int
    skipped_existing: int
    skipped_invalid: int
    train: int
    test: int
    categories: dict[str, CategoryCount]
    documents_added: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    ingest_run_id: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def categories_created(self) -> int:
        return sum(1 for c in self.categories.values() if c.created)


def _lock_channel(channel: str) -> None:
    """Serialise imports into one channel (transaction-scoped advisory lock), so the "already imported" check
    cannot race another import of the same file."""
    key = int.from_bytes(hashlib.sha256(f"tickets_import:{channel}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _document(ticket: Ticket, record: HistoricalTicket, slug: str) -> DocumentInput:
    """The resolved-tickets document of a ticket: the customer message(s) are what is embedded and searched; the
    reply travels in the metadata. Each message is one paragraph block (as Markdown, a short question without
    punctuation would read as a heading and leave no chunk to embed)."""
    questions = [m for m in record.customer_messages if m.strip()]
    return DocumentInput(
        external_id=f"ticket-{ticket.pk}", title=ticket.subject, text="\n\n".join(questions), where=record.where,
        metadata={"category": slug, "intent": record.intent, "ticket_id": ticket.pk, "reply": record.reply},
        fmt="blocks", blocks=[Block("paragraph", q) for q in questions],
    )


def _subject(record: HistoricalTicket) -> str:
    if record.subject.strip():
        return record.subject.strip()[:300]
    first = " ".join(record.customer_messages[0].split()) if record.customer_messages else ""
    return first[:SUBJECT_CHARS]


@transaction.atomic
def tickets_import(
    *,
    records: Sequence[HistoricalTicket],
    resolved: bool,
    split_test: float,
    seed: int,
    channel: str = Ticket.Channel.IMPORT,
    source_name: str = RESOLVED_SOURCE,
    progress: Progress | None = None,
    on_plan: Callable[[int], None] | None = None,
    skipped: Sequence[Problem] = (),
    origin: str = "",
) -> ImportResult:
    """Write ``records`` as tickets, all or nothing.

    Per new record: its category (get or create by ``slugify(name)``), a Customer without real identity
    ("Customer <id>"), the Ticket (``category_source`` "import", split by :func:`split_of`, status ``resolved`` with
    ``resolved_at`` when ``resolved`` else ``awaiting_agent``) and its Messages (turn_index 0..n, the reply last).
    A record whose (channel, id) already exists is skipped (``skipped_existing``), so re-importing a file is a
    no-op. With ``resolved``, the new *train* tickets (never test ones) are synced into the knowledge source
    ``source_name`` (kind ``resolved_tickets``, nothing removed) inside the same transaction: if embedding fails,
    no ticket stays either. ``progress``/``on_plan`` report embedding as in :func:`knowledge.services.source_sync`.

    ``split_test`` is the 0–1 share of test tickets; ``skipped`` are problems the caller chose to skip (counted as
    ``skipped_invalid`` and recorded on the ingest run); ``origin`` names the input on that run.

    Raises ValueError for ``split_test`` outside 0–1, an unknown channel or a duplicate id in ``records``;
    ImportInputError for a record :func:`record_problem` rejects; ``sdrbot.embeddings.EmbeddingError`` from the
    embedding provider.
    """
    if not 0.0 <= split_test <= 1.0:
        raise ValueError(f"split_test must be between 0 and 1, got {split_test}")
    if channel not in Ticket.Channel.values:
        raise ValueError(f"unknown channel {channel!r}")
    seen: dict[str, str] = {}
    for r in records:
        if r.external_id in seen:
            raise ValueError(f"duplicate id {r.external_id!r} at {r.where or '?'} (first at {seen[r.external_id] or '?'})")
        seen[r.external_id] = r.where
    bad = [Problem(r.where or r.external_id, err) for r in records if (err := record_problem(r))]
    if bad:
        raise ImportInputError("invalid record(s); nothing was imported:\n" + "\n".join(f"  {p}" for p in bad[:20]), bad)

    _lock_channel(channel)
    ids = list(seen)
    existing: set[str] = set()
    for start in range(0, len(ids), 5000):
        existing.update(Ticket.objects.filter(channel=channel, external_id__in=ids[start : start + 5000])
                        .values_list("external_id", flat=True))
    new = [r for r in records if r.external_id not in existing]

    categories: dict[str, Category] = {}
    created_slugs: set[str] = set()
    for r in new:
        slug = slugify(r.category.strip())
        if slug not in categories:
            categories[slug], created = Category.objects.get_or_create(slug=slug, defaults={"name": r.category.strip()})
            if created:
                created_slugs.add(slug)

    now = timezone.now()
    customers = Customer.objects.bulk_create(
        [Customer(name=f"Customer {r.external_id}"[:200], created_at=now) for r in new], batch_size=1000
    )
    tickets: list[Ticket] = []
    for r, customer in zip(new, customers):
        times = [t.sent_at for t in r.turns if t.sent_at]
        customer_times = [t.sent_at for t in r.turns[:-1] if t.sent_at and t.role == Message.Role.CUSTOMER]
        replied_at = r.turns[-1].sent_at or now
        tickets.append(Ticket(
            subject=_subject(r), channel=channel, category=categories[slugify(r.category.strip())],
            category_source="import", intent=r.intent, customer=customer, external_id=r.external_id,
            split=split_of(r.external_id, seed=seed, split_test=split_test),
            status=Ticket.Status.RESOLVED if resolved else Ticket.Status.AWAITING_AGENT,
            metadata={**r.metadata, "import": {"where": r.where, "seed": seed, "split_test": split_test}},
            created_at=min(times) if times else now, updated_at=max(times) if times else now,
            last_customer_message_at=max(customer_times) if customer_times else (min(times) if times else now),
            resolved_at=replied_at if resolved else None,
        ))
    Ticket.objects.bulk_create(tickets, batch_size=1000)
    Message.objects.bulk_create(
        [
            Message(ticket=t, role=turn.role, body=turn.body, turn_index=i, sent_at=turn.sent_at or t.created_at)
            for t, r in zip(tickets, new)
            for i, turn in enumerate(r.turns)
        ],
        batch_size=2000,
    )

    counts: dict[str, dict[str, int]] = {}
    for t in tickets:
        slug = t.category.slug  # type: ignore[union-attr]
        counts.setdefault(slug, {"train": 0, "test": 0})[t.split] += 1
    per_category = {
        slug: CategoryCount(name=categories[slug].name, train=c["train"], test=c["test"], created=slug in created_slugs)
        for slug, c in sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    }
    n_test = sum(1 for t in tickets if t.split == Ticket.Split.TEST)
    result = ImportResult(
        imported=len(tickets), skipped_existing=len(records) - len(new), skipped_invalid=len(skipped),
        train=len(tickets) - n_test, test=n_test, categories=per_category, problems=list(skipped),
    )
    if not resolved:
        return result
    docs = [
        _document(t, r, t.category.slug)  # type: ignore[union-attr]
        for t, r in zip(tickets, new)
        if t.split == Ticket.Split.TRAIN
    ]
    if not docs:
        return result
    sync = source_sync(
        source_name=source_name, documents=docs, kind="resolved_tickets", remove_missing=False, origin=origin,
        skipped=[str(p) for p in skipped], progress=progress, on_plan=on_plan,
    )
    return replace(result, documents_added=sync.added, chunks_embedded=sync.chunks_embedded,
                   chunks_reused=sync.chunks_reused, ingest_run_id=sync.run.pk)




def tickets_import_path(
    *,
    path: Path,
    fmt: str,
    resolved: bool,
    split_test: float,
    seed: int,
    limit: int | None = None,
    skip_invalid: bool = False,
    channel: str = Ticket.Channel.IMPORT,
    source_name: str = RESOLVED_SOURCE,
    progress: Progress | None = None,
    on_plan: Callable[[int], None] | None = None,
    on_skip: Callable[[Problem], None] | None = None,
) -> ImportResult:
    """Read ``path`` as ``fmt`` (:func:`read_records`) and :func:`tickets_import` the valid records. ``limit`` takes
    the first N valid records. Invalid records abort the import (nothing is written) unless ``skip_invalid``, in
    which case each is passed to ``on_skip`` and counted.

    Raises ImportInputError (unreadable input, invalid records without ``skip_invalid``, no valid record at all),
    and what :func:`tickets_import` raises."""
    records, problems = read_records(path, fmt=fmt, limit=limit)
    if problems and not skip_invalid:
        raise ImportInputError(
            problems_message(problems, path=path, valid=len(records), noun="ticket", verb="import"), problems)
    for p in problems:
        if on_skip:
            on_skip(p)
    if not records:
        raise ImportInputError(f"no valid tickets in {path}; nothing was imported", problems)
    return tickets_import(
        records=records, resolved=resolved, split_test=split_test, seed=seed, channel=channel,
        source_name=source_name, progress=progress, on_plan=on_plan, skipped=problems, origin=str(path.resolve()),
    )

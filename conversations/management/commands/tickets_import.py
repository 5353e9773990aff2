"""``manage.py tickets_import FILE --format bitext|twitter-cdp|jsonl|csv``: import historical tickets (customer
message(s) + the agent's reply) with a deterministic train/test split; ``--resolved`` also feeds the train tickets to
the resolved-tickets knowledge source. All or nothing unless ``--skip-invalid``; re-importing a file skips the
tickets already there."""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from conversations.importing import FORMATS, RESOLVED_SOURCE, ImportInputError, tickets_import_path
from knowledge.loaders import Problem
from sdrbot.embeddings import EmbeddingError


def _share(value: str) -> float:
    import argparse

    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value!r}")
    return share


def _positive(value: str) -> int:
    import argparse

    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value!r}")
    return n


class Command(BaseCommand):
    help = "Import historical tickets from a Bitext CSV, the Twitter CDP JSON, a JSONL or a CSV file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, metavar="FILE")
        parser.add_argument("--format", choices=FORMATS, required=True, dest="fmt")
        parser.add_argument("--resolved", action="store_true",
                            help="mark the tickets resolved and add the train ones to the resolved-tickets source")
        parser.add_argument("--split-test", type=_share, default=0.2,
                            help="share of tickets held out as test, 0–1 (default 0.2)")
        parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default 0)")
        parser.add_argument("--limit", type=_positive, default=None, help="import only the first N valid tickets")
        parser.add_argument("--skip-invalid", action="store_true",
                            help="import the valid tickets and report the invalid ones instead of aborting")
        parser.add_argument("--source", default=RESOLVED_SOURCE,
                            help=f"knowledge source for --resolved (default {RESOLVED_SOURCE})")

    def handle(self, *args, **opts) -> None:
        if not opts["source"].replace("-", "").replace("_", "").isalnum():
            raise CommandError(f"--source must be a slug (letters, digits, - and _), got {opts['source']!r}")
        bar = tqdm(total=0, unit="text", desc="embedding", disable=opts["verbosity"] == 0, file=self.stderr._out)

        def on_plan(total: int) -> None:
            bar.total = total
            bar.refresh()

        def on_skip(problem: Problem) -> None:
            self.stderr.write(f"skipped {problem}")

        started = time.monotonic()
        try:
            r = tickets_import_path(
                path=opts["path"], fmt=opts["fmt"], resolved=opts["resolved"], split_test=opts["split_test"],
                seed=opts["seed"], limit=opts["limit"], skip_invalid=opts["skip_invalid"],
                source_name=opts["source"], progress=bar.update, on_plan=on_plan, on_skip=on_skip,
            )
        except ImportInputError as exc:
            raise CommandError(str(exc)) from exc
        except (ValueError, EmbeddingError) as exc:
            raise CommandError(f"{exc}; nothing was imported") from exc
        finally:
            bar.close()
        cats = ", ".join(f"{slug} {c.total} ({c.train}/{c.test})" for slug, c in r.categories.items()) or "none"
        docs = (f"; {opts['source']}: {r.documents_added} documents added, {r.chunks_embedded} texts embedded, "
                f"{r.chunks_reused} reused" if opts["resolved"] else "")
        self.stdout.write(self.style.SUCCESS(
            f"imported {r.imported} tickets (train {r.train}, test {r.test}); skipped {r.skipped_existing} existing, "
            f"{r.skipped_invalid} invalid; {len(r.categories)} categories ({r.categories_created} new), "
            f"tickets (train/test): {cats}{docs}; {time.monotonic() - started:.1f} s"
        ))

"""``manage.py draft_replay``: held-out historical tickets through the pipeline, nothing stored or sent."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from drafts.replay import cases_from_db, cases_from_file, replay

COLUMNS = ["n", "edit_similarity", "baseline_similarity", "literal_baseline_similarity", "token_f1", "baseline_f1",
           "grounding", "abstain_rate", "p50_ms", "p95_ms"]


class Command(BaseCommand):
    help = "Replay held-out tickets through the drafting pipeline and compare drafts with the replies humans sent."

    def add_arguments(self, parser: CommandParser) -> None:
        src = parser.add_mutually_exclusive_group(required=True)
        src.add_argument("--file", type=Path, help="a file of historical tickets")
        src.add_argument("--split", choices=["test", "train"], help="tickets already imported, by split")
        parser.add_argument("--format", choices=["bitext", "twitter-cdp", "jsonl", "csv"], help="with --file")
        parser.add_argument("--split-test", type=float, default=None,
                            help="with --file: keep only the held-out part of the import split (e.g. 0.2)")
        parser.add_argument("--seed", type=int, default=7, help="with --split-test: the import's seed")
        parser.add_argument("--category", default=None, help="only this category (slug)")
        parser.add_argument("--limit", type=int, default=None)
        parser.add_argument("--classify", action="store_true",
                            help="do not pass the true category: the classifier must find it (its accuracy is reported)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--record", action="store_true",
                            help="store each category's figures as its offline replay (the offline → internal gate)")

    def handle(self, *args, **opts) -> None:
        if opts["file"]:
            if not opts["format"]:
                raise CommandError("--format is required with --file")
            from conversations.importing import ImportInputError

            try:
                cases = cases_from_file(opts["file"], fmt=opts["format"], category=opts["category"], limit=opts["limit"],
                                        split_test=opts["split_test"], seed=opts["seed"])
            except ImportInputError as exc:
                raise CommandError(str(exc)) from exc
        else:
            cases = cases_from_db(split=opts["split"], category=opts["category"], limit=opts["limit"])
        if not cases:
            raise CommandError("no tickets to replay (check --split / --category / --split-test)")
        with tqdm(total=len(cases), unit="ticket", disable=opts["json"] or opts["verbosity"] == 0,
                  file=self.stderr._out) as bar:
            report = replay(cases, given_category=not opts["classify"], progress=bar.update)
        if opts["record"]:
            from conversations.models import Category
            from drafts.models import ReplayRun

            cats = {c.slug: c for c in Category.objects.filter(slug__in=report["categories"])}
            ReplayRun.objects.bulk_create([
                ReplayRun(category=cats[slug], n=row["n"], edit_similarity=row["edit_similarity"],
                          baseline_similarity=row.get("baseline_similarity"), grounding=row["grounding"],
                          abstain_rate=row["abstain_rate"], metrics=row)
                for slug, row in report["categories"].items() if slug in cats])
        if opts["json"]:
            self.stdout.write(json.dumps(report))
            return
        self.stdout.write(f"{'category':24s} " + " ".join(f"{c[:12]:>12s}" for c in COLUMNS) + "  beats baseline")
        rows = [*report["categories"].items(), ("OVERALL", report["overall"])]
        for name, row in rows:
            cells = []
            for c in COLUMNS:
                v = row.get(c)
                cells.append(f"{'–':>12s}" if v is None else f"{v:12d}" if isinstance(v, int) else f"{v:12.4f}")
            beats = row.get("beats_baseline")
            self.stdout.write(f"{name[:24]:24s} " + " ".join(cells) + ("  yes" if beats else "  NO" if beats is False else ""))
        if "category_accuracy" in report["overall"]:
            self.stdout.write(f"classifier accuracy: {report['overall']['category_accuracy']:.4f}")
        self.stdout.write(f"strategies: {report['overall']['strategies']}")

"""``manage.py sdr_intent_train --data ../shared/data``: train the sales / support / out-of-scope intent model
(crm.intent) and print its held-out figures."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Train the SDR intent classifier on HINT3 + CLINC150 (+ the team's seed examples)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", type=Path, default=Path("../shared/data"))
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--limit-per-label", type=int, default=0, help="a small subset: the seed examples + N per label")

    def handle(self, *args, **opts) -> None:
        from crm import intent

        data: Path = opts["data"]
        if not (data / "hint3").is_dir() or not (data / "clinc150").is_dir():
            raise CommandError(f"{data}: hint3/ and clinc150/ not found; pass --data with the shared data folder")
        texts, labels = intent.dataset(data, seed=opts["seed"])
        if opts["limit_per_label"]:
            texts, labels = intent.training_subset(texts, labels, opts["limit_per_label"])
        model = intent.intent_train(texts=texts, labels=labels, seed=opts["seed"])
        self.stdout.write(json.dumps({k: v for k, v in model.metrics.items() if k != "label_counts"}))

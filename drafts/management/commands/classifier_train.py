"""``manage.py classifier_train``: train the category (and intent) classifier on labelled historical tickets."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.models import Message, Ticket
from drafts.classifier import classifier_train


class Command(BaseCommand):
    help = "Train the ticket classifier on imported train-split tickets (first customer message → label)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--target", choices=["category", "intent", "both"], default="both")
        parser.add_argument("--min-per-label", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **opts) -> None:
        first: dict[int, str] = {}
        for tid, body in (Message.objects.filter(role=Message.Role.CUSTOMER, ticket__split=Ticket.Split.TRAIN)
                          .order_by("ticket_id", "turn_index").values_list("ticket_id", "body")):
            first.setdefault(tid, body)
        labels = dict(Ticket.objects.filter(pk__in=first).values_list("pk", "category__slug"))
        intents = dict(Ticket.objects.filter(pk__in=first).values_list("pk", "intent"))
        targets = ["category", "intent"] if opts["target"] == "both" else [opts["target"]]
        for target in targets:
            source = labels if target == "category" else intents
            ids = [tid for tid in first if source.get(tid)]
            if not ids:
                if opts["target"] == "both":
                    continue
                raise CommandError(f"no train-split tickets with a {target}; import some with tickets_import first")
            try:
                model = classifier_train(texts=[first[i] for i in ids], labels=[source[i] for i in ids], target=target,
                                         min_per_label=opts["min_per_label"], seed=opts["seed"])
            except ValueError as exc:
                raise CommandError(f"{target}: {exc}") from exc
            m = model.metrics
            self.stdout.write(self.style.SUCCESS(
                f"{target}: {m['labels']} labels, trained on {model.trained_on} tickets; held-out accuracy "
                f"{m['heldout_accuracy']:.3f}, ECE {m['heldout_ece']:.3f} (n={m['heldout_n']}), temperature "
                f"{model.temperature:.2f}"))

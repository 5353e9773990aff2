"""``manage.py demo_setup --data ../shared/data``: the demo's data and login. Idempotent: a second run finds what is
already there (documents by checksum, tickets by external id, classifiers by their training size) and adds nothing."""

from __future__ import annotations

import os
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.models import Message, Ticket

DEMO_USER = "admin"
SPLIT_SEED = 7
LIVE_TICKETS = 24  # held-out questions replayed as new inbound messages, drafted by the worker when the demo starts
SHOWCASE_CATEGORY = "account"  # put customer-facing (by an audited override) so the demo shows the bot answering


class Command(BaseCommand):
    help = "Load the demo data from the shared data folder and make sure the demo admin exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", type=Path, default=Path("../shared/data"))
        parser.add_argument("--no-live", action="store_true", help="do not queue the live demo tickets")

    def handle(self, *args, **opts) -> None:
        data: Path = opts["data"]
        files = {
            "passages": data / "mtrag-ibmcloud" / "passages.jsonl",
            "bitext": data / "bitext-customer-support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv",
            "twitter": data / "twitter-customer-care-cdp" / "dev.json",
        }
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise CommandError(f"not found: {', '.join(missing)}; pass --data with the shared data folder")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "sdrbot-demo")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True})
        if created or not user.check_password(password):
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
        out = {"stdout": self.stdout, "stderr": self.stderr}

        self.stdout.write("knowledge base: IBM Cloud docs (MTRAG-UN passages)")
        call_command("kb_ingest", str(files["passages"]), source="ibm-cloud-docs", format="jsonl", id_field="_id",
                     title_field="page_id", text_field="text", url_field="", kind="docs", refresh_days=30, **out)
        self.stdout.write("historical tickets: Bitext (synthetic) and Twitter customer care dev set (real, masked)")
        for name, fmt in (("bitext", "bitext"), ("twitter", "twitter-cdp")):
            call_command("tickets_import", str(files[name]), fmt=fmt, resolved=True, split_test=0.2, seed=SPLIT_SEED, **out)
        from drafts.models import ClassifierModel

        train = Ticket.objects.filter(split=Ticket.Split.TRAIN).count()
        current = ClassifierModel.objects.filter(target="category", is_active=True).first()
        if current is None or abs(current.trained_on - train) > train * 0.02:
            self.stdout.write("training the category and intent classifiers (about a minute)")
            call_command("classifier_train", **out)
        self._rollout(user)
        self._sales(data, out)
        if not opts["no_live"]:
            self._live_tickets()
            self._sales_inquiries()
        self._widget_site_key()
        self.stdout.write(self.style.SUCCESS(
            f"demo ready. Log in at /admin/ as user '{DEMO_USER}' with password '{password}' "
            "(set DEMO_ADMIN_PASSWORD to choose another)."
        ))

    def _rollout(self, admin) -> None:
        """Categories in all three phases, each change audited: the offline replay of the held-out tickets opens
        the offline → internal gate where the figures allow; one category is put customer-facing by an explicit,
        written override (no agent-sent drafts exist yet to open its gate) so the demo shows the bot answering."""
        from io import StringIO

        from conversations.models import Category
        from drafts import rollout
        from drafts.models import PhaseChange, ReplayRun

        if PhaseChange.objects.exists():
            return
        if not ReplayRun.objects.exists():
            self.stdout.write("offline replay of the held-out tickets, per category (about a minute)")
            call_command("draft_replay", split="test", record=True, json=True, stdout=StringIO(), stderr=StringIO())
        promoted = []
        for category in Category.objects.filter(phase=Category.Phase.OFFLINE):
            if rollout.gate_offline_to_internal(category).open:
                rollout.category_phase_set(category_id=category.pk, actor=admin, to_phase=Category.Phase.INTERNAL,
                                           reason="offline replay passed its gate")
                promoted.append(category.slug)
        showcase = Category.objects.filter(slug=SHOWCASE_CATEGORY, phase=Category.Phase.INTERNAL).first()
        if showcase is not None:
            rollout.category_phase_set(
                category_id=showcase.pk, actor=admin, to_phase=Category.Phase.CUSTOMER_FACING, override=True,
                reason="Demo: lets the account category answer by itself before agents have sent enough drafts")
            Category.objects.filter(pk=showcase.pk).update(auto_send=True, auto_send_min_confidence=0.8)
        rollout.rollout_weeks_refresh(weeks=12)
        self.stdout.write(f"rollout: {len(promoted)} categories internal ({', '.join(promoted)}); "
                          f"{SHOWCASE_CATEGORY} customer-facing with auto-send; the rest offline")

    def _sales(self, data: Path, out: dict) -> None:
        """The SDR intent model (a few seconds; embeddings cached under .data/) and a demo booking link."""
        from crm.intent import TARGET
        from crm.models import CrmSettings
        from drafts.models import ClassifierModel

        if not ClassifierModel.objects.filter(target=TARGET, is_active=True).exists():
            self.stdout.write("training the sales intent classifier (HINT3 + CLINC150, a few seconds)")
            call_command("sdr_intent_train", data=data, **out)
        CrmSettings.objects.get_or_create(pk=1, defaults={"booking_link": "https://cal.example.com/sdrbot-demo"})

    def _sales_inquiries(self) -> None:
        """Two prospects on the widget, qualified by the worker when the demo starts (see /console/leads/)."""
        from conversations.services import message_receive

        if Ticket.objects.filter(metadata__sales_demo=True).exists():
            return
        for n, body in enumerate(["Hi! Can I get a demo of your product for our support team? We're about 60 people.",
                                  "How much does it cost per seat for a team of 15?"], start=1):
            msg = message_receive(body=body, channel=Ticket.Channel.WIDGET, customer_name=f"Demo prospect {n}",
                                  customer_external_id=f"demo-prospect-{n}")
            Ticket.objects.filter(pk=msg.ticket_id).update(metadata={"sales_demo": True})
        self.stdout.write("queued 2 sales inquiries (leads at /console/leads/)")

    def _widget_site_key(self) -> None:
        """The site key of the /demo/ page (a made-up company's site with the widget), allowed on the demo's own
        origins; the classifier picks each conversation's category (``account`` is the customer-facing one)."""
        from conversations.models import SiteKey
        from conversations.services import site_key_create, widget_origins_forget
        from conversations.views import DEMO_SITE_KEY_NAME

        port = os.environ.get("PORT", "8000")
        origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
        host = os.environ.get("HOST", "127.0.0.1")
        if host not in ("127.0.0.1", "localhost", "0.0.0.0"):
            origins.append(f"http://{host}:{port}")
        site = SiteKey.objects.filter(name=DEMO_SITE_KEY_NAME).order_by("-pk").first()
        if site is None:
            site = site_key_create(name=DEMO_SITE_KEY_NAME, allowed_origins=origins)
        elif set(origins) - set(site.allowed_origins):
            site.allowed_origins = sorted(set(site.allowed_origins) | set(origins))
            site.save(update_fields=["allowed_origins"])
            widget_origins_forget()
        self.stdout.write(f"widget: the demo site key {site.key} allows {', '.join(site.allowed_origins)}; "
                          f"the customer's side is at http://127.0.0.1:{port}/demo/")

    def _live_tickets(self) -> None:
        """New inbound messages (from held-out tickets, so nothing leaks from the resolved-ticket corpus) that the
        worker drafts as soon as the demo starts."""
        from conversations.services import message_receive

        if Ticket.objects.filter(channel=Ticket.Channel.API, metadata__demo=True).exists():
            return
        first_messages = (Message.objects.filter(ticket__split=Ticket.Split.TEST, role=Message.Role.CUSTOMER,
                                                 turn_index=0).select_related("ticket__category").order_by("ticket_id"))
        by_category: dict[int | None, Message] = {}
        for m in first_messages:
            by_category.setdefault(m.ticket.category_id, m)
            if len(by_category) >= LIVE_TICKETS:
                break
        for n, m in enumerate(by_category.values()):
            # half arrive categorised (as from a help-centre form), half rely on the classifier
            msg = message_receive(body=m.body, channel=Ticket.Channel.API, customer_name=f"Demo customer {n + 1}",
                                  customer_external_id=f"demo-{n + 1}", category=m.ticket.category if n % 2 else None)
            Ticket.objects.filter(pk=msg.ticket_id).update(metadata={"demo": True})
        self.stdout.write(f"queued {len(by_category)} live demo tickets for drafting")

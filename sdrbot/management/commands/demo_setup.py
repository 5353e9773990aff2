"""``manage.py demo_setup --data ../shared/data``: the demo's data and login, idempotent (a second run changes
nothing that is already there)."""

from __future__ import annotations

import os
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEMO_USER = "admin"


class Command(BaseCommand):
    help = "Load the demo data from the shared data folder and make sure the demo admin exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", type=Path, default=Path("../shared/data"))

    def handle(self, *args, **opts) -> None:
        data: Path = opts["data"]
        passages = data / "mtrag-ibmcloud" / "passages.jsonl"
        if not passages.is_file():
            raise CommandError(f"{passages}: not found; pass --data with the shared data folder")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "sdrbot-demo")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True})
        if created or not user.check_password(password):
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
        self.stdout.write("knowledge base: IBM Cloud docs (MTRAG-UN passages)")
        call_command(
            "kb_ingest", str(passages), source="ibm-cloud-docs", format="jsonl", id_field="_id",
            title_field="page_id", text_field="text", url_field="", kind="docs", refresh_days=30,
            stdout=self.stdout, stderr=self.stderr,
        )
        self.stdout.write(self.style.SUCCESS(
            f"demo ready. Log in at /admin/ as user '{DEMO_USER}' with password '{password}' "
            "(set DEMO_ADMIN_PASSWORD to choose another)."
        ))

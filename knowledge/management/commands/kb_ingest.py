"""``manage.py kb_ingest PATH --source NAME``: sync a knowledge source from a JSONL file or a folder of
Markdown/HTML files. All or nothing unless ``--skip-invalid``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from knowledge.models import KnowledgeSource
from knowledge.services import IngestInputError, source_ingest_path
from sdrbot.embeddings import EmbeddingError


class Command(BaseCommand):
    help = "Sync a knowledge source from a JSONL file or a folder of Markdown/HTML documents."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--source", required=True, help="knowledge source name (a slug)")
        parser.add_argument("--format", choices=["jsonl", "markdown", "html"], default=None,
                            help="default: from the path (.jsonl file, or a folder by file suffix)")
        parser.add_argument("--id-field", default="id")
        parser.add_argument("--title-field", default="title")
        parser.add_argument("--text-field", default="text")
        parser.add_argument("--url-field", default="url")
        parser.add_argument("--kind", choices=KnowledgeSource.Kind.values, default=None)
        parser.add_argument("--refresh-days", type=float, default=None,
                            help="refresh interval of the source in days (staleness threshold)")
        parser.add_argument("--skip-invalid", action="store_true",
                            help="ingest the valid documents and report the invalid ones instead of aborting")
        parser.add_argument("--keep-missing", action="store_true",
                            help="do not mark documents absent from PATH as removed")

    def handle(self, *args, **opts) -> None:
        if not opts["source"].replace("-", "").replace("_", "").isalnum():
            raise CommandError(f"--source must be a slug (letters, digits, - and _), got {opts['source']!r}")
        bar = tqdm(total=0, unit="chunk", desc="embedding", disable=opts["verbosity"] == 0, file=self.stderr._out)

        def on_plan(total: int) -> None:
            bar.total = total
            bar.refresh()

        try:
            result = source_ingest_path(
                source_name=opts["source"], path=str(opts["path"]), fmt=opts["format"], id_field=opts["id_field"],
                title_field=opts["title_field"] or None, text_field=opts["text_field"],
                url_field=opts["url_field"] or None, kind=opts["kind"],
                refresh_interval=timedelta(days=opts["refresh_days"]) if opts["refresh_days"] else None,
                skip_invalid=opts["skip_invalid"], remove_missing=not opts["keep_missing"],
                progress=bar.update, on_plan=on_plan, on_skip=lambda msg: self.stderr.write(f"skipped {msg}"),
            )
        except IngestInputError as exc:
            raise CommandError(str(exc)) from exc
        except (ValueError, EmbeddingError) as exc:
            raise CommandError(f"{exc}; nothing was ingested") from exc
        finally:
            bar.close()
        r = result
        self.stdout.write(self.style.SUCCESS(
            f"source {opts['source']}: {r.added} added, {r.updated} updated, {r.unchanged} unchanged, "
            f"{r.removed} removed, {r.run.skipped} skipped; {r.chunks_embedded} chunks embedded, "
            f"{r.chunks_reused} reused (run {r.run.pk})"
        ))

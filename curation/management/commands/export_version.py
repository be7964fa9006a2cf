"""``manage.py export_version VERSION --format parquet|published|jsonl|webdataset [--out DIR]``: export a dataset
version from a shell, with a progress bar (see curation.services.exporting)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from curation.management.progress import ProgressStream
from curation.models import DatasetVersion
from curation.services import exporting


class Command(BaseCommand):
    help = (
        "Export a frozen dataset version (VERSION is its id or name) as Science-T2I parquet, JSONL + images or "
        "WebDataset tar shards. Written to a temporary directory beside the target and renamed into place when "
        "complete, with a MANIFEST.sha256. Without --out the export goes where the API serves it from "
        "(MEDIA_ROOT/exports/<id>/<format>) and a finished one is reused; --out DIR must not exist, be empty, or "
        "hold a finished export of the same version and format (then it is reused)."
    )

    def add_arguments(self, parser):
        parser.add_argument("version", help="The version id or name.")
        parser.add_argument("--format", dest="fmt", choices=exporting.FORMATS, default="parquet")
        parser.add_argument("--out", default=None, help="The export directory (created; default: the media folder).")
        parser.add_argument(
            "--shard-mb",
            type=float,
            default=exporting.DEFAULT_SHARD_BYTES / 1e6,
            help="Largest shard in MB (parquet and WebDataset; default 500).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=exporting.DEFAULT_BATCH_SIZE,
            help="Members read (with their images) per batch (default 64).",
        )
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print the result as JSON.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, version, fmt, out, shard_mb, batch_size, as_json, no_progress, **opts):
        chosen = _find_version(version)
        if shard_mb <= 0 or batch_size < 1:
            raise CommandError("--shard-mb and --batch-size must be positive.")
        from tqdm import tqdm

        bar = tqdm(
            total=1000,
            desc=f"{chosen.name} → {fmt}",
            unit="‰",
            disable=no_progress,
            file=ProgressStream(self.stderr),
        )

        def progress(fraction: float, message: str = "") -> None:
            bar.update(max(0, round(fraction * 1000) - bar.n))
            bar.set_postfix_str(message, refresh=False)

        try:
            result = exporting.export_version(
                chosen, fmt, shard_bytes=int(shard_mb * 1e6), progress=progress, out=out, batch_size=batch_size
            )
        except exporting.ExportError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        if as_json:
            self.stdout.write(_dumps(result))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Exported version {chosen.name} (id {chosen.pk}) as {fmt}: {result['counts']['rows']} rows, "
                    f"{len(result['files'])} files, {result['bytes']} bytes in {result['path']}"
                )
            )


def _dumps(result: dict) -> str:
    return json.dumps(result, indent=2, sort_keys=True)


def _find_version(value: str) -> DatasetVersion:
    found = DatasetVersion.objects.filter(name=value).first()
    if found is None and value.isdigit():
        found = DatasetVersion.objects.filter(pk=int(value)).first()
    if found is None:
        raise CommandError(f"No dataset version with the id or name {value!r}.")
    return found

"""Pass 1 of the import: every row read and checked, its images decoded, before anything is written.

**Nothing half-imported.** Pass 1 reads every row, checks its fields and task, and decodes every image
with :func:`annotation.imaging.check_image` (the upload checks), and checks that no pair contradicts
another: the same two images with the roles swapped, in the file or in the catalogue — except a stored pair
whose consensus label is ``other`` met by a row that calls its explicit image correct: the experts reversed
the stored pair, the row states their answer, and it counts as that pair, skipped, its decision recorded
on it as ``other`` (how an export written before the ``label`` column re-imports) — or the same pair given
two different labels in the input. Any error: nothing
is written, and the report lists the errors with their file and row (parquet rows count from 1 in each
file; JSONL rows are line numbers; problems of the whole file are row 0). Images are decoded on a thread
pool (one per core, up to 8), ``batch_size`` rows at a time with the next chunk read meanwhile, and the
stored pairs a chunk could contradict are found in one query; each row is still judged in order.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator

from PIL import Image as PILImage

from annotation.imaging import ImageRejected, check_image
from annotation.models import Pair
from curation.services.importing.base import DatasetImportReport, Progress, RowError
from curation.services.importing.reading import Source, image_bytes
from curation.services.importing.records import Options, Row


def validate_rows(
    src: Source,
    opts: Options,
    report: DatasetImportReport,
    seen_pairs: dict,
    batch_size: int,
    total: int,
    progress: Progress,
    seen_images: dict | None = None,
    normalised: dict | None = None,
    tracker=None,
) -> None:
    """Pass 1: every row read, checked and its images decoded; errors go to the report.

    Rows are taken ``batch_size`` at a time: their images are decoded on a thread pool (Pillow releases the
    GIL while decoding, so this uses every core) and the stored pairs they could contradict are looked up in
    one query; then each row is judged in order, exactly as one row at a time would be."""
    with _ImageChecker() as checker:
        for chunk, checked in checker.checked(row_chunks(src.rows(opts), batch_size)):
            stored = _StoredReversals(chunk, checked)
            for row in chunk:
                report.rows += 1
                if row.error is None:
                    try:
                        report.payload_bytes += _validate_row(row, seen_pairs, checked, stored, seen_images, normalised)
                    except RowError as exc:
                        row.error = str(exc)
                if row.error is None:
                    if tracker is not None:
                        tracker.add(
                            row.file,
                            row.number,
                            row.choice,
                            row.items[0].key[0],
                            row.items[0].fields["implicit_prompt"],
                        )
                    if row.choice is not None and row.choice.pending and not (tracker and tracker.merge):
                        row.error = row.choice.pending  # no task, and no merge can give it one (.tasks)
                if row.error is not None:
                    report.add_error(row.file, row.number, row.error)
                else:
                    report.records += sum(1 for item in row.items if item.explicit is not None)
                if report.rows % batch_size == 0:
                    progress(0.5 * report.rows / total, f"validated {report.rows} of {total} rows")


def row_chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def pool_size() -> int:
    """Threads for image work: the cores this process may use, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores))


class _ImageChecker:
    """Reads and checks the images of chunks of rows on a thread pool (``check_image`` without the full
    decode: header, limits, PNG checksums, JPEG structure to its end marker; see annotation.imaging).

    The rows' own order of checks is kept by :func:`_validate_row`, which re-raises an image's exception
    where it would have happened."""

    def __enter__(self):
        from concurrent.futures import ThreadPoolExecutor

        workers = pool_size()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="import-check") if workers > 1 else None
        if self.pool is not None:
            # check_image turns DecompressionBombWarning into an error inside warnings.catch_warnings(), which
            # saves and restores the process-wide filter list; threads interleaving those saves could drop the
            # filter for one another or leave it behind. With the filter already in the list for the pool's
            # lifetime, every list they save or restore holds it, and this context restores the original.
            self._warnings = warnings.catch_warnings()
            self._warnings.__enter__()
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self._warnings.__exit__(*exc)

    def checked(self, chunks: Iterator[list[Row]]) -> Iterator[tuple[list[Row], dict]]:
        """Each chunk with ``{id(ref): (data, CheckedImage) or the exception}``; the next chunk is read, and
        its images queued, while this one's decode (at most two chunks in memory)."""
        pending = None
        for chunk in chunks:
            started = (chunk, self._start(chunk))
            if pending is not None:
                yield self._finish(*pending)
            pending = started
        if pending is not None:
            yield self._finish(*pending)

    def _start(self, chunk: list[Row]) -> list:
        # a row's image in several pairs (lists of different lengths) is checked once
        refs = list(
            {
                id(ref): ref
                for row in chunk
                if row.error is None
                for item in row.items
                if item.explicit is not None
                for ref in (item.explicit, item.superficial)
            }.values()
        )
        if self.pool is None:
            return [(ref, _check_ref(ref)) for ref in refs]
        return [(ref, self.pool.submit(_check_ref, ref)) for ref in refs]

    def _finish(self, chunk: list[Row], started: list) -> tuple[list[Row], dict]:
        return chunk, {id(ref): result if self.pool is None else result.result() for ref, result in started}


def _check_ref(ref):
    try:
        data = image_bytes(ref)
        return data, check_image(data, full_decode=False)
    except (RowError, ImageRejected) as exc:
        return exc


class _StoredReversals:
    """The stored pairs that hold a chunk's images with the roles swapped, found in one query:
    ``get(key, correct, wrong)`` lists ``(pk, consensus label)`` by pk, as the per-row query did."""

    def __init__(self, chunk: list[Row], checked: dict):
        self.found: dict[tuple, list] = {}
        corrects, wrongs = set(), set()
        for row in chunk:
            for item in row.items if row.error is None else ():
                if item.explicit is None:
                    continue
                results = (checked[id(item.explicit)], checked[id(item.superficial)])
                if all(not isinstance(r, Exception) for r in results):
                    corrects.add(results[0][1].sha256)
                    wrongs.add(results[1][1].sha256)
        if not corrects:
            return
        # a stored pair contradicts a row when its correct image is the row's wrong one and vice versa
        stored = Pair.objects.filter(image_correct__sha256__in=sorted(wrongs), image_wrong__sha256__in=sorted(corrects))
        for pk, prompt, task, correct, wrong, label in stored.order_by("pk").values_list(
            "pk",
            "tuple__implicit_normalised",
            "tuple__task_id",
            "image_correct__sha256",
            "image_wrong__sha256",
            "consensus__label",
        ):
            self.found.setdefault((prompt, wrong, correct), []).append((pk, task, label))

    def get(self, key: tuple, correct: str, wrong: str) -> list[tuple[int, str | None]]:
        """Stored pairs of ``key`` (normalised prompt, task id) with ``wrong`` as their correct image."""
        rows = self.found.get((key[0], correct, wrong), ())
        return [(pk, label) for pk, task, label in rows if not key[1] or task == key[1]]


def _validate_row(
    row: Row,
    seen_pairs: dict,
    checked: dict,
    stored: _StoredReversals,
    seen_images: dict | None = None,
    normalised: dict | None = None,
) -> int:
    """Decode the row's images; refuse a pair of identical images or one that contradicts another pair.
    ``seen_images`` collects each checked image's ``(width, height, format)`` by sha256, and ``normalised``
    the sha256 of the bytes read → that of the bytes to store, for images check_image trimmed or normalised
    (annotation.imaging), for pass 2."""
    payload, counted = 0, set()
    for item in row.items:
        if item.explicit is None:
            continue
        hashes = []
        for name, ref in zip(item.columns, (item.explicit, item.superficial), strict=True):
            try:
                result = checked[id(ref)]
                if isinstance(result, Exception):
                    raise result
                data, image = result
                hashes.append(image.sha256)
                if seen_images is not None:
                    seen_images[image.sha256] = (image.width, image.height, image.format)
                if image.changes and normalised is not None:  # pass 2 stores the normalised bytes
                    normalised[hashlib.sha256(data).hexdigest()] = image.sha256
            except (ImageRejected, RowError) as exc:
                raise RowError(f"{name}: {exc}") from None
            if id(ref) not in counted:
                counted.add(id(ref))
                payload += len(data)
        correct, wrong = hashes
        if correct == wrong:
            raise RowError("the explicit and the superficial image are the same image")
        reverse = (item.key, wrong, correct)
        if reverse in seen_pairs:
            file, number, _ = seen_pairs[reverse]
            raise RowError(f"contradicts {file} row {number}: the same two images with the roles swapped")
        file, number, claim = seen_pairs.setdefault((item.key, correct, wrong), (row.file, row.number, item.claim))
        if claim != item.claim:
            raise RowError(
                f"contradicts {file} row {number}: the same pair is labelled {claim} there, {item.claim} here"
            )
        for pk, label in stored.get(item.key, correct, wrong):
            # a stored pair the experts reversed ("other"), met by a row that calls its explicit image correct:
            # the row states their answer, and is that pair
            if label != "other" or item.claim != "expected":
                raise RowError(f"contradicts stored pair {pk}: the same two images with the roles swapped")
    return payload

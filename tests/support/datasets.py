"""Science-T2I-style dataset files for the import tests: parquet rows of the train layout (list columns,
image structs), distinct JPEG bytes, and a snapshot of the catalogue's row counts."""

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image as PILImage

from annotation.models import Image, Pair, PromptTuple
from tests.support.factories import png_bytes

_jpeg_colour = iter(range(1, 10_000))


def jpeg_bytes() -> bytes:
    n = next(_jpeg_colour)
    img = PILImage.new("RGB", (24, 16), ((n * 53) % 256, (n * 19) % 256, (n * 101) % 256))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


IMAGE = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))

TRAIN_SCHEMA = pa.schema(
    [
        ("implicit_prompt", pa.list_(pa.string())),
        ("explicit_prompt", pa.list_(pa.string())),
        ("superficial_prompt", pa.list_(pa.string())),
        ("explicit_image", IMAGE),
        ("superficial_image", IMAGE),
        ("category", pa.string()),
        ("law", pa.string()),
    ]
)


def train_row(prompt, category="Rust", n_images=1, law="chemistry", explicit=None, superficial=None):
    explicit = explicit or [png_bytes() for _ in range(n_images)]
    superficial = superficial or [jpeg_bytes() for _ in range(n_images)]
    return {
        "implicit_prompt": [prompt, prompt + " (paraphrase)"],
        "explicit_prompt": [f"{prompt}: explicit", "another explicit"],
        "superficial_prompt": [f"{prompt}: superficial"],
        "explicit_image": [{"bytes": b, "path": None} for b in explicit],
        "superficial_image": [{"bytes": b, "path": None} for b in superficial],
        "category": category,
        "law": law,
    }


def write_train(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TRAIN_SCHEMA), path)
    return path


def stored_bytes(image: Image) -> bytes:
    with image.file.open("rb") as fh:
        return fh.read()


def snapshot():
    return (
        sorted(PromptTuple.objects.values_list("id", "implicit_prompt", "task_id", "scene")),
        sorted(Image.objects.values_list("id", "sha256")),
        sorted(Pair.objects.values_list("id", "tuple_id", "image_correct_id", "image_wrong_id")),
    )

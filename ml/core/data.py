"""Moved: the Science-T2I file format lives in :mod:`science_t2i.format`, its one definition.

Nothing ML-specific was left here. This module only re-exports the format's public names while the tests are
being moved to import :mod:`science_t2i.format` directly; it is removed after that.
"""

from science_t2i.format import (  # noqa: F401
    PUBLISHED_COLUMNS,
    DataError,
    ImageRef,
    TupleRecord,
    load_image,
    parquet_split,
    read_grouping,
    read_jsonl,
    read_parquet_dir,
    schema_with_features,
    science_t2i_fields,
    task_code,
    write_parquet,
)

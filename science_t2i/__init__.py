"""The Science-T2I dataset format, free of Django and of the ML code.

:mod:`science_t2i.format` is the one definition of the format: the published columns and their feature
types, the row shapes (:class:`~science_t2i.format.TupleRecord`), the readers and writers of parquet and
JSONL, and how the grouping columns and task names are read. The platform's importer and exporter
(``curation.services.importing``, ``curation.services.exporting``) and the ML code (``ml.core``, ``ml.cli``)
all read and write the format through it, so they cannot drift apart. It imports neither Django nor any of
the project's apps.
"""

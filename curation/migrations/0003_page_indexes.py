"""Indexes for the curation pages at 100,000 pairs (issue "Performance", bench/pages.py).

Plain SQL that PostgreSQL and SQLite both accept, so the model state is untouched (three of the
indexes are on annotation tables, which a curation migration cannot describe in the model state):

* ``consensus_review_queue`` — the adjudication list in its order (updated_at, pair) over the
  disputed and reversed rows only: the first page and the count read the queue, not every pair;
* ``lease_state_ended`` — the dashboard's "reclaimed in the last 24 h" (state = expired, ended_at);
* ``judgement_created`` — the dashboard's throughput window (judgements since a day);
* ``audit_action_id`` — the audit log filtered by action, newest first.
"""

from django.db import migrations

INDEXES = [
    ("consensus_review_queue", "curation_consensus", "(updated_at, pair_id) WHERE outcome IN ('disputed', 'reversed')"),
    ("lease_state_ended", "annotation_lease", "(state, ended_at)"),
    ("judgement_created", "annotation_judgement", "(created_at)"),
    ("audit_action_id", "annotation_auditevent", "(action, id)"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("curation", "0002_datasetversion_job_versionmember"),
        ("annotation", "0005_task_queue_order_pair_priority"),
    ]

    operations = [
        migrations.RunSQL(
            sql=f"CREATE INDEX IF NOT EXISTS {name} ON {table} {columns}",
            reverse_sql=f"DROP INDEX IF EXISTS {name}",
        )
        for name, table, columns in INDEXES
    ]

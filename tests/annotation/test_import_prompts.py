"""manage.py import_prompts: shapes, task assignment, idempotency, all-or-nothing validation, the listings of
rows without a task and of prompts met with and without one, and merge_same_prompt."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.models import PromptTuple
from annotation.taxonomy import TASKS

# A prompt list in the reference repository's shape ({"prompt", "object"}), one prompt per task, each worded so
# the keyword rules of annotation/task_rules.py recognise its task.
PROMPTS = [
    ("A desk fan during a power outage.", "fan"),
    ("A glass of water aboard the International Space Station.", "glass"),
    ("An unripe mango on a kitchen table.", "mango"),
    ("A potted plant kept in a dark room for weeks.", "plant"),
    ("A potted fern that is rarely watered.", "fern"),
    ("A strip of magnesium burning in the air.", "magnesium"),
    ("A puddle of water on a freezing night.", "puddle"),
    ("A bar of chocolate left in a hot car.", "chocolate"),
    ("A pot of water boiling on a stove.", "pot"),
    ("An iron nail left outside in the rain for weeks.", "nail"),
    ("A glass of water and oil.", "glass"),
    ("A drop of ink on a paper towel.", "paper towel"),
    ("A drop of food colouring added to a glass of water.", "glass"),
    ("A cork thrown into a tank of water.", "cork"),
    ("A maple tree in autumn.", "tree"),
    ("A cold glass of lemonade with condensation.", "glass"),
]
RECORDS = len(PROMPTS)
NOTHING_LISTED = {
    "unassigned": {"count": 0, "rows": []},
    "same_prompt": {"count": 0, "rows": 0, "merged": 0, "prompts": []},
}

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"prompt": prompt, "object": subject} for prompt, subject in PROMPTS]))
    return path


def run(*args, expect_error=False) -> dict:
    """Run the command with --json and return its summary (also when it fails)."""
    out = StringIO()
    if expect_error:
        with pytest.raises(CommandError):
            call_command("import_prompts", *map(str, args), "--json", stdout=out, stderr=StringIO())
    else:
        call_command("import_prompts", *map(str, args), "--json", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_it_imports_a_prompt_list_and_assigns_every_task(prompts_file):
    summary = run(prompts_file, "--auto-task")
    assert summary == {
        "created": RECORDS,
        "updated": 0,
        "skipped": 0,
        "errors": [],
        "unassigned_task": 0,
        **NOTHING_LISTED,
    }
    assert PromptTuple.objects.count() == RECORDS
    assert set(PromptTuple.objects.values_list("task__code", flat=True)) == {code for code, *_ in TASKS}
    mango = PromptTuple.objects.get(implicit_prompt__startswith="An unripe mango")
    assert (mango.task.code, mango.subject, mango.source) == ("RI", "mango", prompts_file.name)


def test_it_reports_every_row_as_skipped_on_a_second_import(prompts_file):
    run(prompts_file, "--auto-task")
    assert run(prompts_file, "--auto-task") == {
        "created": 0,
        "updated": 0,
        "skipped": RECORDS,
        "errors": [],
        "unassigned_task": 0,
        **NOTHING_LISTED,
    }
    assert PromptTuple.objects.count() == RECORDS


def test_it_leaves_the_task_empty_without_task_flags(prompts_file):
    summary = run(prompts_file)
    assert (summary["created"], summary["unassigned_task"], summary["unassigned"]["count"]) == (RECORDS,) * 3
    assert summary["unassigned"]["rows"][0] == {
        "file": "prompts.json",
        "row": 1,
        "prompt": PROMPTS[0][0],
        "reason": "the row names no task (no --task or --auto-task)",
    }
    assert not PromptTuple.objects.filter(task__isnull=False).exists()


def test_it_gives_every_row_the_task_of_the_task_flag(prompts_file):
    run(prompts_file, "--task", "ru")
    assert set(PromptTuple.objects.values_list("task__code", flat=True)) == {"RU"}


def test_it_prints_one_json_object_with_the_documented_keys(prompts_file):
    out = StringIO()
    call_command("import_prompts", str(prompts_file), "--json", "--dry-run", stdout=out)
    summary = json.loads(out.getvalue())
    assert set(summary) == {"created", "updated", "skipped", "errors", "unassigned_task", "unassigned", "same_prompt"}
    assert out.getvalue().count("\n") <= 1


def test_it_writes_nothing_in_a_dry_run(prompts_file):
    summary = run(prompts_file, "--auto-task", "--dry-run")
    assert summary["created"] == RECORDS
    assert PromptTuple.objects.count() == 0


def test_it_writes_nothing_when_one_row_is_bad(tmp_path, prompts_file):
    run(prompts_file, "--task", "EL")
    before = list(PromptTuple.objects.values_list("id", "implicit_prompt", "task_id", "explicit_prompt"))
    rows = [{"implicit_prompt": f"A brand-new prompt number {i}.", "task": "GR"} for i in range(5)]
    rows[3] = {"implicit_prompt": "   ", "task": "GR"}
    rows.append({"implicit_prompt": "A wall lamp without power.", "task": "EL", "explicit_prompt": "A dark lamp."})
    summary = run(write_jsonl(tmp_path / "mixed.jsonl", rows), expect_error=True)
    assert summary["errors"] == [{"row": 4, "error": "implicit prompt is missing or empty"}]
    assert (summary["created"], summary["updated"], summary["skipped"]) == (0, 0, 0)
    assert list(PromptTuple.objects.values_list("id", "implicit_prompt", "task_id", "explicit_prompt")) == before


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"implicit_prompt": "A nail.", ', "invalid JSON"),
        ({"implicit_prompt": 42}, "implicit_prompt must be a string, not a number"),
        ({"implicit_prompt": "A nail.", "provenance": "web"}, "provenance must be an object"),
        ({"implicit_prompt": "A nail.", "scene": "huge"}, "scene must be one of simple, complex"),
        ({"implicit_prompt": "x" * 2001}, "implicit_prompt is 2001 characters long; the limit is 2000"),
        ({"implicit_prompt": "A nail.", "explict_prompt": "typo"}, "unknown field(s) explict_prompt"),
        ([1, 2], "expected a JSON object, got a list"),
    ],
)
def test_it_reports_bad_rows_with_their_line_number(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"implicit_prompt": "A good row.", "task": "RU"}, row])
    summary = run(path, expect_error=True)
    assert [e["row"] for e in summary["errors"]] == [2]
    assert message in summary["errors"][0]["error"]
    assert PromptTuple.objects.count() == 0


def test_it_lists_at_most_a_thousand_errors_and_counts_the_rest(tmp_path):
    summary = run(write_jsonl(tmp_path / "bad.jsonl", ["{"] * 1005), expect_error=True)
    assert len(summary["errors"]) == 1001
    assert summary["errors"][-1] == {"row": None, "error": "... and 5 more rows with errors"}


def test_it_rejects_an_unknown_task_code_in_a_row(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"implicit_prompt": "A nail.", "task": "XX"}])
    summary = run(path, expect_error=True)
    assert summary["errors"][0]["row"] == 1
    assert "unknown task 'XX'" in summary["errors"][0]["error"]


def test_it_rejects_an_unknown_task_flag(prompts_file):
    with pytest.raises(CommandError, match="unknown task 'XX'"):
        call_command("import_prompts", str(prompts_file), "--task", "XX", stdout=StringIO())


def test_it_fails_in_text_mode_with_the_row_errors_on_stderr(tmp_path):
    err = StringIO()
    with pytest.raises(CommandError, match="1 row"):
        call_command("import_prompts", str(write_jsonl(tmp_path / "t.jsonl", ["nope"])), stderr=err)
    assert "row 1: invalid JSON" in err.getvalue()


def test_it_imports_full_tuples_from_jsonl(tmp_path):
    rows = [
        {
            "implicit_prompt": "An iron nail left in the rain for weeks.",
            "explicit_prompt": "A rusty brown nail.",
            "superficial_prompt": "A shiny grey nail.",
            "task": "rust",
            "subject": "nail",
            "scene": "complex",
            "source": "batch-7",
            "provenance": {"generator": "flux", "seed": 3},
        },
        {"implicit_prompt": "An unripe mango.", "task": "RI"},
    ]
    path = write_jsonl(tmp_path / "tuples.jsonl", [rows[0], "", rows[1]])  # blank lines are skipped
    assert run(path)["created"] == 2
    nail = PromptTuple.objects.get(task__code="RU")
    stored = (nail.explicit_prompt, nail.superficial_prompt, nail.subject, nail.scene, nail.source, nail.provenance)
    assert stored == ("A rusty brown nail.", "A shiny grey nail.", "nail", "complex", "batch-7", rows[0]["provenance"])
    assert PromptTuple.objects.get(task__code="RI").source == "tuples.jsonl"


def test_it_imports_a_json_list_of_full_tuples_and_updates_on_new_fields(tmp_path):
    path = tmp_path / "tuples.json"
    path.write_text(json.dumps([{"implicit_prompt": "An unripe mango.", "task": "RI"}]))
    assert run(path)["created"] == 1
    path.write_text(json.dumps([{"implicit_prompt": "An unripe mango.", "task": "RI", "explicit_prompt": "A green"}]))
    assert run(path)["updated"] == 1
    assert PromptTuple.objects.get().explicit_prompt == "A green"


def test_it_treats_prompts_differing_in_case_and_whitespace_as_one(tmp_path):
    rows = [
        {"implicit_prompt": "An unripe mango.", "task": "RI"},
        {"implicit_prompt": "  an UNRIPE   mango ", "task": "ri"},
    ]
    summary = run(write_jsonl(tmp_path / "dupes.jsonl", rows))
    assert (summary["created"], summary["skipped"]) == (1, 1)
    assert PromptTuple.objects.get().implicit_prompt == "An unripe mango."


def test_it_reports_an_unreadable_file_as_row_zero(tmp_path):
    summary = run(tmp_path / "missing.json", expect_error=True)
    assert summary["errors"][0]["row"] == 0
    (tmp_path / "list.json").write_text("[1, 2")
    assert "invalid JSON" in run(tmp_path / "list.json", expect_error=True)["errors"][0]["error"]

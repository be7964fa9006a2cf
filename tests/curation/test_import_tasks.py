"""Dataset and prompt imports, issue 13: category/law read by value, automatic tasks (auto_task), the listing
of rows left without a task, the same prompt with and without a task (same_prompt, merge_same_prompt), and
every new option on the command line, the API and the import page."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.models import Discipline, Pair, PromptTuple, Task
from annotation.services.importing import import_prompts
from curation.models import Job
from curation.services.importing import ImportRefused, import_dataset
from tests.support.datasets import IMAGE, jpeg_bytes
from tests.support.factories import png_bytes

pytestmark = pytest.mark.django_db

SCHEMA = pa.schema(
    [
        ("implicit_prompt", pa.string()),
        ("explicit_prompt", pa.string()),
        ("superficial_prompt", pa.string()),
        ("explicit_image", IMAGE),
        ("superficial_image", IMAGE),
        ("category", pa.string()),
        ("law", pa.string()),
    ]
)


def row(prompt: str, category: str | None = "", law: str | None = "") -> dict:
    return {
        "implicit_prompt": prompt,
        "explicit_prompt": "",
        "superficial_prompt": "",
        "explicit_image": [{"bytes": png_bytes(), "path": None}],
        "superficial_image": [{"bytes": jpeg_bytes(), "path": None}],
        "category": category,
        "law": law,
    }


def write(path: Path, rows: list[dict], schema=SCHEMA) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def tasks() -> dict[str, str | None]:
    return {t.implicit_prompt: t.task.code if t.task else None for t in PromptTuple.objects.select_related("task")}


# --- 5. category and law by value ----------------------------------------------------------------------------


def test_category_and_law_name_a_task_or_a_discipline_by_value_in_either_column(tmp_path):
    Task.objects.create(
        code="CO",
        name="Corrosion fatigue",
        kind="CT",
        discipline=Discipline.objects.create(slug="materials", name="Materials science"),
    )
    rows = [
        row("A cork in water", category="Physics", law="Buoyancy"),
        row("Ice on a hot pavement", category="ME", law=""),
        row("A mango picked early", category="Biology", law="ri"),
        row("A steel beam flexed for years", category="Materials science", law="corrosion_fatigue"),
    ]
    rows.append({**row("A nail in the rain", category="Physics", law="Buoyancy"), "task": "RU"})
    rows.append(row("A cork on a table", category="", law="physics"))  # a discipline alone names no task
    schema = pa.schema([*SCHEMA, ("task", pa.string())])

    report = import_dataset(write(tmp_path / "test_S.parquet", rows, schema), task_default="none")

    assert report.ok, report.errors
    assert tasks() == {
        "A cork in water": "BU",
        "Ice on a hot pavement": "ME",
        "A mango picked early": "RI",
        "A steel beam flexed for years": "CO",
        "A nail in the rain": "RU",  # our task column wins
        "A cork on a table": None,
    }
    assert report.unassigned["rows"] == [
        {
            "file": "test_S.parquet",
            "row": 6,
            "prompt": "A cork on a table",
            "reason": "the row names no task (category: empty; law 'physics': a discipline)",
        }
    ]


def test_errors_say_what_each_column_held(tmp_path):
    rows = [
        row("A cork in water", category="Physics", law=""),
        row("Gold from lead", category="Alchemy", law="Chemistry"),
    ]
    report = import_dataset(write(tmp_path / "test_S.parquet", rows))
    assert [e["error"] for e in report.errors] == [
        (
            "the row names no task (category 'Physics': a discipline; law: empty); give a task default (a task code, "
            "or 'none' to import such rows without a task), auto_task, or merge_same_prompt"
        ),
        (
            "unknown task/category 'Alchemy' (category 'Alchemy': neither a task nor a discipline; law 'Chemistry': "
            "a discipline)"
        ),
    ]
    assert report.unassigned["count"] == 1 and report.unassigned["rows"][0]["row"] == 1


# --- 6. automatic tasks ------------------------------------------------------------------------------------


def test_auto_task_assigns_the_guess_within_the_rows_discipline_and_lists_the_rest(tmp_path):
    rows = [
        row("An iron nail left outside in the rain for weeks", category="Chemistry"),
        row("A cork thrown into a tank of water", law="physics"),
        row("A glass of water aboard the International Space Station", category="Biology"),  # GR is physics
        row("A red apple on a table"),
    ]
    path = write(tmp_path / "test_S.parquet", rows)

    refused = import_dataset(path, auto_task=True)
    assert [e["row"] for e in refused.errors] == [3, 4] and "no task rule matched" in refused.errors[1]["error"]
    assert refused.unassigned["count"] == 2

    report = import_dataset(path, auto_task=True, task_default="none")

    assert report.ok, report.errors
    assert tasks() == {
        "An iron nail left outside in the rain for weeks": "RU",
        "A cork thrown into a tank of water": "BU",
        "A glass of water aboard the International Space Station": None,
        "A red apple on a table": None,
    }
    assert report.unassigned == {
        "count": 2,
        "rows": [
            {
                "file": "test_S.parquet",
                "row": 3,
                "prompt": "A glass of water aboard the International Space Station",
                "reason": "the rules guessed GR (physics), but the row names the discipline biology",
            },
            {
                "file": "test_S.parquet",
                "row": 4,
                "prompt": "A red apple on a table",
                "reason": "no task rule matched the prompt",
            },
        ],
    }
    with pytest.raises(ImportRefused, match="either a task default code or auto_task"):
        import_dataset(path, auto_task=True, task_default="RU")


def test_import_prompts_lists_the_rows_auto_task_cannot_assign(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(
        json.dumps(
            [
                {"prompt": "An iron nail left outside in the rain for weeks", "object": "nail"},
                {"prompt": "A red apple on a table", "object": "apple"},
            ]
        )
    )
    report = import_prompts(path, auto_task=True)
    assert report.as_dict()["unassigned"] == {
        "count": 1,
        "rows": [
            {
                "file": "prompts.json",
                "row": 2,
                "prompt": "A red apple on a table",
                "reason": "no task rule matched the prompt",
            }
        ],
    }
    out = StringIO()
    call_command("import_prompts", str(path), "--auto-task", stdout=out)
    assert "1 row(s) without a task" in out.getvalue() and "prompts.json row 2: 'A red apple" in out.getvalue()


# --- 7. the same prompt with and without a task -------------------------------------------------------------


def test_a_prompt_imported_without_a_task_next_to_a_tasked_tuple_is_reported_and_can_be_merged(tmp_path):
    tasked = write(tmp_path / "a" / "test_S.parquet", [row("A nail in the rain", category="Rust")])
    assert import_dataset(tasked).ok
    rust = PromptTuple.objects.get()
    bare = write(tmp_path / "b" / "test_S.parquet", [row("a nail in the rain.")])

    kept_apart = import_dataset(bare, task_default="none", dry_run=True)
    assert kept_apart.same_prompt == {
        "count": 1,
        "rows": 1,
        "merged": 0,
        "prompts": [
            {
                "prompt": "a nail in the rain.",
                "file": "test_S.parquet",
                "row": 1,
                "rows": 1,
                "existing": [{"tuple": rust.pk, "task": "RU"}],
                "in_file": [],
                "merged": False,
                "task": None,
                "tuple": None,
                "action": "not merged (merge_same_prompt is off): a tuple of its own",
            }
        ],
    }
    assert kept_apart.tuples["created"] == 1

    merged = import_dataset(bare, merge_same_prompt=True)  # no task default needed: the merge gives the task

    assert merged.ok, merged.errors
    assert merged.same_prompt["merged"] == 1 and merged.same_prompt["prompts"][0]["tuple"] == rust.pk
    assert merged.unassigned == {"count": 0, "rows": []}
    assert PromptTuple.objects.count() == 1 and Pair.objects.filter(tuple=rust).count() == 2


def test_several_tasks_with_the_prompt_are_reported_and_not_merged(tmp_path):
    assert import_dataset(
        write(
            tmp_path / "a.parquet",
            [row("A nail in the rain", category="Rust"), row("A nail in the rain", category="Melting")],
        )
    ).ok
    path = write(tmp_path / "b.parquet", [row("A nail in the rain")])
    refused = import_dataset(path, merge_same_prompt=True)
    assert "names no task" in refused.errors[0]["error"]
    assert refused.same_prompt["prompts"][0]["action"] == "not merged: several tasks have this prompt"
    report = import_dataset(path, merge_same_prompt=True, task_default="none")
    assert report.ok and report.same_prompt["merged"] == 0
    assert sorted(map(str, PromptTuple.objects.values_list("task__code", flat=True))) == ["ME", "None", "RU"]


def test_a_tasked_row_of_the_same_input_is_merged_with_too(tmp_path):
    path = write(
        tmp_path / "t.parquet",
        [row("A nail in the rain", category="Rust"), row("A nail in the rain"), row("A chain in the rain")],
    )
    report = import_dataset(path, merge_same_prompt=True, task_default="none")
    assert report.ok, report.errors
    assert report.same_prompt["prompts"][0]["in_file"] == [{"task": "RU", "file": "t.parquet", "row": 1}]
    assert tasks() == {"A nail in the rain": "RU", "A chain in the rain": None}
    assert Pair.objects.filter(tuple__task__code="RU").count() == 2
    assert report.unassigned["count"] == 1 and report.unassigned["rows"][0]["row"] == 3


def test_import_prompts_reports_and_merges_the_same_prompt(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"prompt": "A nail in the rain", "object": "nail"}]))
    tasked = tmp_path / "tasked.jsonl"
    tasked.write_text(json.dumps({"implicit_prompt": "A nail in the rain", "task": "RU"}) + "\n")
    import_prompts(tasked)
    rust = PromptTuple.objects.get()

    report = import_prompts(path, dry_run=True).as_dict()
    assert report["same_prompt"]["prompts"] == [
        {
            "prompt": "A nail in the rain",
            "row": 1,
            "rows": 1,
            "existing": [{"tuple": rust.pk, "task": "RU"}],
            "in_file": [],
            "merged": False,
            "task": None,
            "tuple": None,
            "action": "not merged (merge_same_prompt is off): a tuple of its own",
        }
    ]
    out = StringIO()
    call_command("import_prompts", str(path), "--merge-same-prompt", stdout=out)
    assert PromptTuple.objects.count() == 1 and PromptTuple.objects.get().subject == "nail"
    assert "1 prompt(s) come without a task here but have one elsewhere (1 merged)" in out.getvalue()


# --- 8. the options on the command line, the API and the page ------------------------------------------------


def test_the_command_takes_the_new_options(tmp_path, capsys):
    with pytest.raises(SystemExit):
        call_command("import_dataset", "--help")
    help_text = capsys.readouterr().out
    for flag in ("--auto-task", "--merge-same-prompt", "--open-for-annotation"):
        assert flag in help_text
    path = write(tmp_path / "t.parquet", [row("An iron nail left outside in the rain for weeks")])
    out = StringIO()
    call_command("import_dataset", str(path), "--auto-task", "--open-for-annotation", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["options"] == {
        "decisions": "open",
        "auto_task": True,
        "merge_same_prompt": False,
        "task_default": None,
    }
    assert tasks() == {"An iron nail left outside in the rain for weeks": "RU"}
    assert Pair.objects.get().status == "open"
    with pytest.raises(CommandError, match="not both"):
        call_command("import_dataset", str(path), "--auto-task", "--task-default", "RU", stdout=StringIO())
    text = StringIO()
    call_command("import_dataset", str(path), "--merge-same-prompt", stdout=text, stderr=StringIO())
    assert "Decisions: 1 recorded, 0 unchanged, 0 kept." in text.getvalue()


@pytest.fixture
def root(settings, tmp_path, eager_celery) -> Path:
    folder = tmp_path / "imports"
    write(folder / "t.parquet", [row("An iron nail left outside in the rain for weeks"), row("A red apple")])
    settings.IMPORT_ROOTS = [str(folder)]
    return folder


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decisions": "maybe"}, "decisions"),
        ({"auto_task": "perhaps"}, "auto_task"),
        ({"merge_same_prompt": [1]}, "merge_same_prompt"),
        ({"auto_task": True, "task_default": "RU"}, "auto_task"),
    ],
)
def test_the_api_validates_the_new_fields(api, admin_user, root, body, field):
    api.force_authenticate(admin_user)
    response = api.post("/api/curation/imports/", {"path": "t.parquet", **body}, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Job.objects.exists()


def test_the_api_passes_the_new_options_to_the_job(api, admin_user, root, django_capture_on_commit_callbacks):
    api.force_authenticate(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/curation/imports/",
            {
                "path": "t.parquet",
                "auto_task": True,
                "task_default": "none",
                "merge_same_prompt": True,
                "decisions": "open",
            },
            format="json",
        )
    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert (job.params["auto_task"], job.params["merge_same_prompt"], job.params["decisions"]) == (True, True, "open")
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["unassigned"]["rows"][0]["prompt"] == "A red apple"
    assert job.result["decisions"] == {"recorded": 0, "unchanged": 0, "kept": 0}
    assert set(Pair.objects.values_list("status", flat=True)) == {"open"}


def test_the_import_page_offers_the_new_options(client, admin_user, root, django_capture_on_commit_callbacks):
    client.force_login(admin_user)
    page = client.get("/curation/imports/new/").content.decode()
    for name in ('name="auto_task"', 'name="merge_same_prompt"', 'name="decisions"', '<option value="open"'):
        assert name in page
    bad = client.post("/curation/imports/new/", {"path": "t.parquet", "format": "auto", "decisions": "maybe"})
    both = client.post(
        "/curation/imports/new/", {"path": "t.parquet", "format": "auto", "auto_task": "on", "task_default": "RU"}
    )
    assert (bad.status_code, both.status_code) == (400, 400) and "not both" in both.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            "/curation/imports/new/",
            {
                "path": "t.parquet",
                "format": "auto",
                "auto_task": "on",
                "task_default": "none",
                "merge_same_prompt": "on",
            },
        )
    job = Job.objects.get()
    assert started.status_code == 302 and job.status == Job.Status.SUCCEEDED, job.error
    assert (job.params["auto_task"], job.params["merge_same_prompt"], job.params["decisions"]) == (True, True, "import")
    detail = client.get(started["Location"]).content.decode()
    assert "rows without a task" in detail and "recorded 2" in detail

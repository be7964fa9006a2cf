"""The live "Table 1" (/ml/leaderboard/ and GET /api/ml/leaderboard/): the paper's columns per split and
discipline, the reference rows labelled as the paper's, the humans scored leave-one-out (figures worked out by
hand below), a judge's row from its eval_judge run with n and intervals, its cells linking to the items, the
per-task view, and the empty states."""

from __future__ import annotations

from unittest import mock

import pytest

from curation.models import Consensus, DatasetVersion, VersionMember
from ml.models import JudgedItem
from ml.services import runs
from ml.tasks import execute_run
from tests.support.factories import make_user
from tests.support.judging import judge
from tests.support.scoring_data import synthetic_pairs, tiny_scorer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread")]
ALL = ["physics", "chemistry", "biology"]
EXP, OTH = "expected", "other"


@pytest.fixture
def world(admin_user, tmp_path):
    """Three experts judge four synthetic pairs through the queue (k = 3); the version freezes them.

    test_S
      ME (Physics)    E E E  confirmed E: each judgement's others say E, E -> 3 of 3 right
      RU (Chemistry)  E E O  confirmed E: alice and bob have a tie among the others (E, O) -> not scored;
                             carol's others say E, E and she said O -> 0 of 1
      SC (Biology)    O O O  reversed O: 3 of 3 right
    test_C
      BU (Physics)    E E E  confirmed E: 3 of 3
    Pooled test_S: 6 of 7 (85.7 %); Physics 3/3, Chemistry 0/1, Biology 3/3. test_C: 3 of 3.
    """
    people = [make_user(name, "annotator", disciplines=ALL) for name in ("alice", "bob", "carol")]
    version = DatasetVersion.objects.create(
        name="v-table", content_hash="1" * 64, counts={}, filters={}, split_ratios={"seed": 0}, created_by=admin_user
    )
    plan = [
        ("test_S", "ME", (EXP, EXP, EXP)),
        ("test_S", "RU", (EXP, EXP, OTH)),
        ("test_S", "SC", (OTH, OTH, OTH)),
        ("test_C", "BU", (EXP, EXP, EXP)),
    ]
    for seed, (split, task, labels) in enumerate(plan):
        pair = synthetic_pairs(1, "test", seed=seed, tasks=[task])[0]
        for person, label in zip(people, labels, strict=True):
            judge(person, pair, label)
        decision = Consensus.objects.get(pair=pair)
        VersionMember.objects.create(
            version=version,
            pair=pair,
            label=decision.label,
            outcome=decision.outcome,
            agreement=decision.agreement,
            n_judgements=3,
            split=split,
            group_key=f"{pair.pk:064}",
        )
    scorer = tiny_scorer(admin_user, tmp_path / "scorer", name="tiny-sciscore", active=True)
    with mock.patch("ml.tasks.execute_run.apply_async"):
        run = runs.start_run(admin_user, "eval_judge", {"dataset_version": version.pk}, celery_task=execute_run)
    run = runs.execute_run(run.pk)
    assert run.status == "succeeded", run.error
    return {"version": version, "run": run, "scorer": scorer}


def _row(table: dict, kind: str) -> list[dict]:
    return [row for row in table["judges"] if row["kind"] == kind]


def test_the_api_lays_out_the_papers_columns_with_humans_and_the_judge(api, admin_user, world):
    api.force_authenticate(admin_user)
    table = api.get("/api/ml/leaderboard/", {"version": world["version"].pk}).json()

    assert [c["label"] for c in table["columns"]] == ["S-Phys", "S-Chem", "S-Bio", "S-Avg", "C-Phys", "C-Avg"]
    humans = table["humans"]["cells"]
    assert [c["n"] for c in humans] == [3, 1, 3, 7, 3, 3]
    assert [c["accuracy"] for c in humans] == pytest.approx([1.0, 0.0, 1.0, 6 / 7, 1.0, 1.0])
    assert humans[3]["low"] <= 6 / 7 <= humans[3]["high"] and humans[3]["low"] < humans[3]["high"]
    assert {row["label"]: [c and c["n"] for c in row["cells"]] for row in table["annotators"]} == {
        "alice": [1, None, 1, 2, 1, 1],
        "bob": [1, None, 1, 2, 1, 1],
        "carol": [1, 1, 1, 3, 1, 1],
    }
    (judge_row,) = _row(table, "scorer")
    assert judge_row["label"] == "tiny-sciscore" and judge_row["run"] == world["run"].pk
    assert [c["n"] for c in judge_row["cells"]] == [1, 1, 1, 3, 1, 1]
    items = JudgedItem.objects.filter(run=world["run"], split="test_S")
    assert judge_row["cells"][3]["accuracy"] == pytest.approx(sum(i.score for i in items) / 3)
    reference = {row["label"]: row["cells"] for row in table["reference"]}
    assert reference["SciScore (paper)"][3]["accuracy"] == 0.931 and reference["SciScore (paper)"][3]["reference"]
    assert reference["SciScore (paper)"][5]["accuracy"] == 0.912 and "n" not in reference["SciScore (paper)"][5]
    assert reference["SciScore (paper)"][0] is None  # per discipline: not typed in
    assert "typed in" in table["reference_source"]


def test_the_page_shows_n_and_intervals_and_links_each_judge_cell_to_its_items(client, admin_user, world):
    client.force_login(admin_user)
    page = client.get("/ml/leaderboard/", {"version": world["version"].pk}).content.decode()
    assert "S-Phys" in page and "C-Avg" in page and "Humans (pooled, leave-one-out)" in page
    assert "85.7" in page and "n=7" in page and "(paper)" in page and "typed in" in page
    run = world["run"].pk
    link = f"/ml/leaderboard/items/?run={run}&amp;split=test_S&amp;discipline=Chemistry"
    assert link in page
    items = client.get(f"/ml/leaderboard/items/?run={run}&split=test_S&discipline=Chemistry").content.decode()
    ru_pair = VersionMember.objects.get(version=world["version"], pair__tuple__task__code="RU").pair_id
    assert f'data-pair="{ru_pair}"' in items and items.count("data-pair=") == 1
    assert "right " in items and "wrong " in items  # a scorer's two scores


def test_the_per_task_view_has_a_column_per_task_of_the_split(api, admin_user, world):
    api.force_authenticate(admin_user)
    table = api.get("/api/ml/leaderboard/", {"version": world["version"].pk, "view": "task", "split": "test_S"}).json()
    assert [c["label"] for c in table["columns"]] == ["ME", "RU", "SC", "S-Avg"]
    assert table["reference"] == []  # the paper's figures are per split, not per task
    assert [c["n"] for c in table["humans"]["cells"]] == [3, 1, 3, 7]


def test_empty_states_say_what_to_do(client, admin_user):
    client.force_login(admin_user)
    assert "No dataset version yet" in client.get("/ml/leaderboard/").content.decode()
    version = DatasetVersion.objects.create(
        name="empty", content_hash="2" * 64, counts={}, filters={}, split_ratios={}, created_by=admin_user
    )
    page = client.get("/ml/leaderboard/", {"version": version.pk}).content.decode()
    assert "no two-choice members" in page
    assert client.get("/ml/leaderboard/", {"version": 987654}).status_code == 404
    assert client.get("/ml/leaderboard/items/").status_code == 404

"""Dataset versions (curation.services.versions) built from real judgements through the queue."""

import json

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command

from annotation.models import AuditEvent, Pair, Task
from annotation.services import catalog
from curation.models import DatasetVersion, VersionMember
from curation.services import judging, splits, versions
from curation.services.adjudication import adjudicate
from tests.support.factories import TupleFactory, make_pair
from tests.support.judging import expert, judge, judged

pytestmark = pytest.mark.django_db


def members(version):
    return {m.pair_id: m for m in VersionMember.objects.filter(version=version)}


@pytest.fixture
def catalogue():
    """Pairs of every outcome: confirmed (RU, BU), reversed, rejected, disputed, gold, pending last."""
    pairs = {
        "confirmed": judged("expected", "expected", "expected"),
        "confirmed_2_3": judged("expected", "expected", "other"),
        "reversed": judged("other", "other", "expected"),
        "rejected": judged("both", "both", "neither"),
        "disputed": judged("expected", "other", "both"),
        "physics": judged("expected", "expected", "expected", task="BU"),
    }
    pairs["gold"] = judged("expected", "expected", "expected")
    pairs["pending"] = judged("expected", "expected")  # stays open: made last
    # Gold pairs are served to everyone, so turn one gold only now; its stale consensus row stays.
    Pair.objects.filter(pk=pairs["gold"].pk).update(is_gold=True)
    return pairs


def test_it_freezes_the_decided_pairs_with_their_labels(admin_user, catalogue):
    version = versions.build_version(admin_user, "v1")
    found = members(version)
    expected = {catalogue[name].pk for name in ("confirmed", "confirmed_2_3", "reversed", "physics")}
    assert set(found) == expected
    reversed_member = found[catalogue["reversed"].pk]
    assert (reversed_member.label, reversed_member.outcome, reversed_member.n_judgements) == ("other", "reversed", 3)
    assert reversed_member.agreement == pytest.approx(2 / 3)
    assert found[catalogue["confirmed"].pk].label == "expected"
    assert version.counts["total"] == 4
    assert version.counts["tasks"]["RU"]["total"] == 3
    assert version.counts["tasks"]["BU"]["total"] == 1
    assert sum(version.counts["splits"].values()) == 4
    assert set(version.counts["splits"]) == {"train", "validation", "test_S", "test_C"}
    assert len(version.content_hash) == 64
    assert version.created_by == admin_user and version.parent is None
    assert version.filters["outcomes"] == ["adjudicated", "confirmed", "imported", "reversed"]
    assert version.split_ratios == {
        "train": 0.8,
        "validation": 0.1,
        "test": 0.1,
        "seed": 0,
        "keep_imported_splits": True,
        "imported_split_groups": 0,
    }
    event = AuditEvent.objects.get(action="version.frozen")
    assert (event.actor, event.target_type, event.target_id) == (admin_user, "datasetversion", str(version.pk))
    assert event.after["content_hash"] == version.content_hash


def test_it_selects_rejected_pairs_only_when_asked(admin_user, catalogue):
    version = versions.build_version(admin_user, "with-rejected", outcomes=["confirmed", "rejected"])
    found = members(version)
    assert catalogue["rejected"].pk in found and catalogue["reversed"].pk not in found
    assert found[catalogue["rejected"].pk].label == "both"


def test_it_never_selects_disputed_or_pending_pairs(admin_user, catalogue):
    for outcome in ("disputed", "pending", "nonsense"):
        with pytest.raises(versions.VersionError, match="outcomes"):
            versions.build_version(admin_user, f"bad-{outcome}", outcomes=[outcome])
    assert not DatasetVersion.objects.exists()


def test_it_filters_by_task_discipline_agreement_and_exclusions(admin_user, catalogue):
    only_bu = versions.build_version(admin_user, "bu", tasks=["bu"], parent=None)
    assert set(members(only_bu)) == {catalogue["physics"].pk}
    chemistry = versions.build_version(admin_user, "chem", disciplines=["chemistry"], parent=None)
    assert catalogue["physics"].pk not in members(chemistry) and catalogue["confirmed"].pk in members(chemistry)
    strict = versions.build_version(admin_user, "strict", min_agreement=0.9, parent=None)
    assert set(members(strict)) == {catalogue["confirmed"].pk, catalogue["physics"].pk}
    excluded = versions.build_version(
        admin_user,
        "excl",
        exclude_pairs=[catalogue["confirmed"].pk],
        exclude_tuples=[catalogue["reversed"].tuple_id],
        parent=None,
    )
    assert set(members(excluded)) == {catalogue["confirmed_2_3"].pk, catalogue["physics"].pk}


def test_it_keeps_adjudicated_pairs_whatever_their_agreement(admin_user, reviewer):
    disputed = judged("expected", "other", "both")
    adjudicate(reviewer, disputed.pk, "other", "the rust is on the wrong nail")
    neither = judged("expected", "other", "neither")
    adjudicate(reviewer, neither.pk, "neither")
    version = versions.build_version(admin_user, "adj", min_agreement=0.9)
    found = members(version)
    assert set(found) == {disputed.pk}  # adjudicated "neither" counts as rejected: not asked for
    assert (found[disputed.pk].outcome, found[disputed.pk].label) == ("adjudicated", "other")


def test_it_refuses_bad_input(admin_user, catalogue):
    with pytest.raises(versions.VersionError, match="tasks"):
        versions.build_version(admin_user, "x", tasks=["ZZ"])
    with pytest.raises(versions.VersionError, match="disciplines"):
        versions.build_version(admin_user, "x", disciplines=["alchemy"])
    with pytest.raises(versions.VersionError, match="ratios"):
        versions.build_version(admin_user, "x", ratios={"train": 0.9, "validation": 0.2, "test": 0.1})
    with pytest.raises(versions.VersionError, match="min_agreement"):
        versions.build_version(admin_user, "x", min_agreement=1.5)
    with pytest.raises(versions.VersionError, match="name"):
        versions.build_version(admin_user, "  ")
    with pytest.raises(versions.VersionError, match="no pairs"):
        versions.build_version(admin_user, "x", tasks=["GR"])
    versions.build_version(admin_user, "taken")
    with pytest.raises(versions.VersionError, match="exists already"):
        versions.build_version(admin_user, "taken")
    assert DatasetVersion.objects.count() == 1


def test_it_lets_only_admins_build(reviewer, annotator, catalogue):
    for user in (reviewer, annotator):
        with pytest.raises(PermissionDenied):
            versions.build_version(user, "nope")
    assert not DatasetVersion.objects.exists()


def test_it_does_not_change_when_consensus_changes_later(admin_user, reviewer):
    pair = make_pair("RU")
    judges = [expert() for _ in range(3)]
    for user in judges:
        judge(user, pair, "expected")
    version = versions.build_version(admin_user, "frozen")
    frozen = (version.content_hash, version.counts, [(m.pair_id, m.label, m.split) for m in members(version).values()])
    adjudicate(reviewer, pair.pk, "other")
    judging.undo(judges[-1])
    version.refresh_from_db()
    assert (
        version.content_hash,
        version.counts,
        [(m.pair_id, m.label, m.split) for m in members(version).values()],
    ) == frozen
    assert members(version)[pair.pk].outcome == "confirmed"


def test_it_gives_identical_inputs_identical_hashes(admin_user, catalogue):
    first = versions.build_version(admin_user, "a", parent=None)
    second = versions.build_version(admin_user, "b", parent=None)
    assert first.content_hash == second.content_hash
    other_seed = versions.build_version(
        admin_user, "c", parent=None, seed=1, ratios={"train": 0.0, "validation": 0.0, "test": 1.0}
    )
    assert other_seed.content_hash != first.content_hash
    assert versions.content_hash(
        [(2, "expected", "train", "aa", "bb"), (1, "other", "test_S", "cc", "dd")]
    ) == versions.content_hash([(1, "other", "test_S", "cc", "dd"), (2, "expected", "train", "aa", "bb")])


def test_it_splits_by_group_so_nothing_leaks(admin_user):
    rust, buoy = Task.objects.get(code="RU"), Task.objects.get(code="BU")
    twin_a = TupleFactory(implicit_prompt="An iron gate by the sea for years", subject="gate", task=rust)
    twin_b = TupleFactory(
        implicit_prompt="an iron gate by the sea for years.", subject="Gate", task=buoy, scene="complex"
    )
    pairs = [
        judged("expected", "expected", "expected", tuple=twin_a),
        judged("expected", "expected", "expected", tuple=twin_a),
        judged("expected", "expected", "expected", task="BU", tuple=twin_b),
    ]
    for seed in range(6):
        version = versions.build_version(
            admin_user, f"s{seed}", seed=seed, parent=None, ratios={"train": 0.34, "validation": 0.33, "test": 0.33}
        )
        found = members(version)
        assert len({found[p.pk].split for p in pairs}) == 1
        assert len({found[p.pk].group_key for p in pairs}) == 1
        assert found[pairs[0].pk].split in ("train", "validation", "test_C")  # complex group: never test_S


def test_it_keeps_the_parents_splits_with_another_seed(admin_user):
    for _ in range(4):
        judged("expected", "expected", "expected")
    first = versions.build_version(admin_user, "v1", seed=0)
    added = [judged("expected", "expected", "expected") for _ in range(2)]  # new groups in v2
    second = versions.build_version(admin_user, "v2", seed=12345, ratios={"train": 0.0, "validation": 0.0, "test": 1.0})
    assert second.parent == first
    old, new = members(first), members(second)
    assert all(new[pair].split == old[pair].split for pair in old)
    assert {new[p.pk].split for p in added} == {"test_S"}
    orphan = versions.build_version(
        admin_user, "v3", parent=None, seed=5, ratios={"train": 0.0, "validation": 0.0, "test": 1.0}
    )
    assert orphan.parent is None
    assert {m.split for m in members(orphan).values()} == {"test_S"}


def test_it_diffs_two_versions(admin_user, reviewer, catalogue):
    first = versions.build_version(admin_user, "v1", exclude_pairs=[catalogue["physics"].pk])
    adjudicate(reviewer, catalogue["confirmed"].pk, "other")
    second = versions.build_version(
        admin_user,
        "v2",
        exclude_pairs=[catalogue["reversed"].pk],
        parent=None,
        seed=1,
        ratios={"train": 0.0, "validation": 0.0, "test": 1.0},
    )
    diff = versions.diff_versions(first, second)
    assert diff["added"] == [catalogue["physics"].pk]
    assert diff["removed"] == [catalogue["reversed"].pk]
    assert diff["relabelled"] == [{"pair": catalogue["confirmed"].pk, "from": "expected", "to": "other"}]
    old = members(first)
    moved = [p for p in (catalogue["confirmed"].pk, catalogue["confirmed_2_3"].pk) if old[p].split != "test_S"]
    assert diff["moved"] == [{"pair": p, "from": old[p].split, "to": "test_S"} for p in moved]
    assert diff["counts"] == {
        "added": 1,
        "removed": 1,
        "relabelled": 1,
        "moved": len(moved),
        "unchanged": 0 if catalogue["confirmed_2_3"].pk in moved else 1,
    }
    assert versions.diff_versions(first, first)["counts"] == {
        "added": 0,
        "removed": 0,
        "relabelled": 0,
        "moved": 0,
        "unchanged": 3,
    }


def test_the_command_prints_the_version_id(admin_user, catalogue, capsys):
    call_command(
        "freeze_version",
        "cli-v1",
        "--user",
        admin_user.username,
        "--tasks",
        "RU",
        "--outcomes",
        "confirmed,reversed",
        "--min-agreement",
        "0.6",
        "--seed",
        "3",
        "--ratios",
        "0.6,0.2,0.2",
        "--exclude-pairs",
        str(catalogue["reversed"].pk),
    )
    out = capsys.readouterr().out.strip()
    version = DatasetVersion.objects.get(name="cli-v1")
    assert out == str(version.pk)
    assert set(members(version)) == {catalogue["confirmed"].pk, catalogue["confirmed_2_3"].pk}
    assert version.split_ratios == {
        "train": 0.6,
        "validation": 0.2,
        "test": 0.2,
        "seed": 3,
        "keep_imported_splits": True,
        "imported_split_groups": 0,
    }
    call_command("freeze_version", "cli-v2", "--user", admin_user.username, "--disciplines", "physics", "--json")
    report = json.loads(capsys.readouterr().out)
    second = DatasetVersion.objects.get(name="cli-v2")
    assert report["id"] == second.pk and report["content_hash"] == second.content_hash
    assert report["counts"]["total"] == 1 and report["parent"] == version.pk


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "ZZ"], "unknown task"),
        (["--ratios", "0.8,0.1"], "ratios"),
        (["--ratios", "a,b,c"], "ratios"),
        (["--outcomes", "disputed"], "outcomes"),
        (["--exclude-pairs", "1,x"], "exclude_pairs"),
        (["--parent", "nope"], "parent"),
    ],
)
def test_the_command_refuses_bad_input(admin_user, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("freeze_version", "bad", "--user", admin_user.username, *args)


def test_the_command_refuses_non_admins_and_unknown_users(reviewer):
    with pytest.raises(CommandError, match="not an admin"):
        call_command("freeze_version", "x", "--user", reviewer.username)
    with pytest.raises(CommandError, match="No user"):
        call_command("freeze_version", "x", "--user", "ghost")


def test_the_diff_command(admin_user, catalogue, capsys):
    first = versions.build_version(admin_user, "v1", tasks=["RU"])
    versions.build_version(admin_user, "v2")
    call_command("diff_versions", "v1", str(DatasetVersion.objects.get(name="v2").pk), "--json")
    diff = json.loads(capsys.readouterr().out)
    assert diff["added"] == [catalogue["physics"].pk] and diff["counts"]["moved"] == 0
    call_command("diff_versions", str(first.pk), "v2")
    assert "1 added, 0 removed, 0 relabelled, 0 moved" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No version"):
        call_command("diff_versions", "v1", "v9")


def test_it_skips_retired_pairs(admin_user):
    kept = judged("expected", "expected", "expected")
    retired = judged("expected", "expected", "expected")
    catalog.set_pair_retired(retired.pk, True)
    assert set(members(versions.build_version(admin_user, "r"))) == {kept.pk}


def test_the_preview_counts_match_the_build(admin_user, catalogue, django_assert_max_num_queries):
    filters = versions.clean_filters()
    with django_assert_max_num_queries(1):
        preview = versions.preview_counts(filters)
    assert preview == {"BU": 1, "RU": 3}
    version = versions.build_version(admin_user, "p")
    assert {task: row["total"] for task, row in version.counts["tasks"].items()} == preview
    assert tuple(version.counts["splits"]) == splits.SPLITS

"""ml.services.humans: the experts' leave-one-out two-choice accuracy on a frozen version, checked against a
version whose every score is worked out by hand below."""

from collections import Counter
from fractions import Fraction

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from curation.models import Consensus, DatasetVersion, VersionMember
from curation.services import adjudication, consensus, gold, judging
from ml.services.humans import human_accuracy, loo_reference
from tests.support.factories import make_pair, make_user
from tests.support.judging import judge

ALL = ["physics", "chemistry", "biology"]
EXP, OTH, BOTH, NEI = "expected", "other", "both", "neither"


def member(version, pair, split, label, outcome):
    """A frozen member row, as ``freeze`` writes it (built directly to pick the split)."""
    decision = Consensus.objects.filter(pair=pair).first()
    VersionMember.objects.create(
        version=version,
        pair=pair,
        label=label,
        outcome=outcome,
        agreement=decision.agreement if decision else None,
        n_judgements=decision.n_judgements if decision else 0,
        split=split,
        group_key=f"{pair.pk:064}",
    )


@pytest.fixture
def world(db):
    """Five people judge nine pairs through the real queue; the version freezes them. Who said what:

    test_S
      P1 BU (Physics, ST), k 4, confirmed E:  alice E, bob E, carol E, dave O
      P2 RU (Chemistry, CT), k 3, reversed O: alice O, bob O, carol E
      P3 SC (Biology, ST), confirmed E when frozen at k 3 (alice E, bob E, dave O); then k 4 and carol O
      P4 RU (Chemistry, CT), k 3, disputed, rita adjudicates O: alice E, bob O, rita both
      P5 LR (Biology, CT), imported E (closed at two judgements): alice both, bob E
      P6 BU, confirmed E when frozen, gold now: alice E, bob O, carol E            (skipped: gold)
      P7 SC, rejected neither: alice neither, bob neither, dave E                   (skipped: neither)
    test_C
      P8 SO (Physics, CT), confirmed E: alice E, carol E, dave E
    train
      P9 GR (Physics, CT), reversed O: bob O, carol O, dave O                       (not a default split)
    """
    people = {name: make_user(name, "annotator", disciplines=ALL) for name in ("alice", "bob", "carol", "dave")}
    rita = make_user("rita", "reviewer", disciplines=ALL)
    rita.groups.add(Group.objects.get_or_create(name="annotator")[0])  # roles are groups: a reviewer who judges
    people["rita"] = rita
    admin = make_user("boss", "admin")

    def judged(task, k, *said):
        pair = make_pair(task, k=k)
        for name, label in said:
            judge(people[name], pair, label)
        return pair

    p1 = judged("BU", 4, ("alice", EXP), ("bob", EXP), ("carol", EXP), ("dave", OTH))
    p2 = judged("RU", 3, ("alice", OTH), ("bob", OTH), ("carol", EXP))
    p3 = judged("SC", 3, ("alice", EXP), ("bob", EXP), ("dave", OTH))
    p4 = judged("RU", 3, ("alice", EXP), ("bob", OTH), ("rita", BOTH))
    adjudication.adjudicate(rita, p4.pk, OTH)
    p5 = judged("LR", 3, ("alice", BOTH), ("bob", EXP))
    consensus.record_imported_decision(p5, EXP, {"source": "science-t2i"})  # closes it
    p7 = judged("SC", 3, ("alice", NEI), ("bob", NEI), ("dave", EXP))
    p8 = judged("SO", 3, ("alice", EXP), ("carol", EXP), ("dave", EXP))
    p9 = judged("GR", 3, ("bob", OTH), ("carol", OTH), ("dave", OTH))
    p6 = judged("BU", 3, ("alice", EXP), ("bob", OTH), ("carol", EXP))

    version = DatasetVersion.objects.create(
        name="v-humans", content_hash="0" * 64, counts={}, filters={}, split_ratios={"seed": 0}, created_by=admin
    )
    for pair, split, label, outcome in [
        (p1, "test_S", EXP, "confirmed"),
        (p2, "test_S", OTH, "reversed"),
        (p3, "test_S", EXP, "confirmed"),
        (p4, "test_S", OTH, "adjudicated"),
        (p5, "test_S", EXP, "imported"),
        (p6, "test_S", EXP, "confirmed"),
        (p7, "test_S", NEI, "rejected"),
        (p8, "test_C", EXP, "confirmed"),
        (p9, "train", OTH, "reversed"),
    ]:
        member(version, pair, split, label, outcome)
    # After the freeze: P3 wants a fourth judgement (carol says O), and P6 becomes gold.
    judging.set_pair_k(p3.pk, 4)
    judge(people["carol"], p3, OTH)
    gold.mark_gold(admin, p6.pk, EXP)
    return version


def accuracy(found):
    return None if found["accuracy"] is None else Fraction(found["accuracy"]).limit_denominator(100)


def test_each_judgement_is_scored_against_a_reference_it_did_not_make(world):
    # test_S, by hand (1 right, 0 wrong, - not scored):
    #   P1 confirmed: alice 1 (others E E O -> E), bob 1, carol 1, dave 0 (others E E E -> E)
    #   P2 reversed:  alice - and bob - (others O E: tied), carol 0 (others O O -> O)
    #   P3 confirmed, judged now E E O O: alice 0 and bob 0 (others E O O -> O: the reference flips),
    #                 dave 0 and carol 0 (others E E O -> E)
    #   P4 adjudicated O: alice 0, bob 1, rita - (her own adjudication)
    #   P5 imported E: alice 0 (both is no image), bob 1
    #   P6 gold, P7 neither: skipped, their judgements count nowhere
    # alice 1/4, bob 3/4, carol 1/3, dave 0/2, rita nothing; pooled 5/13; not scored: 2 tied + 1 own.
    found = human_accuracy(world, resamples=200)
    test_s = found["test_S"]
    assert (test_s["members"], test_s["items"], test_s["judgements"]) == (7, 5, 16)
    assert test_s["skipped"] == {"both": 0, "neither": 1, "gold": 1}
    assert test_s["not_scored"] == {"no_reference": 2, "own_adjudication": 1}
    rows = [
        (row["username"], row["breakdown"]["overall"]["n"], accuracy(row["breakdown"]["overall"]))
        for row in test_s["rows"]
    ]
    assert rows == [
        ("alice", 4, Fraction(1, 4)),
        ("bob", 4, Fraction(3, 4)),
        ("carol", 3, Fraction(1, 3)),
        ("dave", 2, Fraction(0)),
        ("rita", 0, None),
    ]
    assert [row["breakdown"]["unscored"] for row in test_s["rows"]] == [1, 1, 0, 0, 1]
    users = dict(get_user_model().objects.values_list("username", "pk"))
    assert [row["id"] for row in test_s["rows"]] == [users[name] for name, *_ in rows]
    pooled = test_s["pooled"]
    assert (pooled["overall"]["n"], accuracy(pooled["overall"]), pooled["unscored"]) == (13, Fraction(5, 13), 3)
    # Physics: P1 (3/4); Chemistry: P2 carol 0, P4 alice 0, bob 1 (1/3); Biology: P3 four 0s, P5 0 and 1 (1/6).
    assert {name: (c["n"], accuracy(c)) for name, c in pooled["by_discipline"].items()} == {
        "Biology": (6, Fraction(1, 6)),
        "Chemistry": (3, Fraction(1, 3)),
        "Physics": (4, Fraction(3, 4)),
    }
    assert {name: (c["n"], accuracy(c)) for name, c in pooled["by_task"].items()} == {
        "BU": (4, Fraction(3, 4)),
        "LR": (2, Fraction(1, 2)),
        "RU": (3, Fraction(1, 3)),
        "SC": (4, Fraction(0)),
    }
    # ST: P1, P3 (3/8); CT: P2, P4, P5 (2/5).
    assert {name: (c["n"], accuracy(c)) for name, c in pooled["by_kind"].items()} == {
        "CT": (5, Fraction(2, 5)),
        "ST": (8, Fraction(3, 8)),
    }
    # test_C: P8 confirmed E E E, everyone 1 (others E E); validation is empty; train's P9 counts nowhere.
    test_c = found["test_C"]
    assert [(row["username"], row["breakdown"]["overall"]["n"]) for row in test_c["rows"]] == [
        ("alice", 1),
        ("carol", 1),
        ("dave", 1),
    ]
    assert (test_c["pooled"]["overall"]["accuracy"], test_c["pooled"]["overall"]["n"]) == (1.0, 3)
    assert found["validation"]["members"] == 0 and found["validation"]["rows"] == []
    assert found["validation"]["pooled"]["overall"] == {"accuracy": None, "n": 0, "low": None, "high": None}
    assert set(found) == {"test_S", "test_C", "validation"}
    train = human_accuracy(world, splits=("train",), resamples=50)["train"]
    assert [(row["username"], accuracy(row["breakdown"]["overall"])) for row in train["rows"]] == [
        ("bob", 1),
        ("carol", 1),
        ("dave", 1),
    ]


def test_the_cells_add_up_and_their_intervals_behave(world, django_assert_num_queries):
    with django_assert_num_queries(3):  # members, judgements, adjudications: whatever the version's size
        found = human_accuracy(world, seed=4)
    assert human_accuracy(world, seed=4) == found  # deterministic for a seed
    for split in found.values():
        for row in [split["pooled"], *(r["breakdown"] for r in split["rows"])]:
            for key in ("discipline", "task", "kind"):
                assert sum(c["n"] for c in row[f"by_{key}"].values()) == row["overall"]["n"]
    pooled = found["test_S"]["pooled"]["overall"]
    assert pooled["low"] < pooled["accuracy"] < pooled["high"]
    alice = next(r for r in found["test_S"]["rows"] if r["username"] == "alice")["breakdown"]["overall"]
    assert alice["low"] <= alice["accuracy"] <= alice["high"]
    assert pooled["high"] - pooled["low"] < alice["high"] - alice["low"]  # 13 judgements against 4
    # Cells that are all 0 or all 1 have a zero-width interval: dave's 0/2, SC's 0/4, test_C's 3/3.
    dave = next(r for r in found["test_S"]["rows"] if r["username"] == "dave")["breakdown"]["overall"]
    assert (dave["low"], dave["high"]) == (0.0, 0.0)
    assert found["test_S"]["pooled"]["by_task"]["SC"]["high"] == 0.0
    assert (found["test_C"]["pooled"]["overall"]["low"], found["test_C"]["pooled"]["overall"]["high"]) == (1.0, 1.0)


def test_the_leave_one_out_majority_needs_a_unique_image_label():
    assert loo_reference(Counter({"expected": 2, "other": 1})) == "expected"
    assert loo_reference(Counter({"expected": 1, "other": 1})) is None  # a tie
    assert loo_reference(Counter()) is None  # nobody else judged
    assert loo_reference(Counter({"expected": 0, "other": 1})) == "other"
    assert loo_reference(Counter({"both": 2, "expected": 1})) is None  # no image is right


def test_an_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown split test"):
        human_accuracy(DatasetVersion(name="unsaved"), splits=("test_S", "test"))

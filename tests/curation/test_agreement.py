"""Agreement statistics (curation/services/agreement.py): published worked examples, degenerate
cases, and end-to-end reports on judgements made through the real queue, checked against the
libraries computed directly on the same data."""

from __future__ import annotations

import itertools

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa, to_table

from annotation.models import Judgement
from curation.models import Consensus, Label
from curation.services import agreement
from curation.services.gold import mark_gold
from tests.support.factories import make_pair, make_user
from tests.support.judging import judge_all, plan

LABELS = list(Label.values)


def label_of_row(judgement: Judgement) -> str:
    """Independent of the service: a judgement's label from the ORM row."""
    if judgement.agrees_with_expected is None:
        return judgement.choice
    return Label.EXPECTED if judgement.agrees_with_expected else Label.OTHER


def library_alpha(reliability) -> float:
    """The krippendorff package on an observers × items reliability matrix, as its docs call it."""
    return krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal")


def counts_of(reliability) -> np.ndarray:
    """Items × values counts of an observers × items reliability matrix (NaN: missing)."""
    data = np.asarray(reliability, dtype=float)
    values = np.unique(data[~np.isnan(data)])
    return (data.T[:, :, None] == values[None, None, :]).sum(axis=1)


# --- Worked examples ---------------------------------------------------------------------------


def test_fleiss_kappa_of_the_fleiss_1971_worked_example():
    """Fleiss' κ of the worked example in Wikipedia's "Fleiss' kappa" article (after Fleiss, J. L.
    (1971), "Measuring nominal scale agreement among many raters", Psychological Bulletin 76(5),
    378–382): 10 subjects, 14 raters each, 5 categories; κ = 0.210."""
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    result = agreement.fleiss_modal(table)
    assert result["value"] == pytest.approx(0.210, abs=5e-4)
    assert (result["n_items"], result["n_judgements"], result["raters_per_item"]) == (10, 140, 14)
    assert (result["n_items_excluded"], result["reason"]) == (0, None)


def test_krippendorff_alpha_of_krippendorffs_nominal_worked_example():
    """Krippendorff, K. (2011), "Computing Krippendorff's Alpha-Reliability" (Annenberg School for
    Communication, departmental paper 43), example C: 4 observers, 12 units, missing values,
    nominal α = 0.743 on the 40 pairable values of the 11 units judged at least twice."""
    nan = np.nan
    reliability = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    result = agreement.alpha_nominal(counts_of(reliability))
    assert result["value"] == pytest.approx(0.743, abs=5e-4)
    assert result["value"] == pytest.approx(library_alpha(reliability))
    assert (result["n_items"], result["n_judgements"], result["reason"]) == (11, 40, None)


def test_cohen_kappa_of_the_textbook_two_by_two_example():
    """The two-reader example of Wikipedia's "Cohen's kappa" article: 50 proposals, both say yes 20,
    only A yes 5, only B yes 10, both no 15; p_o = 0.7, p_e = 0.5, κ = 0.40."""
    result = agreement.cohen([[20, 5], [10, 15]])
    assert result["value"] == pytest.approx(0.40)
    assert (result["n_items"], result["n_judgements"], result["reason"]) == (50, 100, None)


# --- Degenerate cases ------------------------------------------------------------------------


@pytest.mark.parametrize("statistic", [agreement.alpha_nominal, agreement.fleiss_modal])
@pytest.mark.parametrize(
    "counts, n_items, reason",
    [
        (np.zeros((0, 4), dtype=int), 0, "no pair has judgements"),
        ([[1, 0, 0, 0], [0, 1, 0, 0]], 0, "no pair has judgements"),  # single judgements are not pairable
        ([[3, 0, 0, 0], [3, 0, 0, 0], [0, 1, 0, 0]], 2, "the same label"),  # the odd one is not pairable
    ],
)
def test_undefined_statistics_are_none_with_a_reason(statistic, counts, n_items, reason):
    result = statistic(counts)
    assert result["value"] is None
    assert result["n_items"] == n_items
    assert reason in result["reason"]


def test_fleiss_uses_the_pairs_with_the_modal_number_of_judgements():
    """Fleiss' κ needs one number of raters per item: 3 (two pairs) wins over 2 (one pair); the
    single-judgement pair is left out as well, and α still uses all three pairable pairs."""
    counts = [[3, 0, 0, 0], [1, 2, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0]]
    result = agreement.fleiss_modal(counts)
    assert (result["raters_per_item"], result["n_items"], result["n_items_excluded"]) == (3, 2, 2)
    assert result["value"] == pytest.approx(fleiss_kappa(np.array(counts[:2]), method="fleiss"))
    assert agreement.alpha_nominal(counts)["n_items"] == 3


def test_fleiss_breaks_a_tie_towards_more_judgements_per_pair():
    result = agreement.fleiss_modal([[2, 0, 0, 0], [1, 1, 0, 0], [3, 0, 0, 0], [1, 2, 0, 0]])
    assert (result["raters_per_item"], result["n_items"]) == (3, 2)


def test_cohen_needs_enough_shared_pairs_and_some_variation():
    few = agreement.cohen([[2, 1], [0, 1]], min_shared=10)
    assert (few["value"], few["n_items"]) == (None, 4)
    assert "fewer than 10" in few["reason"]
    constant = agreement.cohen([[5, 0], [0, 0]])
    assert constant["value"] is None and "same label" in constant["reason"]
    # One annotator constant, the other not: chance agreement is below 1, κ is defined (0 here).
    assert agreement.cohen([[3, 2], [0, 0]])["value"] == pytest.approx(0.0)
    assert agreement.cohen(np.zeros((4, 4), dtype=int))["value"] is None


def test_an_empty_database_gives_a_report_without_figures(db):
    report = agreement.agreement_report()
    assert report["overall"]["n_pairs"] == report["overall"]["n_judgements"] == 0
    assert report["overall"]["krippendorff_alpha"]["value"] is None
    assert report["overall"]["fleiss_kappa"]["value"] is None
    assert report["tasks"] == report["disciplines"] == report["annotators"] == []
    assert report["cohen"]["matrix"] == []


# --- End to end, through the queue ------------------------------------------------------------


@pytest.fixture
def judged(db, admin_user):
    """Four chemistry annotators judge 6 RU and 4 IM pairs (k = 3) through the queue, two biology
    annotators judge 3 RI pairs with k = 2, and one RU pair is then made gold (excluded)."""
    chemists = [make_user(f"chem-{n}", "annotator", disciplines=["chemistry"]) for n in range(4)]
    biologists = [make_user(f"bio-{n}", "annotator", disciplines=["biology"]) for n in range(2)]
    ru_pairs = [make_pair("RU", k=3) for _ in range(6)]
    im_pairs = [make_pair("IM", k=3) for _ in range(4)]
    ri_pairs = [make_pair("RI", k=2) for _ in range(3)]
    label_for = plan(ru_pairs + im_pairs + ri_pairs, chemists + biologists)
    judge_all(chemists + biologists, label_for)
    assert Judgement.objects.count() == 6 * 3 + 4 * 3 + 3 * 2
    mark_gold(admin_user, ru_pairs[0].id, Label.EXPECTED)
    return {"ru": ru_pairs[1:], "im": im_pairs, "ri": ri_pairs, "gold": ru_pairs[0]}


def reliability_of(judgements) -> tuple[list[str], list[int], np.ndarray]:
    """Annotators × pairs matrix of label codes with NaN for missing, built from ORM rows."""
    annotators = sorted({j.annotator.username for j in judgements})
    pairs = sorted({j.pair_id for j in judgements})
    matrix = np.full((len(annotators), len(pairs)), np.nan)
    for j in judgements:
        matrix[annotators.index(j.annotator.username), pairs.index(j.pair_id)] = LABELS.index(label_of_row(j))
    return annotators, pairs, matrix


def judgements_of(pairs) -> list[Judgement]:
    return list(Judgement.objects.filter(pair__in=pairs).select_related("pair", "annotator"))


def test_per_task_figures_equal_the_libraries_on_the_same_matrix(judged):
    report = agreement.agreement_report(min_shared=1)
    tasks = {row["task"]: row for row in report["tasks"]}
    assert set(tasks) == {"RU", "IM", "RI"}
    for code in ("RU", "IM", "RI"):
        judgements = judgements_of(judged[code.lower()])
        _, pairs, matrix = reliability_of(judgements)
        row = tasks[code]
        assert (row["n_pairs"], row["n_judgements"]) == (len(pairs), len(judgements))

        alpha = row["krippendorff_alpha"]
        assert alpha["value"] == pytest.approx(library_alpha(matrix))
        assert (alpha["n_items"], alpha["n_judgements"]) == (len(pairs), len(judgements))

        by_pair = np.array([np.sort(column[~np.isnan(column)]) for column in matrix.T], dtype=int)  # pairs × k
        table, _ = aggregate_raters(by_pair, n_cat=len(LABELS))
        fleiss = row["fleiss_kappa"]
        assert fleiss["value"] == pytest.approx(fleiss_kappa(table, method="fleiss"))
        assert (fleiss["n_items"], fleiss["raters_per_item"]) == (len(pairs), by_pair.shape[1])


def test_gold_pairs_and_their_judgements_are_left_out(judged):
    report = agreement.agreement_report()
    ru = next(row for row in report["tasks"] if row["task"] == "RU")
    assert ru["n_pairs"] == 5 and ru["n_judgements"] == 15
    assert report["overall"]["n_judgements"] == 15 + 12 + 6
    assert report["overall"]["n_pairs"] == 5 + 4 + 3


def test_disciplines_and_overall_pool_their_tasks(judged):
    report = agreement.agreement_report()
    disciplines = {row["discipline"]: row for row in report["disciplines"]}
    assert set(disciplines) == {"chemistry", "biology"}
    chemistry = judgements_of(judged["ru"] + judged["im"])
    _, _, matrix = reliability_of(chemistry)
    assert disciplines["chemistry"]["krippendorff_alpha"]["value"] == pytest.approx(library_alpha(matrix))
    _, _, everything = reliability_of(judgements_of(judged["ru"] + judged["im"] + judged["ri"]))
    alpha = report["overall"]["krippendorff_alpha"]
    assert alpha["value"] == pytest.approx(library_alpha(everything))
    # k = 3 for chemistry and 2 for biology: Fleiss' κ overall uses the 9 chemistry pairs only.
    fleiss = report["overall"]["fleiss_kappa"]
    assert (fleiss["raters_per_item"], fleiss["n_items"], fleiss["n_items_excluded"]) == (3, 9, 3)


def test_cohen_matrix_equals_statsmodels_on_each_pair_of_annotators(judged):
    report = agreement.agreement_report(min_shared=1)
    annotators, _, matrix = reliability_of(judgements_of(judged["ru"] + judged["im"] + judged["ri"]))
    assert report["cohen"]["annotators"] == annotators
    cells = report["cohen"]["matrix"]
    for a, b in itertools.combinations(range(len(annotators)), 2):
        shared = ~np.isnan(matrix[a]) & ~np.isnan(matrix[b])
        cell = cells[a][b]
        assert cell is cells[b][a]
        assert cell["n_items"] == int(shared.sum())
        if not shared.any():
            assert cell["value"] is None
            continue
        pairs_of_labels = np.column_stack([matrix[a][shared], matrix[b][shared]]).astype(int)
        table, _ = to_table(pairs_of_labels, bins=range(len(LABELS) + 1))
        pooled = table.sum(axis=0) + table.sum(axis=1)
        if np.count_nonzero(pooled) == 1:
            assert cell["value"] is None
        else:
            assert cell["value"] == pytest.approx(cohens_kappa(table, return_results=False))
    chemists_vs_biologists = cells[annotators.index("bio-0")][annotators.index("chem-0")]
    assert (chemists_vs_biologists["value"], chemists_vs_biologists["n_items"]) == (None, 0)


def test_cohen_is_withheld_below_the_shared_pair_threshold(judged):
    cells = agreement.agreement_report(min_shared=50)["cohen"]["matrix"]
    off_diagonal = [cell for a, row in enumerate(cells) for b, cell in enumerate(row) if a != b]
    assert len(off_diagonal) == 6 * 5
    assert all(cell["value"] is None and "fewer than 50" in cell["reason"] for cell in off_diagonal)


def test_agreement_with_consensus_counts_decided_pairs_only(judged):
    report = agreement.agreement_report()
    decided = dict(Consensus.objects.exclude(label="").values_list("pair_id", "label"))
    assert decided, "the consensus receiver decides pairs with k judgements"
    rows = {row["annotator"]: row for row in report["annotators"]}
    non_gold = judgements_of(judged["ru"] + judged["im"] + judged["ri"])
    for username, row in rows.items():
        mine = [j for j in non_gold if j.annotator.username == username]
        on_decided = [j for j in mine if j.pair_id in decided]
        agree = sum(label_of_row(j) == decided[j.pair_id] for j in on_decided)
        assert row["n_judgements"] == len(mine)
        assert (row["agreement"]["n_items"], row["n_agree"]) == (len(on_decided), agree)
        assert row["agreement"]["value"] == (pytest.approx(agree / len(on_decided)) if on_decided else None)


def test_filters_narrow_the_scope(judged):
    ru = agreement.agreement_report(task="ru")
    assert [row["task"] for row in ru["tasks"]] == ["RU"]
    assert ru["overall"]["n_judgements"] == 15
    assert ru["filters"] == {"task": "ru", "discipline": None}
    biology = agreement.agreement_report(discipline="biology")
    assert [row["discipline"] for row in biology["disciplines"]] == ["biology"]
    assert biology["cohen"]["annotators"] == ["bio-0", "bio-1"]


def test_the_report_takes_one_query(judged, django_assert_num_queries):
    with django_assert_num_queries(1):
        agreement.agreement_report()

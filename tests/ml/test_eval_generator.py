"""Generator evaluation: ND and RI on hand-made numbers, division guards, and one tiny end-to-end run."""

import pytest

from ml.core.eval_generator import (
    OVERALL,
    PromptTriple,
    evaluate_generator,
    normalized_difference,
    relative_improvement,
    summarize,
)


def test_it_computes_nd_in_percent():
    assert normalized_difference(ip=25.0, ep=30.0, sp=20.0) == pytest.approx(50.0)
    assert normalized_difference(ip=30.0, ep=30.0, sp=20.0) == pytest.approx(100.0)
    assert normalized_difference(ip=18.0, ep=30.0, sp=20.0) == pytest.approx(-20.0)


def test_it_reproduces_the_papers_ri():
    # FLUX.1-dev on S: 23.56 -> 28.52 is RI 53.4 %, so the base EP mean was 23.56 + 4.96 / 0.534.
    base_ep = 23.56 + (28.52 - 23.56) / 0.534
    assert relative_improvement(28.52, 23.56, base_ep) == pytest.approx(53.4)


def test_it_returns_none_instead_of_dividing_by_zero():
    assert normalized_difference(25.0, 20.0, 20.0) is None
    assert normalized_difference(25.0, 20.0 + 1e-9, 20.0) is None
    assert relative_improvement(28.0, 23.0, 23.0) is None


def rows(task, ip, ep, sp):
    return [
        {"task": task, "kind": kind, "score": s}
        for kind, scores in (("IP", ip), ("EP", ep), ("SP", sp))
        for s in scores
    ]


def test_it_summarises_per_task_and_overall_over_all_images():
    result = summarize(rows("RI", [24, 26], [30, 30], [20, 20]) + rows("BU", [21], [22], [21]))
    ri, bu, overall = (result["groups"][k] for k in ("RI", "BU", OVERALL))
    assert (ri["IP"], ri["EP"], ri["SP"], ri["ND"]) == (25, 30, 20, pytest.approx(50))
    assert bu["ND"] == pytest.approx(0)
    assert overall["IP"] == pytest.approx(71 / 3) and overall["EP"] == pytest.approx(82 / 3)
    assert overall["n_images"] == {"IP": 3, "EP": 3, "SP": 3}
    assert list(result["groups"])[-1] == OVERALL and result["notes"] == []
    assert "RI" not in ri  # no base result given


def test_it_adds_ri_against_a_base_result_and_notes_undefined_metrics():
    base = summarize(rows("RI", [23], [33], [20]) + rows("BU", [21], [21], [21]))
    tuned = summarize(rows("RI", [28], [33], [20]) + rows("BU", [22], [22], [22]) + rows("SC", [1], [2], [0]), base)
    assert tuned["groups"]["RI"]["RI"] == pytest.approx(50)
    assert tuned["groups"]["BU"]["RI"] is None and tuned["groups"]["BU"]["ND"] is None
    assert tuned["groups"]["SC"]["RI"] is None
    assert tuned["groups"][OVERALL]["RI"] is not None
    notes = " ".join(tuned["notes"])
    assert "BU: ND undefined" in notes and "BU: RI undefined" in notes and "SC: RI undefined" in notes


def test_it_generates_scores_against_the_implicit_prompt_and_records_seeds(tmp_path):
    from ml.core.generate import load_pipeline
    from ml.core.scorer import Scorer
    from ml.core.tiny import make_tiny_scorer
    from ml.core.tiny_flux import make_tiny_flux

    pipe = load_pipeline(make_tiny_flux(tmp_path / "flux", seed=0), device="cpu")
    scorer = Scorer.load(make_tiny_scorer(tmp_path / "scorer"), device="cpu")
    records = [
        PromptTriple("An unripe mango.", "A hard, green mango.", "A ripe yellow-orange mango.", "RI"),
        PromptTriple("An iron nail left in the rain.", "A rusty nail.", "A shiny new nail.", "RU"),
    ]
    settings = {
        "images_per_prompt": 2,
        "seed": 10,
        "steps": 2,
        "guidance": 3.5,
        "width": 32,
        "height": 32,
        "batch_size": 4,
        "max_sequence_length": 32,
    }

    result = evaluate_generator(pipe, scorer, records, **settings)
    generations = result["generations"]
    assert len(generations) == 2 * 3 * 2
    assert {g["seed"] for g in generations if g["tuple"] == 1} == {12, 13}
    assert all({g["seed"] for g in generations if g["kind"] == k} == {10, 11, 12, 13} for k in ("IP", "EP", "SP"))
    assert set(result["groups"]) == {"RI", "RU", OVERALL}

    ep_row = next(g for g in generations if g["kind"] == "EP" and g["tuple"] == 0)
    from ml.core.generate import generate

    (image,) = generate(
        pipe,
        [ep_row["prompt"]],
        seeds=[ep_row["seed"]],
        steps=2,
        guidance=3.5,
        width=32,
        height=32,
        batch_size=1,
        max_sequence_length=32,
    )
    rescored = scorer.score([records[0].implicit_prompt], [image.image]).item()
    assert rescored == pytest.approx(ep_row["score"], abs=1e-4)  # the EP image is scored against the IP

    again = evaluate_generator(pipe, scorer, records, base=result, **settings)
    assert again["groups"][OVERALL]["RI"] == pytest.approx(0, abs=1e-3)  # same model, same seeds

"""Which tests ``make test-fast`` leaves out, in one table: the ``fuzz`` run and the ``slow`` tests.

``make test`` (and CI) runs everything; ``make test-fast`` runs ``-m "not slow and not browser and not fuzz"``
for the edit loop. Tests marked in their own module (``pytest.mark.slow``, ``pytest.mark.browser``) keep their
marks; the entries below are added at collection by tests/conftest.py. An entry is a module
(``tests/x/test_y.py``) or one test (``tests/x/test_y.py::test_z``, every parameter of it). The seconds are
what one test took on the 2-core development machine under load from other work (``--durations``; the
load average was 3 to 7 while they ran). What goes here: anything over about 5 s, then the next slowest until
the fast run takes well under 5 minutes on that machine.
"""

from __future__ import annotations

import pytest

FUZZ = {
    "tests/system/test_api_fuzz.py": "schemathesis against every operation as every role",
}

SLOW = {
    # ML core: real training, several processes, or whole pipelines.
    "tests/ml/test_learnability.py::test_a_tiny_clip_learns_the_synthetic_tasks_from_scratch": "106 s",
    "tests/ml/test_supervise.py::test_accelerate_launch_trains_on_two_cpu_processes_with_gloo": "29 s",
    "tests/ml/test_train_scorer.py::test_two_processes_train_like_one_with_twice_the_batch": "21 s",
    "tests/ml/test_oft.py": "30 s (OFT training on the tiny FLUX: 21 s for two resolutions and a resume, 9 s the rest)",
    "tests/ml/test_cli.py::test_it_explains_every_command_and_reports_bad_input": "14 s",
    "tests/ml/test_cli.py::test_it_fine_tunes_with_sft_then_oft_and_evaluates_the_generator": "9 s",
    "tests/ml/test_gpu_bench.py::test_the_tiny_dry_run_reports_every_section_with_its_ratios": "8 s",
    "tests/ml/test_generate.py::test_an_optimised_pipeline_makes_the_same_images_lora_fused_included": "8 s",
    "tests/ml/test_convert.py::test_it_round_trips_transformers_through_open_clip": "5 s",
    "tests/ml/test_judge_bench.py": "9 s (the judge benchmark's CPU dry run: two sides of 6 requests)",
    "tests/ml/test_lmm_judge_runs.py::test_an_endpoint_judge_is_evaluated_through_a_real_openai_compatible_server": (
        "15 s (starting transformers serve)"
    ),
    "tests/ml/test_judge_endpoint.py::test_transformers_serve_judges_pairs_offline_and_every_answer_parses": (
        "16 s (fitting the tiny judge, starting transformers serve)"
    ),
    "tests/ml/test_recipe_cli.py::test_both_recipes_fine_tune_flux_with_sft_then_oft": "6 s (both recipes)",
    "tests/ml/test_recipe_cli.py::test_both_recipes_train_a_scorer": "4 s (both recipes)",
    "tests/ml/test_recipe_oft.py::test_the_paper_recipe_trains_and_resumes_exactly": "4 s",
    "tests/ml/test_tokenizers.py::test_it_gives_the_ids_of_open_clip": "7 s (against open_clip, 6 texts)",
    "tests/ml/test_train_scorer.py::test_it_logs_tuples_seen_and_optimizer_steps_separately_under_accumulation": "3 s",
    "tests/ml/test_supervise.py::test_cancelling_stops_the_whole_process_group": "3 s",
    # The ml app: runs through ``python -m ml`` in a supervised process, real worker processes.
    "tests/ml/test_gpu_worker.py": "68 s (real prefork workers: generation, a kill mid-training, a cancel)",
    "tests/ml/test_closed_loop.py": "27 s (generate, judge, freeze, sft, oft, evaluate)",
    "tests/ml/test_oft_run.py::test_a_paper_run_trains_the_sft_adapter_on_and_registers_it": "15 s",
    "tests/ml/test_train_scorer_run.py::test_a_run_whose_worker_died_resumes_from_its_checkpoint_and_registers_once": (
        "14 s"
    ),
    "tests/ml/test_train_scorer_run.py::test_a_paper_run_trains_with_the_research_codes_recipe": "8 s",
    "tests/ml/test_train_scorer_run.py::test_it_trains_evaluates_against_the_active_scorer_and_registers_once": "7 s",
    "tests/ml/test_sft_run.py::test_a_paper_run_trains_with_the_research_codes_recipe": "12 s",
    "tests/ml/test_sft_run.py::test_a_killed_run_resumes_from_its_checkpoint_and_registers_one_lora": "11 s",
    "tests/ml/test_eval_generator_run.py::test_it_reports_ri_and_nd_per_task_and_reuses_the_base_evaluation": "5 s",
    "tests/ml/test_eval_generator_run.py::test_a_killed_evaluation_resumes_from_the_chunks_it_saved": "3 s",
    # Annotation: the demo seeding command, run whole several times.
    "tests/annotation/test_seed_demo.py::test_it_also_imports_a_prompt_file": "9 s",
    "tests/annotation/test_seed_demo.py::test_it_prints_logins_that_work": "6 s",
    "tests/annotation/test_seed_demo.py::test_it_creates_nothing_on_a_second_run": "5 s",
    "tests/annotation/test_seed_demo.py::test_it_keeps_the_password_of_an_existing_account": "5 s",
    # System: the queue benchmark's harness serves gunicorn and drives it.
    "tests/system/test_bench_queue.py": "55 s (two runs of the harness)",
    # System: every route x method x role (the table's coverage and the leak checks stay fast), settings checked
    # in a fresh process, expiry at the exact moment, the -m selection itself (a second pytest).
    "tests/system/test_permission_matrix.py::test_each_role_gets_exactly_the_declared_answers": "16 s (five roles)",
    "tests/system/test_permission_matrix.py::test_every_method_the_table_does_not_declare_is_refused_with_405": "5 s",
    "tests/system/test_permission_matrix.py::test_only_staff_reach_any_page_of_the_django_admin": "3 s",
    "tests/system/test_settings.py::test_it_refuses_a_soft_margin_as_long_as_the_run_time_limit": "3 s",
    "tests/system/test_settings.py::test_it_passes_the_deploy_check_in_production_settings": "3 s",
    "tests/system/test_reliability_expiry.py::test_a_heartbeat_at_the_moment_of_expiry_and_a_next_never_both_win_the_slot": "3 s",  # noqa: E501
    "tests/system/test_fast_selection.py::test_minus_m_selects_by_the_table": "6 s",
    # Reviewer pages in Chromium (also marked browser): three widths each, axe-core at each.
    "tests/system/test_browser_adjudication.py": "16 s",
    "tests/system/test_browser_home.py": "7 s",
    "tests/system/test_browser_gallery.py": "6 s",
    # Annotator pages in Chromium (also marked browser): guide, judging with confidence, history, guide editor.
    "tests/system/test_browser_annotator_pages.py": "8-13 s each, 50 s in all",
    # Qualification set: the guide page at three widths, then an annotator qualifying by keyboard.
    "tests/system/test_browser_qualification.py": "12 s",
}


def entry_of(nodeid: str) -> tuple[str, str]:
    """The module and the module::test (parameters dropped) of a collected test's node id."""
    test = nodeid.split("[", 1)[0]
    return test.split("::", 1)[0], test


def mark(items) -> None:
    for item in items:
        module, test = entry_of(item.nodeid)
        if module in FUZZ or test in FUZZ:
            item.add_marker(pytest.mark.fuzz)
        if module in SLOW or test in SLOW:
            item.add_marker(pytest.mark.slow)

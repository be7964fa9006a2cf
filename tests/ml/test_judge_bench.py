"""bench/judge_bench.py's CPU dry run: both sides answer every request of the same workload, with the same
prompt tokens and generated tokens, and every figure the GPU run records is computed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "judge_bench.py"


def test_the_tiny_dry_run_measures_both_sides_on_the_same_work(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("judge_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    result = bench.main(["--tiny", "--items", "3", "--batch-size", "2", "--out", str(tmp_path / "judge.json")])

    assert result["requests"] == 6 and result["card"] == "cpu"
    ours, plain = result["ours"], result["plain"]
    assert ours["prompt_tokens"] == plain["prompt_tokens"] > 0  # the same prompts, padding not counted
    assert ours["generated_tokens"] == plain["generated_tokens"] > 0  # greedy: the same answers either way
    for side in (ours, plain):
        assert side["items_per_s"] > 0 and side["generated_tokens_per_s"] > 0 and side["prompt_tokens_per_s"] > 0
    assert result["speedup_items"] > 0
    assert (tmp_path / "judge.json").read_text().strip().startswith("{")

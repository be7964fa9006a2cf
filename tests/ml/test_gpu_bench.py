"""The GPU benchmark's CPU dry run (``bench/gpu_bench.py --tiny``) runs every section end to end."""

import importlib.util
import json
import math
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu_bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tiny_dry_run_reports_every_section_with_its_ratios(tmp_path, capsys):
    bench = load_bench()
    threads = torch.get_num_threads()
    # compile paths have their own tests (test_scorer_speed, test_generate); here the run stays eager to stay fast
    summary = bench.main(["--tiny", "--strict", "--compile-backend", "none", "--json-out", str(tmp_path / "s.json")])

    assert torch.get_num_threads() == threads
    assert json.loads((tmp_path / "s.json").read_text())["sections"].keys() == set(bench.SECTIONS)
    printed = capsys.readouterr().out
    end = printed.rindex("\n== cpu (CPU dry run: not figures)")  # the headline lines come last
    assert json.loads(printed[printed.rindex("\n{\n", 0, end) + 1 : end])["seconds"] == summary["seconds"]
    assert "scoring: ours" in printed[end:] and "FLUX 512 (32 px stand-in)" in printed[end:]
    assert summary["cpu_dry_run"] is True and "not figures" in summary["note"]
    for name, keys in bench.HEADLINE_RATIOS.items():
        section = summary["sections"][name]
        assert "error" not in section and not section.get("partial"), name
        for key in keys:
            value = section["ratios"][key]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, key, value)
        assert section.get("goals") is None  # goals are judged on the device only
    assert summary["sections"]["generation"]["by_size"]["512"]["pixels"] == 32  # tiny stand-in, labelled
    assert summary["sections"]["finetune"]["sft_loss_finite"]


def test_its_flop_counts_match_the_issue():
    bench = load_bench()
    import open_clip

    cfg = open_clip.get_model_config("ViT-H-14")
    assert abs(bench.clip_image_gflop(cfg) - 335) < 3  # "≈ 335 GFLOP per 224 px image"
    tuple_tflop = 3 * (2 * bench.clip_image_gflop(cfg) + 3 * bench.clip_text_gflop(cfg, 77)) / 1e3
    assert abs(tuple_tflop - bench.ISSUE_TUPLE_TFLOP) < 0.02  # "≈ 2.43 TFLOP per tuple"
    # FLUX.1-dev at 512 px: 1024 image tokens + 512 text tokens through 57 blocks of 12·d² weights
    assert 21 < bench.flux_step_tflop(bench.FLUX_DEV, 1024, 512) < 22

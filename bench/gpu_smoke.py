"""CUDA smoke test of the library's own training paths on the tiny models (issue "ML core").

``bench/gpu_check.py`` measures the full-size architectures; this runs the real entry points —
``train_scorer`` (bf16 autocast, fused AdamW, gradient checkpointing, accumulation), ``train_sft``,
``train_oft`` and ``generate`` — for a few steps on whatever device is present, and fails unless every
loss and gradient norm is finite. On a CPU it is a dry run of the same script.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import torch


def finite_metrics(path: Path, keys: tuple[str, ...]) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        for key in keys:
            if key in row and row[key] is not None:
                assert math.isfinite(row[key]), f"{path}: {key}={row[key]} at {row}"
    return rows


def main() -> None:
    from ml.core.generate import generate, load_pipeline
    from ml.core.oft import OFTConfig, train_oft
    from ml.core.sft import SFTConfig, train_sft
    from ml.core.synthetic import make_synthetic_split
    from ml.core.tiny import make_tiny_scorer
    from ml.core.tiny_detector import make_tiny_grounding_dino
    from ml.core.tiny_flux import make_tiny_flux
    from ml.core.train_scorer import TrainConfig, train_scorer

    report = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scorer, flux = make_tiny_scorer(tmp / "scorer"), make_tiny_flux(tmp / "flux")
        detector = make_tiny_grounding_dino(tmp / "detector", words=("mango",))
        train, val = make_synthetic_split(0, 64, "train", size=32), make_synthetic_split(0, 16, "val", size=32)

        start = time.perf_counter()
        summary = train_scorer(
            TrainConfig(
                model=str(scorer),
                lr=1e-3,
                warmup_steps=1,
                total_steps=4,
                batch_size=8,
                grad_accum=2,
                gradient_checkpointing=True,
                eval_every=2,
                checkpoint_every=2,
                save_format="both",
            ),
            train,
            val,
            tmp / "scorer-run",
        )
        rows = finite_metrics(tmp / "scorer-run" / "metrics.jsonl", ("loss", "grad_norm"))
        report["train_scorer"] = {
            "seconds": time.perf_counter() - start,
            "last": rows[-1]["loss"],
            "tuples_seen": summary["tuples_seen"],
            "best_val": summary["best_val_accuracy"],
        }

        start = time.perf_counter()
        sft = train_sft(
            flux,
            train[:8],
            tmp / "sft",
            SFTConfig(
                resolution=32, max_steps=3, batch_size=2, grad_accum=2, max_sequence_length=32, checkpoint_every=2
            ),
        )
        finite_metrics(tmp / "sft" / "metrics.jsonl", ("loss", "grad_norm"))
        report["sft"] = {"seconds": time.perf_counter() - start, "last_loss": sft.last_loss}

        start = time.perf_counter()
        oft = train_oft(
            flux,
            sft.lora_dir,
            scorer,
            detector,
            [("An unripe mango, simple and realistic.", "mango")],
            tmp / "oft",
            OFTConfig(
                resolution=32, num_steps=4, max_steps=2, prompts_per_step=1, max_sequence_length=32, checkpoint_every=1
            ),
        )
        finite_metrics(tmp / "oft" / "metrics.jsonl", ("loss", "grad_norm"))
        report["oft"] = {"seconds": time.perf_counter() - start, "last_loss": oft.last_loss}

        pipe = load_pipeline(flux, lora=oft.lora_dir)
        images = generate(
            pipe,
            ["An unripe mango"] * 2,
            seeds=[1, 1],
            steps=4,
            guidance=3.5,
            width=32,
            height=32,
            batch_size=2,
            max_sequence_length=32,
        )
        report["generate_same_seed_identical"] = images[0].image.tobytes() == images[1].image.tobytes()
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()

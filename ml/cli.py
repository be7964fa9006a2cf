"""``python -m ml COMMAND``: the ML core from a shell, on tiny models or real local checkpoints.

Every command has ``--help`` and ``--json`` (one JSON object on stdout, logs on stderr). Training
commands take every field of their config dataclass as an option (``--lr``, ``--grad-accum``...),
generated from the dataclass so the CLI never drifts from the library. Nothing here imports Django.

``train-scorer``, ``sft`` and ``oft`` take ``--recipe platform|paper`` (default platform): the defaults of
the options where our recipe and the research code's differ (``ml.core.recipes``); an option given
explicitly wins, e.g. ``--recipe paper --loss-reduction mean``.

Data inputs (``--data``, ``--train``, ``--val``): a JSONL file of tuples with image paths, or a
Science-T2I-style parquet file or directory (``--split`` picks ``train``, ``validation``...).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

# --- helpers --------------------------------------------------------------------------------


def load_records(path: str, split: str | None = None, *, per_row: bool = False) -> list:
    """Tuples from a JSONL file or a parquet file/directory. ``per_row``: one record per parquet row with
    every paraphrase and image (what ``variants=random`` draws from), else one per i-th/i-th image pair."""
    from science_t2i.format import read_jsonl, read_parquet_dir

    p = Path(path)
    if not p.exists():
        raise SystemExit(f"error: {path} does not exist")
    if p.suffix == ".jsonl":
        return read_jsonl(p)
    if per_row:
        return list(read_parquet_dir(p, split=split, per_row=True))
    return list(read_parquet_dir(p, split=split))


def add_config_options(
    parser: argparse.ArgumentParser, config_cls, skip: set[str] = frozenset(), recipe_table: dict | None = None
) -> None:
    """One option per dataclass field, typed from the default, help from the field name; choices from
    :data:`ml.core.recipes.CHOICES`; a field of ``recipe_table`` defaults to None (= the recipe's value)."""
    from ml.core import recipes

    hints = typing.get_type_hints(config_cls)
    group = parser.add_argument_group(f"{config_cls.__name__} (defaults are the paper's where it gives one)")
    for field in dataclasses.fields(config_cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        kind = _base_type(hints[field.name])
        choices = recipes.CHOICES.get(field.name)
        point = (recipe_table or {}).get(field.name)
        shown = f"recipe's (platform: {point.platform}, paper: {point.paper})" if point else default
        if default is dataclasses.MISSING:
            group.add_argument(flag, dest=field.name, type=kind, required=True)
        elif kind is bool:
            group.add_argument(
                flag, dest=field.name, action=argparse.BooleanOptionalAction, default=default, help=f"default: {shown}"
            )
        else:
            group.add_argument(
                flag, dest=field.name, type=kind, default=default, choices=choices, help=f"default: {shown}"
            )


def _base_type(hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def config_from_args(config_cls, args, **fixed):
    names = {f.name for f in dataclasses.fields(config_cls)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name) and name not in fixed}
    return config_cls(**values, **fixed)


def progress_callback(total: int | None, label: str, enabled: bool):
    """An ``on_step`` callback that advances a tqdm bar (to stderr)."""
    if not enabled:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, file=sys.stderr)

    def on_step(metrics: dict):
        bar.update(1)
        if "loss" in metrics:
            bar.set_postfix(loss=f"{metrics['loss']:.4f}")

    return on_step


def emit(result, as_json: bool) -> None:
    """Print the result once: under a multi-process launch (accelerate / torchrun set ``RANK``) every rank computes
    the same summary, but only rank 0 prints it, so the supervisor reads one JSON line, not interleaved copies."""
    if os.environ.get("RANK", "0") != "0":
        return
    if as_json:
        print(json.dumps(result, default=str))
        return
    for key, value in result.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        print(f"{key}: {value}")


# --- commands -------------------------------------------------------------------------------


def run_make_tiny(args):
    from ml.core.judges.tiny import TINY_JUDGE_ANSWER, make_tiny_llava_onevision, make_tiny_qwen2_vl
    from ml.core.tiny import make_tiny_hf_scorer, make_tiny_scorer
    from ml.core.tiny_detector import make_tiny_grounding_dino
    from ml.core.tiny_flux import make_tiny_flux

    out = Path(args.out)
    return {
        "scorer": str(make_tiny_scorer(out / "scorer", seed=args.seed)),
        "scorer_hf": str(make_tiny_hf_scorer(out / "scorer-hf", seed=args.seed)),
        "flux": str(make_tiny_flux(out / "flux", seed=args.seed)),
        "detector": str(make_tiny_grounding_dino(out / "detector", seed=args.seed)),
        "judge_qwen2_vl": str(make_tiny_qwen2_vl(out / "judge-qwen2-vl", seed=args.seed, answer=TINY_JUDGE_ANSWER)),
        "judge_qwen2_vl_random": str(make_tiny_qwen2_vl(out / "judge-qwen2-vl-random", seed=args.seed)),
        "judge_llava_ov": str(
            make_tiny_llava_onevision(out / "judge-llava-ov", seed=args.seed, answer=TINY_JUDGE_ANSWER)
        ),
    }


def add_make_tiny(p):
    p.add_argument(
        "out",
        help="folder to write scorer/, scorer-hf/, flux/, detector/ and the judges judge-qwen2-vl/ (answers "
        "image-1), judge-qwen2-vl-random/ and judge-llava-ov/ (answers image-1) into",
    )
    p.add_argument("--seed", type=int, default=0)


def run_score(args):
    from PIL import Image

    from ml.core.scorer import Scorer

    scorer = Scorer.load(args.model, arch=args.arch, device=args.device)
    images = [Image.open(path) for path in args.images]
    scores = scorer.score([args.prompt] * len(images), images, batch_size=args.batch_size).tolist()
    rows = [{"image": path, "score": score} for path, score in zip(args.images, scores, strict=True)]
    return {"prompt": args.prompt, "scores": rows}


def add_score(p):
    p.add_argument("--model", required=True, help="open_clip local dir, transformers CLIPModel dir or checkpoint")
    p.add_argument("--arch", help="open_clip architecture when --model is a bare checkpoint file (e.g. ViT-H-14)")
    p.add_argument("--prompt", required=True, help="the implicit prompt")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", help="cuda, cpu... (default: cuda if available)")


def run_convert(args):
    from ml.core.scorer import Scorer

    scorer = Scorer.load(args.model, arch=args.arch, device="cpu")
    return {"out": str(scorer.save(args.out, format=args.to)), "format": args.to}


def add_convert(p):
    p.add_argument("--model", required=True, help="the scorer to read (any format Scorer.load reads)")
    p.add_argument("--arch", help="open_clip architecture when --model is a bare checkpoint file")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--to", choices=["open_clip", "hf", "both"], default="hf")


def run_train_scorer(args):
    from ml.core import recipes
    from ml.core.train_scorer import TrainConfig, train_scorer

    config = config_from_args(TrainConfig, args, progress=not args.json)
    per_row = recipes.resolve(config, recipes.SCORER).variants == "random"
    train = load_records(args.train, args.train_split, per_row=per_row)
    val = load_records(args.val, args.val_split)
    return train_scorer(config, train, val, args.out)


def add_train_scorer(p):
    from ml.core import recipes
    from ml.core.train_scorer import TrainConfig

    p.add_argument("--train", required=True, help="training tuples (JSONL or parquet)")
    p.add_argument("--val", required=True, help="validation tuples (never a test split)")
    p.add_argument("--train-split", default=None, help="split name inside a parquet dir (e.g. train)")
    p.add_argument("--val-split", default=None, help="split name inside a parquet dir (e.g. validation)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, best/, final/")
    add_config_options(p, TrainConfig, skip={"progress"}, recipe_table=recipes.SCORER)


def run_eval_scorer(args):
    from ml.core.evaluate import pairwise_accuracy
    from ml.core.scorer import Scorer

    scorer = Scorer.load(args.model, arch=args.arch, device=args.device)
    records = load_records(args.data, args.split, per_row=not args.every_image_pair)
    return pairwise_accuracy(scorer, records, batch_size=args.batch_size)


def add_eval_scorer(p):
    p.add_argument("--model", required=True)
    p.add_argument("--arch")
    p.add_argument("--data", required=True, help="tuples (JSONL or parquet)")
    p.add_argument("--split", help="split name inside a parquet dir (e.g. test_S)")
    p.add_argument(
        "--every-image-pair",
        action="store_true",
        help="parquet rows with several images per side: score every i-th/i-th image pair instead of "
        "element 0 of each list (the published evaluation's protocol, the default)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device")


def run_generate(args):
    from ml.core.generate import generate, load_pipeline

    prompts = list(args.prompt or [])
    if args.prompts:
        prompts += [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    if not prompts:
        raise SystemExit("error: give --prompt (repeatable) or --prompts FILE")
    pipe = load_pipeline(args.pipeline, device=args.device, lora=args.lora, compile=args.compile)
    jobs = [(prompt, args.seed + i) for prompt in prompts for i in range(args.images_per_prompt)]
    images = generate(
        pipe,
        [p for p, _ in jobs],
        seeds=[s for _, s in jobs],
        steps=args.steps,
        guidance=args.guidance,
        width=args.width,
        height=args.height,
        batch_size=args.batch_size,
        prompt_kind=args.prompt_kind,
        model_name=args.pipeline,
        max_sequence_length=args.max_sequence_length,
        progress=not args.json,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with open(out / "metadata.jsonl", "a") as meta:
        for n, item in enumerate(images):
            path = out / f"{n:05d}-seed{item.seed}.png"
            item.image.save(path)
            row = {"file": path.name, **item.metadata()}
            meta.write(json.dumps(row, default=str) + "\n")
            written.append(row)
    return {"out": str(out), "images": written}


def add_generate(p):
    p.add_argument("--pipeline", required=True, help="FLUX pipeline directory (tiny, FLUX.1-dev or -schnell)")
    p.add_argument("--lora", help="LoRA directory from sft/oft")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    p.add_argument("--prompts", help="a text file, one prompt per line")
    p.add_argument("--prompt-kind", choices=["implicit", "explicit", "superficial"], default=None)
    p.add_argument("--images-per-prompt", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="first seed; image i of a prompt uses seed + i")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance", type=float, default=3.5)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-sequence-length", type=int, default=512, help="T5 length (schnell: at most 256)")
    p.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    p.add_argument("--device")
    p.add_argument("--out", required=True)


def run_sft(args):
    from ml.core import recipes
    from ml.core.sft import SFTConfig, train_sft

    config = config_from_args(SFTConfig, args)
    records = load_records(args.data, args.split, per_row=recipes.resolve(config, recipes.SFT).variants == "random")
    total = config.resolved(len(records)).max_steps
    result = train_sft(args.pipeline, records, args.out, config, on_step=progress_callback(total, "sft", not args.json))
    return dataclasses.asdict(result)


def add_sft(p):
    from ml.core import recipes
    from ml.core.sft import SFTConfig

    p.add_argument("--pipeline", required=True)
    p.add_argument("--data", required=True, help="tuples (JSONL or parquet)")
    p.add_argument("--split")
    p.add_argument("--out", required=True)
    add_config_options(p, SFTConfig, recipe_table=recipes.SFT)


def run_oft(args):
    from ml.core.oft import OFTConfig, load_prompts, train_oft

    config = config_from_args(OFTConfig, args)
    result = train_oft(
        args.pipeline,
        args.lora,
        args.scorer,
        args.detector,
        load_prompts(args.prompts),
        args.out,
        config,
        on_step=progress_callback(config.resolved().max_steps, "oft", not args.json),
    )
    return dataclasses.asdict(result)


def add_oft(p):
    from ml.core import recipes
    from ml.core.oft import OFTConfig

    p.add_argument("--pipeline", required=True)
    p.add_argument("--lora", help="the SFT LoRA to start from (recommended: OFT without SFT collapses)")
    p.add_argument("--scorer", required=True)
    p.add_argument("--detector", help="Grounding DINO directory (required unless --no-use-mask)")
    p.add_argument("--prompts", required=True, help='JSON list of {"prompt", "object"} (the reference format)')
    p.add_argument("--out", required=True)
    add_config_options(p, OFTConfig, recipe_table=recipes.OFT)


def run_eval_generator(args):
    from ml.core.eval_generator import evaluate_generator
    from ml.core.generate import load_pipeline
    from ml.core.scorer import Scorer

    pipe = load_pipeline(args.pipeline, device=args.device, lora=args.lora)
    scorer = Scorer.load(args.scorer, device=args.device)
    base = json.loads(Path(args.base).read_text()) if args.base else None
    result = evaluate_generator(
        pipe,
        scorer,
        load_records(args.data, args.split),
        images_per_prompt=args.images_per_prompt,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        width=args.width,
        height=args.height,
        batch_size=args.batch_size,
        max_sequence_length=args.max_sequence_length,
        base=base,
        model_name=args.pipeline + (f"+{args.lora}" if args.lora else ""),
    )
    if args.save:
        Path(args.save).write_text(json.dumps(result, default=str))
    return result


def add_eval_generator(p):
    p.add_argument("--pipeline", required=True)
    p.add_argument("--lora")
    p.add_argument("--scorer", required=True)
    p.add_argument("--data", required=True, help="tuples (JSONL or parquet); only the prompts are used")
    p.add_argument("--split")
    p.add_argument("--base", help="a result saved with --save for the base model, to compute RI")
    p.add_argument("--save", help="write the whole result (with every generation's seed) to this file")
    p.add_argument("--images-per-prompt", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance", type=float, default=3.5)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-sequence-length", type=int, default=512)
    p.add_argument("--device")


def run_learnability(args):
    from ml.core.learnability import run_learnability as run

    options = {"steps": args.steps, "time_budget_s": args.time_budget, "threads": args.threads}
    return run(seed=args.seed, **{k: v for k, v in options.items() if v is not None})


def add_learnability(p):
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="optimiser steps (default: the library's, enough on 2 cores)")
    p.add_argument("--time-budget", type=float, help="seconds of training at most (default: the library's)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: 2)")


# --- entry point ----------------------------------------------------------------------------

# (name, add_arguments, run, help)
COMMANDS = [
    (
        "make-tiny",
        add_make_tiny,
        run_make_tiny,
        "write tiny models: scorer (open_clip and transformers), FLUX pipeline, detector, LMM judges",
    ),
    ("score", add_score, run_score, "SciScore of one prompt against images"),
    (
        "convert-scorer",
        add_convert,
        run_convert,
        "convert a scorer between open_clip and transformers CLIPModel formats",
    ),
    (
        "train-scorer",
        add_train_scorer,
        run_train_scorer,
        "train SciScore with the paper's loss (validation picks the best checkpoint)",
    ),
    (
        "eval-scorer",
        add_eval_scorer,
        run_eval_scorer,
        "pairwise accuracy overall and per task, discipline and ST/CT type",
    ),
    (
        "generate",
        add_generate,
        run_generate,
        "generate images with a FLUX pipeline directory (metadata in metadata.jsonl)",
    ),
    ("sft", add_sft, run_sft, "LoRA supervised fine-tuning of FLUX on (implicit prompt, correct image)"),
    ("oft", add_oft, run_oft, "masked online fine-tuning of FLUX with SciScore as reward"),
    (
        "eval-generator",
        add_eval_generator,
        run_eval_generator,
        "SciScore of IP/EP/SP generations per task; ND, and RI against a base result",
    ),
    (
        "learnability",
        add_learnability,
        run_learnability,
        "train a tiny CLIP from scratch on rendered scenes; held-out accuracy before/after",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ml", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add_arguments, run, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.run(args)
    except (ValueError, FileNotFoundError) as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    emit(result, args.json)
    return 0

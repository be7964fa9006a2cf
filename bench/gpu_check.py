"""GPU check for the ML core: full-size models, random init, one short run (issue "ML core").

* SciScore: open_clip ViT-H-14 scoring throughput in bf16 through ``Scorer.score`` (decoded PIL
  images in, scores out) and with pre-made pixels, against the bf16 matmul ceiling measured in the
  same run (~335 GFLOP per 224 px image pair of towers, as the benchmark issue states), and one
  training step with the paper's loss (fused AdamW, bf16 autocast).
* FLUX.1-dev: the full transformer config (12B, random init, bf16) plus the FLUX VAE config,
  a short stochastic-sampler generation at 512 px, and one LoRA (r 16) rectified-flow step,
  checking that only LoRA weights change.

``--tiny`` runs the same code on tiny configs (CPU-friendly) so the script is checked before it
spends device time. Prints one JSON object; nothing here is part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

VIT_H_GFLOP_PER_IMAGE = 335.0


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device, repeat=1):
    fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    _sync(device)
    return (time.perf_counter() - start) / repeat, out


def matmul_tflops(device) -> float:
    n = 8192 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds, _ = _timed(lambda: a @ b, device, repeat=10)
    return 2 * n**3 / seconds / 1e12


def scorer_check(device, tiny: bool, report: dict) -> None:
    import open_clip
    from PIL import Image

    from ml.core.loss import sciscore_loss
    from ml.core.scorer import Scorer
    from ml.core.tiny import TINY_CLIP_CFG

    cfg = TINY_CLIP_CFG if tiny else open_clip.get_model_config("ViT-H-14")
    with torch.device(device):
        model = open_clip.model.CLIP(**cfg)
    scorer = Scorer.from_model(model, cfg, device=device)
    size = scorer.preprocess.size
    n = 512 if not tiny else 32
    images = [Image.effect_noise((size, size), 40 + i % 50).convert("RGB") for i in range(n)]
    prompts = [f"An iron nail left in the rain for {i} weeks." for i in range(n)]
    batch = 256 if not tiny else 16
    seconds, scores = _timed(lambda: scorer.score(prompts, images, batch_size=batch), device)
    report["scorer_end_to_end_img_per_s"] = n / seconds
    assert torch.isfinite(scores).all()

    tokens = scorer.tokenize(prompts[:batch])
    pixels = scorer.pixels(images[:batch])

    @torch.no_grad()
    def model_only():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return scorer.features(tokens, pixels)

    seconds, _ = _timed(model_only, device, repeat=3)
    report["scorer_model_only_img_per_s"] = batch / seconds
    tflops = matmul_tflops(device)
    report["bf16_matmul_tflops"] = tflops
    if not tiny:
        ceiling = tflops * 1e12 / (VIT_H_GFLOP_PER_IMAGE * 1e9)
        report["scorer_ceiling_img_per_s"] = ceiling
        report["scorer_end_to_end_share_of_ceiling"] = report["scorer_end_to_end_img_per_s"] / ceiling

    def reference_loop():
        with torch.no_grad():
            for p, img in zip(prompts[:8], images[:8], strict=True):
                t, x = scorer.features(scorer.tokenize([p]), scorer.pixels([img]))
                (scorer.logit_scale() * (t * x).sum(-1)).item()

    seconds, _ = _timed(reference_loop, device)
    report["scorer_reference_fp32_one_at_a_time_img_per_s"] = 8 / seconds

    # one training step with the paper's loss
    tuples = 32 if not tiny else 4
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-6, weight_decay=0.3, fused=device.type == "cuda")
    texts = scorer.tokenize(prompts[: 3 * tuples])
    pix = scorer.pixels(images[: 2 * tuples])

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            t = model.encode_text(texts, normalize=True)
            x = model.encode_image(pix, normalize=True)
            loss = sciscore_loss(
                t[:tuples], t[tuples : 2 * tuples], t[2 * tuples :], x[:tuples], x[tuples:], model.logit_scale.exp()
            ).total
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    seconds, loss = _timed(train_step, device)
    report["scorer_train_step_s"] = seconds
    report["scorer_train_tuples_per_s"] = tuples / seconds
    report["scorer_train_loss"] = loss
    if device.type == "cuda":
        report["scorer_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    model = optimizer = scorer = None  # dropped, not deleted: the closures above share the names
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


FLUX_DEV = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
FLUX_TINY = {
    "patch_size": 1,
    "in_channels": 4,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "guidance_embeds": True,
    "axes_dims_rope": (4, 4, 8),
}


def flux_check(device, tiny: bool, report: dict) -> None:
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from peft import LoraConfig

    from ml.core import flow
    from ml.core.sampler import sample_trajectory

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = FLUX_TINY if tiny else FLUX_DEV
    latent_channels = cfg["in_channels"] // 4
    blocks = (32,) if tiny else (128, 256, 512, 512)
    torch.set_default_dtype(dtype)
    with torch.device(device):
        transformer = FluxTransformer2DModel(**cfg)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=latent_channels,
            down_block_types=("DownEncoderBlock2D",) * len(blocks),
            up_block_types=("UpDecoderBlock2D",) * len(blocks),
            block_out_channels=blocks,
            layers_per_block=1 if tiny else 2,
            norm_num_groups=32,
            scaling_factor=0.3611,
            shift_factor=0.1159,
            use_quant_conv=False,
            use_post_quant_conv=False,
        )
    torch.set_default_dtype(torch.float32)
    report["flux_transformer_params_b"] = sum(p.numel() for p in transformer.parameters()) / 1e9
    size = 32 if tiny else 512
    scale = flow.vae_scale_factor(vae)
    rows, cols = flow.token_grid(size, size, scale)
    text_len = 16 if tiny else 512
    text = flow.TextEmbeddings(
        prompt_embeds=torch.randn(1, text_len, cfg["joint_attention_dim"], device=device, dtype=dtype),
        pooled=torch.randn(1, cfg["pooled_projection_dim"], device=device, dtype=dtype),
        text_ids=torch.zeros(text_len, 3, device=device, dtype=dtype),
    )
    img_ids = flow.latent_image_ids(size, size, scale, device=device, dtype=dtype)
    steps = 4

    def velocity(x, sigma):
        with torch.no_grad():
            return flow.predict_velocity(
                transformer, x.to(dtype), torch.tensor([sigma], device=device), text, img_ids, guidance=3.5
            ).float()

    noise = torch.randn(1, rows * cols, cfg["in_channels"], device=device)
    sigmas = torch.linspace(1.0, 0.0, steps + 1)

    def generate():
        trajectory = sample_trajectory(velocity, noise, sigmas, churn=0.1)
        with torch.no_grad():
            return flow.decode_latents(vae, trajectory.sample.to(dtype), size, size)

    seconds, image = _timed(generate, device)
    report["flux_generation_s_per_step_512"] = seconds / steps
    report["flux_estimated_s_per_image_30_steps"] = 30 * seconds / steps
    assert image.shape[-2:] == (size, size) and torch.isfinite(image.float()).all()
    print(json.dumps(report), flush=True)

    transformer.add_adapter(
        LoraConfig(
            r=16, lora_alpha=16, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"]
        )
    )
    if not tiny:
        transformer.enable_gradient_checkpointing()
    lora = [p for n, p in transformer.named_parameters() if "lora" in n]
    for n, p in transformer.named_parameters():
        p.requires_grad_("lora" in n)
    base_name, base_param = next((n, p) for n, p in transformer.named_parameters() if "lora" not in n and p.dim() == 2)
    base_before = base_param.detach().clone()
    lora_before = lora[1].detach().clone()
    optimizer = torch.optim.AdamW(lora, lr=2e-5, fused=device.type == "cuda")
    batch = 4 if not tiny else 2
    latents = torch.randn(batch, rows * cols, cfg["in_channels"], device=device, dtype=dtype)
    batch_text = flow.TextEmbeddings(
        text.prompt_embeds.expand(batch, -1, -1), text.pooled.expand(batch, -1), text.text_ids
    )

    def lora_step():
        optimizer.zero_grad(set_to_none=True)
        noise = torch.randn_like(latents)
        s = torch.rand(batch, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            pred = flow.predict_velocity(
                transformer, flow.noisy_latents(latents, noise, s), s, batch_text, img_ids, guidance=0.0
            )
        loss = torch.nn.functional.mse_loss(pred.float(), flow.velocity_target(latents, noise).float())
        loss.backward()
        optimizer.step()
        return loss.item()

    with flow.training_attention():  # cuDNN attention's backward fails on Hopper (see its docstring)
        seconds, loss = _timed(lora_step, device)
    report["flux_lora_step_s_batch"] = seconds
    report["flux_lora_batch"] = batch
    report["flux_lora_loss"] = loss
    report["flux_lora_trainable_params_m"] = sum(p.numel() for p in lora) / 1e6
    assert torch.equal(base_param.detach(), base_before), f"base weight {base_name} changed"
    assert not torch.equal(lora[1].detach(), lora_before), "LoRA weights did not change"
    if device.type == "cuda":
        report["flux_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny configs, for a CPU dry run")
    parser.add_argument("--only", choices=["scorer", "flux"], help="run one part")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "tiny": args.tiny,
    }
    if args.only in (None, "scorer"):
        scorer_check(device, args.tiny, report)
        print(json.dumps(report), flush=True)
    if args.only in (None, "flux"):
        flux_check(device, args.tiny, report)
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()

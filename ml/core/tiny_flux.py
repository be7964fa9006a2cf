"""A tiny, randomly initialised FLUX pipeline written to disk, so real loading code runs offline.

:func:`make_tiny_flux` saves a directory with the layout of the FLUX.1 downloads
(``model_index.json`` plus one folder per component) that ``FluxPipeline.from_pretrained`` loads.
Nothing else in the project knows the tiny sizes: generation and fine-tuning read every size from
the loaded components, so the same code runs on the real FLUX.1-dev / -schnell directories.

Size decisions (all checked against ``diffusers.FluxPipeline``):

* The VAE has ``latent_channels=1`` and two blocks, so ``vae_scale_factor = 2**(blocks-1) = 2``.
  One block would give a scale factor of 1, where confusing pixel and latent sizes goes
  unnoticed; two blocks keep that mistake visible in tests and still cost nothing. Images must be
  multiples of ``2 * vae_scale_factor = 4`` pixels (FLUX.1: 16).
* FLUX packs 2x2 latent patches into one token, so the transformer's ``in_channels`` is
  ``4 * latent_channels = 4`` (FLUX.1: 4 * 16 = 64); the pipeline derives the latent channels as
  ``in_channels // 4``.
* The VAE has FLUX's ``shift_factor``/``scaling_factor`` and no quant convs, like FLUX's VAE; the
  pipeline's decode step needs a ``shift_factor``.
* The CLIP text model's hidden size is the transformer's ``pooled_projection_dim`` (FLUX feeds
  CLIP's pooled output straight in); the T5 ``d_model`` is the ``joint_attention_dim``.
* ``guidance_embeds=True`` (the default) mimics FLUX.1-dev, ``False`` mimics FLUX.1-schnell.
* The scheduler config is FLUX.1-dev's (resolution-dependent shift).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from ml.core.tokenizers import CLIP_CONTEXT_LENGTH, save_clip_tokenizer

T5_MAX_LENGTH = 512
T5_VOCAB_SIZE = 512  # an upper bound: a corpus this small yields fewer pieces
TINY_HIDDEN = 32

# Science-T2I style prompts (implicit, explicit and superficial phrasings over the 16 tasks); the
# tiny T5 tokenizer learns its pieces from them, so test prompts split into real sub-words.
CORPUS = [
    "An apple left on the table for several weeks, simple and realistic.",
    "A shrivelled brown apple with wrinkled skin and dark rotten spots.",
    "A fresh shiny red apple on a wooden table.",
    "An unripe mango, simple and realistic.",
    "A hard, green mango.",
    "A ripe yellow-orange mango.",
    "A banana a week after it was picked, with brown speckles on yellow skin.",
    "An iron nail left outside in the rain for months, covered with orange-brown rust.",
    "A bicycle chain that has been exposed to salty sea air for a year.",
    "A bright new steel bolt with a metallic grey surface.",
    "Oil poured into a glass of water, forming a separate layer floating on top.",
    "Olive oil and vinegar in a bottle after standing still for an hour.",
    "A clear glass of water with milk evenly mixed in.",
    "Copper salt sprinkled into a gas flame, burning with a blue-green flame.",
    "Sodium chloride held in a burner flame, giving an intense yellow colour.",
    "Lithium compounds in a flame producing a crimson red light.",
    "An ice cube on a hot frying pan after two minutes.",
    "A chocolate bar left in a car on a summer afternoon, melted and soft.",
    "A candle that has been burning for hours, with wax dripping down the sides.",
    "Water in a bowl placed in a freezer overnight, frozen solid into ice.",
    "Molten lava cooling on the shore into black solid rock.",
    "A puddle on the pavement after a sunny day, almost completely evaporated.",
    "A pot of water boiling on the stove with steam rising.",
    "Cold glass of lemonade on a humid day with droplets condensing on the outside.",
    "Breath on a cold window leaving fog and tiny water drops.",
    "A drop of ink in a glass of still water after an hour, spread evenly.",
    "A tea bag steeping in hot water, colour spreading through the cup.",
    "A wooden block and a stone dropped into a tank of water.",
    "A ship made of steel floating in the harbour.",
    "A helium balloon released in a room, rising up to the ceiling.",
    "An apple falling from a tree branch toward the ground.",
    "A glass bottle knocked off a shelf, shattered on the floor.",
    "A black shirt and a white shirt lying in bright sunshine at noon.",
    "A sponge dipped into spilled coffee, soaking up the brown liquid.",
    "A light bulb connected to a battery with copper wires, glowing brightly.",
    "A circuit with a switch left open, the bulb dark.",
    "A houseplant kept in a dark closet for a month, pale yellow and drooping.",
    "A sunflower growing in a sunny field, tall with green leaves.",
    "A potted plant that has not been watered for weeks, dry and wilted.",
    "A cactus in the desert, healthy and green.",
    "A maple tree in autumn with red and orange leaves falling.",
    "A birch forest in winter covered with snow, branches bare.",
    "A cherry tree in spring full of pink blossoms.",
    "A green tomato on the vine, unripe and firm.",
    "A ripe red tomato, soft and juicy.",
    "A scientist in a laboratory, photograph, realistic lighting, high detail.",
    "A close-up photo of a kitchen counter in the morning, natural light.",
]


def make_tiny_flux(directory: str | Path, seed: int = 0, *, guidance_embeds: bool = True) -> Path:
    """Write a randomly initialised tiny FLUX pipeline to ``directory``; return the directory.

    ``seed`` fixes every random weight, so two calls with the same seed write the same model.
    """
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    latent_channels = 1
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * latent_channels,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TINY_HIDDEN,
        pooled_projection_dim=TINY_HIDDEN,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=[4, 4, 8],
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=TINY_HIDDEN,
            intermediate_size=64,
            projection_dim=TINY_HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=CLIP_CONTEXT_LENGTH,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    tokenizer_2 = build_t5_tokenizer()
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=TINY_HIDDEN,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            feed_forward_proj="gated-gelu",
            is_encoder_decoder=False,
            use_cache=False,
            pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=save_clip_tokenizer(directory / "tokenizer"),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipe.save_pretrained(directory)  # type: ignore[attr-defined]  # mypy reads diffusers' placeholder class
    return directory


def build_t5_tokenizer():
    """A T5 tokenizer (Unigram, ``<pad>``=0, ``</s>``=1, ``<unk>``=2, ``</s>`` appended) trained in memory.

    The Unigram model is trained with the ``tokenizers`` library on :data:`CORPUS` with the same
    pre-tokenisation as T5 (whitespace split, then ``▁`` word-start markers); single characters,
    every printable ASCII one included, are fallback pieces, so ordinary English never maps to
    ``<unk>``. The ids are the same on every call. There are no sentinel ``<extra_id_*>`` tokens:
    FLUX only uses T5's encoder.
    """
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer
    from transformers import T5Tokenizer

    specials = ["<pad>", "</s>", "<unk>"]
    tokenizer = Tokenizer(Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        ]
    )
    trainer = UnigramTrainer(
        vocab_size=T5_VOCAB_SIZE,
        special_tokens=specials,
        unk_token="<unk>",
        shrinking_factor=0.75,
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    trained = json.loads(tokenizer.to_str())["model"]["vocab"]
    if [piece for piece, _ in trained[:3]] != specials:
        raise RuntimeError(f"unexpected special-token layout: {trained[:3]}")
    # The trainer is not deterministic in two ways: scores vary in their last bits (parallel sums),
    # and the characters it keeps for coverage get made-up, evenly spaced scores in hash-map order.
    # So multi-character pieces keep their rounded scores, every single character (and every
    # printable ASCII one, for coverage) gets one fallback score, and ids follow (score, piece).
    scores = {piece: round(score, 6) for piece, score in trained[3:] if len(piece) > 1}
    fallback = min(scores.values()) - 1.0
    chars = {piece for piece, _ in trained[3:] if len(piece) == 1} | set(string.printable.strip())
    scores.update(dict.fromkeys(chars, fallback))
    vocab = [(piece, 0.0) for piece in specials] + sorted(scores.items(), key=lambda x: (-x[1], x[0]))
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=T5_MAX_LENGTH)
